##@ Runtime benchmark
# DURATION is measured per (target, concurrency) cell; ROUNDS alternate the target order;
# N idle WebSockets are held for the RSS figure (needs `ulimit -n` > N + 512).
DURATION ?= 10s
ROUNDS ?= 2
N ?= 10000
BENCH_CONCURRENCY ?= 1,16,64
# (g), the bare stdio relay serving TLS, is the floor of (d) with the TLS its target requires.
BENCH_TARGETS ?= a,b,c,d,e,g

.PHONY: bench-runtime
bench-runtime: runtime-build $(EVERYTHING_SERVER) ## Load-test mcp-runtime vs direct and a bare proxy (req/s, p50/p99, CPU/req, RSS per WebSocket, first response).
	go build -o $(LOCALBIN)/benchruntime ./test/benchruntime
	$(LOCALBIN)/benchruntime -runtime $(LOCALBIN)/mcp-runtime -everything $(EVERYTHING_SERVER) \
	  -targets $(BENCH_TARGETS) -duration $(DURATION) -rounds $(ROUNDS) -ws $(N) -concurrency $(BENCH_CONCURRENCY)
