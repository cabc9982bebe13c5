#!/usr/bin/env bash
# The whole product on a real single-node cluster on this machine (`make demo`):
#
#   hack/demo.sh up       cluster + cert-manager + the operator (Helm chart, local images)
#                         + the stdio sample server; prints how to connect
#   hack/demo.sh install  the same without the sample (what `make test-e2e` starts from)
#   hack/demo.sh down     removes all of it and leaves the machine as it was
#   hack/demo.sh env      prints `export KUBECONFIG=…` for the running cluster
#
# Needs Linux and root (hack/localcluster says why). Everything big is built from source
# once and cached outside the repo; see hack/localcluster/README.md for what is touched.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CLUSTER="$ROOT/hack/localcluster/cluster.sh"
STATE=${LOCALCLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator/localcluster}
export KUBECONFIG="$STATE/kubeconfig"

TAG=${IMAGE_TAG:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REGISTRY=${IMAGE_REGISTRY:-ghcr.io/mcpfleet}
RELEASE=${RELEASE:-mcp-fleet}
OPERATOR_NS=${OPERATOR_NAMESPACE:-mcp-fleet-system}
DEMO_NS=${DEMO_NAMESPACE:-demo}
SAMPLE=config/samples/mcp_v1alpha1_mcpserver_stdio.yaml
SERVER=everything-stdio
HOSTS_MARKER="# mcp-fleet-operator e2e"

log() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
die() { echo "demo: ERROR: $*" >&2; exit 1; }

tools() {
  HELM=$(hack/tools.sh helm)
  KUBECTL="$("$ROOT/hack/envtest.sh")/kubectl"
  CERT_MANAGER=$(hack/certmanager.sh build)
  CERT_MANAGER_CRDS=$(hack/certmanager.sh crds)
}

k() { "$KUBECTL" "$@"; }

images() {
  log "building the images (tag $TAG) without a container engine"
  make --no-print-directory images VERSION="$TAG" IMAGE_REGISTRY="$REGISTRY" >&2
  make --no-print-directory cluster-images >&2
  make --no-print-directory build VERSION="$TAG" >&2
}

start_cert_manager() {
  log "installing cert-manager's CRDs and starting its controllers (hack/certmanager)"
  k apply --server-side --force-conflicts -f "$CERT_MANAGER_CRDS" >/dev/null
  k wait --for=condition=Established --timeout=60s crd/certificates.cert-manager.io crd/clusterissuers.cert-manager.io >/dev/null
  k create namespace cert-manager --dry-run=client -o yaml | k apply -f - >/dev/null
  # A host process of the cluster: its PID file sits with the cluster's, so `down` stops it.
  nohup "$CERT_MANAGER" --kubeconfig "$KUBECONFIG" --cluster-resource-namespace cert-manager \
    >"$STATE/logs/cert-manager.log" 2>&1 &
  echo $! >"$STATE/run/cert-manager.pid"
}

stop_cert_manager() {
  local pidfile="$STATE/run/cert-manager.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

install_operator() {
  log "installing the operator with its Helm chart (local images, cert-manager CA bootstrap, webhook)"
  k create namespace "$OPERATOR_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
  "$HELM" upgrade --install "$RELEASE" charts/mcp-fleet-operator -n "$OPERATOR_NS" \
    --set image.repository="$REGISTRY/mcp-fleet-operator" --set-string image.tag="$TAG" --set image.pullPolicy=Never \
    --set runtimeImage.repository="$REGISTRY/mcp-runtime" --set-string runtimeImage.tag="$TAG" \
    --set caBootstrap.create=always --set webhook.enabled=true \
    --wait --timeout 5m >&2
  k -n "$OPERATOR_NS" rollout status deploy --timeout=3m >&2
  k wait --for=condition=Ready --timeout=2m clusterissuer --all >/dev/null
}

up_cluster() {
  "$CLUSTER" up >&2 || die "the cluster did not come up (logs: $STATE/logs)"
}

apply_sample() {
  log "applying $SAMPLE in namespace $DEMO_NS"
  k create namespace "$DEMO_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
  # The fail-closed webhook refuses until kube-proxy routes its Service, a moment after the
  # operator's rollout is done: retry the (idempotent) apply for up to a minute.
  local try
  for try in $(seq 1 30); do
    k apply --server-side -n "$DEMO_NS" -f "$SAMPLE" >&2 && break
    [ "$try" -lt 30 ] || die "the MCPServer was refused for a minute (see above)"
    sleep 2
  done
  k wait -n "$DEMO_NS" "mcpserver/$SERVER" --for=condition=Ready --timeout=5m >&2
  k get -n "$DEMO_NS" mcpservers >&2
}

connect_info() {
  local url host ip ca token
  url=$(k get -n "$DEMO_NS" "mcpserver/$SERVER" -o jsonpath='{.status.url}')
  host=${url#https://}; host=${host%%[:/]*}
  ip=$(k get -n "$DEMO_NS" "service/$SERVER" -o jsonpath='{.spec.clusterIP}')
  # Ready means the pods are; kube-proxy programs the Service's endpoints a moment later.
  local port i
  port=${url#https://*:}; port=${port%%/*}
  for i in $(seq 1 100); do
    timeout 1 bash -c "</dev/tcp/$ip/$port" 2>/dev/null && break
    [ "$i" -lt 100 ] || die "the Service $ip:$port is not reachable 30 s after Ready"
    sleep 0.3
  done
  ca="$STATE/demo-ca.crt"
  k get -n "$DEMO_NS" "secret/$SERVER-tls" -o jsonpath='{.data.ca\.crt}' | base64 -d >"$ca"
  # The host has no cluster DNS: name the Service in /etc/hosts (removed again by `down`).
  sed -i "/$HOSTS_MARKER/d" /etc/hosts
  echo "$ip $host $HOSTS_MARKER" >>/etc/hosts
  token=$(bin/mcp-runtime token --server "$SERVER" -n "$DEMO_NS" --ttl 10m)
  # Any kubectl works; without one on PATH, point at the one built for the cluster.
  kubectl_cmd=kubectl
  command -v kubectl >/dev/null || kubectl_cmd="$KUBECTL"
  cat <<EOF

The demo is up.
  kubeconfig:  export KUBECONFIG=$KUBECONFIG   (then: $kubectl_cmd get mcps -A)
  URL:         $url   ($host -> $ip in /etc/hosts)
  CA:          $ca
  token (10m): bin/mcp-runtime token --server $SERVER -n $DEMO_NS --ttl 10m

Connect with the official Go SDK client (lists the tools, calls one):

  go run ./examples/client -url $url -ca $ca -token $token

Tear it all down with: make demo-down
EOF
}

down() {
  stop_cert_manager
  if [ -w /etc/hosts ]; then sed -i "/$HOSTS_MARKER/d" /etc/hosts; fi
  rm -f "$STATE/demo-ca.crt"
  "$CLUSTER" down
}

case "${1:-}" in
  up | install)
    [ "$(id -u)" = 0 ] || die "needs root (kubelet, containerd, iptables); run it as root"
    tools
    images
    trap 'echo "demo: failed; tearing down (logs kept in $STATE/logs)" >&2; down >&2' ERR INT TERM
    up_cluster
    start_cert_manager
    install_operator
    if [ "$1" = up ]; then apply_sample; connect_info; fi
    trap - ERR INT TERM
    ;;
  down) down ;;
  env) echo "export KUBECONFIG=$KUBECONFIG" ;;
  *) die "usage: $0 up|install|down|env" ;;
esac
