##@ Conformance (MCP clients written by others, Node 22 from npm)
.PHONY: node22 conformance wsclient-test

node22: ## Install Node 22 (npm package node@22) into the tools cache and print its bin directory.
	@hack/node22.sh

# Both also run in `make test` (go test ./...): they install Node 22 and `npm ci` their pinned
# projects themselves (cached outside the repo; a warm run downloads nothing).
conformance: $(EVERYTHING_SERVER) ## Official MCP conformance suite: everything-server direct vs behind mcp-runtime (prints both counts).
	@MCP_EVERYTHING_SERVER=$(EVERYTHING_SERVER) go test -count=1 -v -run TestOfficialConformanceSuite ./test/conformance/ 2>&1 \
	  | tee $(LOCALBIN)/conformance.log | grep -E 'direct: .*via runtime:|0.2 suite:|passed only via|KNOWN RUNTIME GAP|scenario .*(direct|via runtime)|^--- |^(ok|FAIL)'

wsclient-test: $(EVERYTHING_SERVER) ## TypeScript SDK WebSocket client over wss with a ticket, through mcp-runtime.
	MCP_EVERYTHING_SERVER=$(EVERYTHING_SERVER) go test -count=1 -v ./test/wsclient/
