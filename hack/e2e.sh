#!/usr/bin/env bash
# `make test-e2e`: brings the local single-node cluster up with the operator installed
# (hack/demo.sh install), runs the Ginkgo suite in test/e2e against it from the host, and
# tears everything down again, also when the suite fails or is interrupted. With a cluster
# already running (say, from `make demo`) it runs against that one and leaves it up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STATE=${LOCALCLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator/localcluster}
LOG="$ROOT/bin/e2e.log"
mkdir -p "$ROOT/bin"

[ "$(id -u)" = 0 ] || { echo "e2e: needs root: the cluster runs kubelet and containerd on this machine" >&2; exit 1; }

if hack/localcluster/cluster.sh status >/dev/null 2>&1; then
  echo "e2e: a local cluster is already running; testing against it and leaving it up" >&2
else
  trap 'hack/demo.sh down >&2' EXIT
  hack/demo.sh install
fi
# Prerequisites of the browser and Node clients (idempotent, cached).
hack/chromium.sh >/dev/null
hack/node22.sh >/dev/null

export KUBECONFIG="$STATE/kubeconfig"
export E2E_MCP_RUNTIME="$ROOT/bin/mcp-runtime"
export E2E_KUBECTL="$(hack/envtest.sh)/kubectl"
status=0
go test -tags e2e ./test/e2e/ -count=1 -timeout 45m -v -ginkgo.v -ginkgo.no-color 2>&1 | tee "$LOG" || status=$?
grep -E '^Ran [0-9]+ of [0-9]+ Specs|Passed \| [0-9]+ Failed' "$LOG" || true
exit $status
