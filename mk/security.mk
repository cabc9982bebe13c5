##@ Runtime security
FUZZTIME ?= 30s

.PHONY: fuzz-security
fuzz-security: ## Fuzz the Origin parser and the token, first-message and ticket entry points (FUZZTIME each).
	go test ./internal/runtime/origin/ -run '^$$' -fuzz '^FuzzOrigin$$' -fuzztime $(FUZZTIME)
	go test ./internal/runtime/auth/ -run '^$$' -fuzz '^FuzzVerifyToken$$' -fuzztime $(FUZZTIME)
	go test ./internal/runtime/auth/ -run '^$$' -fuzz '^FuzzFirstMessage$$' -fuzztime $(FUZZTIME)
	go test ./internal/runtime/auth/ -run '^$$' -fuzz '^FuzzTicket$$' -fuzztime $(FUZZTIME)
