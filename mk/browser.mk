##@ Browser check (Debian's headless Chromium, driven by playwright-core)
.PHONY: chromium browser-node-modules browser-test

# `make test` runs test/browser: Chromium from apt and test/browser's pinned npm project.
test-deps: chromium browser-node-modules

chromium: ## Install Debian's Chromium for the browser tests (apt-get, idempotent) and print its path.
	@hack/chromium.sh

browser-node-modules: test/browser/node_modules/.package-lock.sha256 ## npm ci test/browser (playwright-core) with Node 22.

# The stamp is what test/conformance/fixture.Node checks: the lock file's SHA-256.
test/browser/node_modules/.package-lock.sha256: test/browser/package-lock.json
	@PATH="$$(hack/node22.sh):$$PATH" && cd test/browser && \
	  npm ci --prefer-offline --no-audit --no-fund --loglevel=error && \
	  sha256sum package-lock.json | cut -d' ' -f1 | tr -d '\n' >node_modules/.package-lock.sha256

browser-test: $(EVERYTHING_SERVER) chromium browser-node-modules ## Cross-site WebSocket hijacking check in headless Chromium against a local mcp-runtime.
	MCP_EVERYTHING_SERVER=$(EVERYTHING_SERVER) go test -count=1 -v ./test/browser/...
