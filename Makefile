# mcp-fleet-operator. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Tools live in bin/ (pinned, built through the Go module proxy); big built-from-source
# binaries (Kubernetes, etcd, helm) are cached outside the repo so each machine builds them once.
LOCALBIN ?= $(CURDIR)/bin
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mcp-fleet-operator
export PATH := $(LOCALBIN):$(PATH)
export CGO_ENABLED ?= 0

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/mcpfleet/mcp-fleet-operator/internal/version.Version=$(VERSION)

CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
EVERYTHING_SERVER_VERSION ?= v1.8.0
ENVTEST_K8S_VERSION ?= 1.36.3

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
EVERYTHING_SERVER ?= $(LOCALBIN)/everything-server-$(EVERYTHING_SERVER_VERSION)

.PHONY: all
all: build

##@ General
.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN{FS=":.*##"} /^[a-zA-Z_0-9-]+:.*?##/{printf "  %-20s %s\n",$$1,$$2} /^##@/{printf "\n%s\n",substr($$0,5)}' $(MAKEFILE_LIST)

##@ Development
.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests from the API and the RBAC markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (pinned).
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Obtain the envtest binaries (download, else build from source) and print their directory.
	@ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest.sh

.PHONY: test
test: manifests generate fmt vet ## Run every test against real binaries (envtest built from source when needed).
	@assets=$$(ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest.sh) && \
	$(MAKE) --no-print-directory test-deps && \
	echo "envtest assets: $$assets" && \
	KUBEBUILDER_ASSETS=$$assets MCP_EVERYTHING_SERVER=$(EVERYTHING_SERVER) \
	  go test ./... -count=1 -timeout 40m 2>&1 | tee $(LOCALBIN)/test.log || status=$$?; \
	hack/test-summary.sh $(LOCALBIN)/test.log; exit $${status:-0}

# Extra prerequisites of `make test` contributed by mk/*.mk (e.g. test servers, tools).
.PHONY: test-deps
test-deps: $(EVERYTHING_SERVER)

##@ Build
.PHONY: build
build: ## Build bin/manager and bin/mcp-runtime.
	go build -trimpath -ldflags '$(LDFLAGS)' -o $(LOCALBIN)/manager ./cmd/manager
	go build -trimpath -ldflags '$(LDFLAGS)' -o $(LOCALBIN)/mcp-runtime ./cmd/mcp-runtime

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig.
	go run ./cmd/manager

##@ Tools
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $@

$(GOLANGCI_LINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $@

.PHONY: everything-server
everything-server: $(EVERYTHING_SERVER) ## Install the go-sdk everything-server (the runtime tests' upstream).

# The go-sdk's conformance server: the realistic stdio upstream for runtime tests.
$(EVERYTHING_SERVER): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/modelcontextprotocol/go-sdk/conformance/everything-server@$(EVERYTHING_SERVER_VERSION)
	mv $(LOCALBIN)/everything-server $@

# Feature targets (benchmarks, images, chart checks, e2e) live in mk/*.mk, one file per area.
-include mk/*.mk
