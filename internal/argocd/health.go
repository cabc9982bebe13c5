// Package argocd runs Argo CD resource health scripts the way Argo CD does: under
// gopher-lua, with the live object passed as the global table `obj`, in a state that has
// only the base, package and table libraries. It exists so the shipped health script is
// tested against the statuses the operator really writes.
package argocd

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// HealthKey is the argocd-cm key under which Argo CD looks up the MCPServer health script.
const HealthKey = "resource.customizations.health.mcp.mcpfleet.dev_MCPServer"

// Health statuses a script may return (Argo CD's health.HealthStatusCode values).
const (
	StatusHealthy     = "Healthy"
	StatusProgressing = "Progressing"
	StatusDegraded    = "Degraded"
	StatusSuspended   = "Suspended"
	StatusMissing     = "Missing"
	StatusUnknown     = "Unknown"
)

// Timeout bounds one script run; health scripts are tiny, so a slow one is a bug.
const Timeout = time.Second

// Health is what a health script returns.
type Health struct {
	Status  string
	Message string
}

// EvalHealth runs script with obj (a Kubernetes object decoded from JSON) as `obj` and
// returns the status and message of the table it returns.
func EvalHealth(script string, obj map[string]any) (Health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Health{}, fmt.Errorf("opening lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	L.SetContext(ctx)

	L.SetGlobal("obj", ToLua(L, obj))
	if err := L.DoString(script); err != nil {
		return Health{}, fmt.Errorf("running health script: %w", err)
	}
	ret := L.Get(-1)
	tbl, ok := ret.(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("health script returned %s, want a table", ret.Type())
	}
	h := Health{}
	if s, ok := tbl.RawGetString("status").(lua.LString); ok {
		h.Status = string(s)
	}
	if m, ok := tbl.RawGetString("message").(lua.LString); ok {
		h.Message = string(m)
	}
	switch h.Status {
	case StatusHealthy, StatusProgressing, StatusDegraded, StatusSuspended, StatusMissing, StatusUnknown:
	default:
		return h, fmt.Errorf("health script returned status %q, not an Argo CD health status", h.Status)
	}
	return h, nil
}

// ObjectFromJSON decodes a Kubernetes object the way Argo CD sees it: plain JSON values.
func ObjectFromJSON(data []byte) (map[string]any, error) {
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("decoding object: %w", err)
	}
	return obj, nil
}

// ToLua converts a JSON-decoded value to Lua: objects and arrays become tables (arrays
// 1-based, in order), numbers LNumber, null nil.
func ToLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return lua.LString(v.String())
		}
		return lua.LNumber(f)
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(ToLua(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.RawSetString(k, ToLua(L, v[k]))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(v))
	}
}
