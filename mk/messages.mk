##@ Runtime messages
FUZZTIME ?= 30s

.PHONY: fuzz-messages
fuzz-messages: ## Fuzz the JSON-RPC parser, the tools/call check and the Mcp-Param-* check (FUZZTIME each).
	go test ./internal/runtime/jsonrpc/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	go test ./internal/runtime/tools/ -run '^$$' -fuzz '^FuzzCheckCall$$' -fuzztime $(FUZZTIME)
	go test ./internal/runtime/tools/ -run '^$$' -fuzz '^FuzzCheckParamHeaders$$' -fuzztime $(FUZZTIME)

.PHONY: bench-messages
bench-messages: ## Benchmark the per-message hot path (parse, tool check, audit).
	go test ./internal/runtime/jsonrpc/ ./internal/runtime/tools/ ./internal/runtime/audit/ -run '^$$' -bench . -benchmem
