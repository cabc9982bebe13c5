-- Argo CD health of mcp.mcpfleet.dev/MCPServer, read from the kstatus-style conditions the
-- operator writes: Ready summarises, Reconciling and Stalled are present only while true.
-- Uses only Lua's base library, so it runs in Argo CD's sandbox.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return tostring(c.reason)
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation or 0
if obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = tostring(stalled.reason) .. ": " .. describe(stalled)
  return hs
end

local reconciling = condition(conditions, "Reconciling")
local ready = condition(conditions, "Ready")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" and ready.message ~= reconciling.message then
    hs.message = hs.message .. " (" .. ready.message .. ")"
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  if ready.observedGeneration ~= nil and ready.observedGeneration < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the Ready condition of generation " .. tostring(generation)
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

-- Ready=False without Stalled is a wait (rollout, certificate, transient error): the
-- operator retries on its own, so it is not Degraded.
hs.status = "Progressing"
if ready ~= nil then
  hs.message = tostring(ready.reason) .. ": " .. describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
