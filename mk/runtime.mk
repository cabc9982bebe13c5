##@ Runtime
.PHONY: runtime-build runtime-test
runtime-build: ## Build the static bin/mcp-runtime.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(LOCALBIN)/mcp-runtime ./cmd/mcp-runtime

runtime-test: $(EVERYTHING_SERVER) ## Runtime unit and end-to-end tests (go-sdk client through the runtime to the everything-server).
	MCP_EVERYTHING_SERVER=$(EVERYTHING_SERVER) go test -count=1 ./internal/runtime/server/... ./internal/runtime/tlsreload/... ./cmd/mcp-runtime/... ./test/runtime/...
