##@ Benchmarks
# N MCPServers against a real kube-apiserver + etcd (envtest binaries, built from source by
# hack/envtest.sh when they cannot be downloaded), bin/manager running as its own process.
# N is shared with other bench targets (each has its own default), so only a user's N counts.
BENCH_OPERATOR_N = $(if $(filter command line environment,$(origin N)),$(N),100)
QUIET ?= 60s
BENCH_OPERATOR_SCENARIOS ?= well,podsdown,nocertmanager

.PHONY: bench-operator
bench-operator: ## Operator at scale: N=100 servers (N=1000 for the full run), QUIET=60s window; see docs/benchmarks.md.
	@assets=$$(ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/envtest.sh) && \
	go build -trimpath -ldflags '$(LDFLAGS)' -o $(LOCALBIN)/manager ./cmd/manager && \
	go build -o $(LOCALBIN)/bench-operator ./test/benchoperator && \
	$(LOCALBIN)/bench-operator -assets "$$assets" -manager $(LOCALBIN)/manager \
	  -n $(BENCH_OPERATOR_N) -quiet $(QUIET) -scenarios $(BENCH_OPERATOR_SCENARIOS)
