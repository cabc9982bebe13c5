#!/usr/bin/env bash
# Checks a running localcluster end to end (`make cluster-smoke`), in its own namespace
# (deleted afterwards), with Pod Security "restricted" enforced:
#
#  1. a Deployment of the project's runtime: `mcp-runtime install` as init container, then
#     `mcp-runtime serve -- /everything-server` in the everything-server image (non-root,
#     read-only root filesystem, all capabilities dropped) reaches Available;
#  2. its ClusterIP Service answers from the host (kube-proxy's OUTPUT path): /readyz, and an
#     MCP initialize through the runtime to the everything-server;
#  3. a pod reaches the API server through the `kubernetes` Service with its token;
#  4. pod IPs answer from the host; `kubectl exec` and `kubectl logs` work; a pod reaches
#     another Service (pod -> ClusterIP -> pod);
#  5. `mcp-runtime version` runs to completion and its log is the image's version;
#  6. cluster DNS: a pod resolves Services by name (search path and FQDN).
#
# The runtime image is the one `make images` wrote (dist/images/mcp-runtime.tar), or
# $MCP_RUNTIME_IMAGE. Exit 0 only if every check passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KUBECONFIG=$("$HERE/cluster.sh" kubeconfig)
S=$(dirname "$KUBECONFIG")
NS=localcluster-smoke
T0=$SECONDS

log() { echo "smoke: $*" >&2; }
die() { echo "smoke: FAIL: $*" >&2; exit 1; }
k() { timeout 60 "$S/bin/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }
pass() { log "ok   $* (+$((SECONDS - T0))s)"; }

RUNTIME_IMAGE=${MCP_RUNTIME_IMAGE:-}
if [ -z "$RUNTIME_IMAGE" ]; then
  [ -f "$REPO/dist/images/mcp-runtime.tar" ] || die "no dist/images/mcp-runtime.tar: run 'make images' (then 'cluster.sh import' or a new up), or set MCP_RUNTIME_IMAGE"
  RUNTIME_IMAGE=$(tar -xOf "$REPO/dist/images/mcp-runtime.tar" manifest.json | sed -n 's/.*"RepoTags":\["\([^"]*\)".*/\1/p')
fi
ES_IMAGE=${EVERYTHING_SERVER_IMAGE:-ghcr.io/mcpfleet/everything-server:v1.8.0}
PROBE_IMAGE=localhost/probe:v1
log "runtime image $RUNTIME_IMAGE, upstream image $ES_IMAGE"

cleanup() { k delete namespace "$NS" --wait=true --timeout=60s >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

restricted='securityContext:
          runAsNonRoot: true
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}'

k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: ConfigMap
metadata: {name: mcp, namespace: $NS}
data:
  config.json: '{"tls": {"insecure": true}, "auth": {"anonymous": true}}'
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mcp, namespace: $NS}
spec:
  selector: {matchLabels: {app: mcp}}
  template:
    metadata: {labels: {app: mcp}}
    spec:
      automountServiceAccountToken: false
      initContainers:
      - name: install
        image: $RUNTIME_IMAGE
        imagePullPolicy: Never
        args: [install, /rt]
        volumeMounts: [{name: rt, mountPath: /rt}]
        $restricted
      containers:
      - name: server
        image: $ES_IMAGE
        imagePullPolicy: Never
        command: [/rt/mcp-runtime, serve, --config, /etc/mcp/config.json, --, /everything-server]
        ports: [{containerPort: 8443, name: mcp}, {containerPort: 9090, name: health}]
        readinessProbe: {httpGet: {path: /readyz, port: 9090}, periodSeconds: 2}
        volumeMounts: [{name: rt, mountPath: /rt, readOnly: true}, {name: config, mountPath: /etc/mcp}]
        $restricted
      volumes:
      - {name: rt, emptyDir: {}}
      - {name: config, configMap: {name: mcp}}
---
apiVersion: v1
kind: Service
metadata: {name: mcp, namespace: $NS}
spec:
  selector: {app: mcp}
  ports: [{name: mcp, port: 8443, targetPort: 8443}, {name: health, port: 9090, targetPort: 9090}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: probe, namespace: $NS}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      automountServiceAccountToken: false
      containers:
      - name: probe
        image: $PROBE_IMAGE
        imagePullPolicy: Never
        args: [serve, -addr, ":8080"]
        ports: [{containerPort: 8080}]
        $restricted
---
apiVersion: v1
kind: Service
metadata: {name: probe, namespace: $NS}
spec:
  selector: {app: probe}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: apicheck, namespace: $NS}
spec:
  restartPolicy: Never
  containers:
  - name: apicheck
    image: $PROBE_IMAGE
    imagePullPolicy: Never
    args: [apiserver]
    $restricted
---
apiVersion: v1
kind: Pod
metadata: {name: version, namespace: $NS}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - name: version
    image: $RUNTIME_IMAGE
    imagePullPolicy: Never
    args: [version]
    $restricted
EOF
pass "manifests admitted under Pod Security restricted"

k -n "$NS" wait --for=condition=Available deployment/mcp deployment/probe --timeout=90s >/dev/null \
  || { k -n "$NS" get pods -o wide >&2; k -n "$NS" describe pods >&2; die "deployments not Available"; }
pass "deployments mcp (mcp-runtime + everything-server) and probe Available"
k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/apicheck pod/version --timeout=60s >/dev/null \
  || { k -n "$NS" get pods >&2; k -n "$NS" logs apicheck >&2 || true; die "pods apicheck/version did not succeed"; }

got=$(k -n "$NS" logs version)
want=$(tar -xOf "$REPO/dist/images/mcp-runtime.tar" manifest.json 2>/dev/null | sed -n 's/.*"RepoTags":\["[^"]*:\([^"]*\)".*/\1/p' || true)
[ -z "${MCP_RUNTIME_IMAGE:-}" ] && [ "$got" != "$want" ] && die "mcp-runtime version printed '$got', want '$want'"
pass "kubectl logs: mcp-runtime version = $got"

out=$(k -n "$NS" logs apicheck)
echo "$out" | grep -q "reached at https://$(k get svc kubernetes -o jsonpath='{.spec.clusterIP}'):443" || die "apicheck: $out"
pass "pod -> kubernetes Service -> API server: $out"

mcp_ip=$(k -n "$NS" get svc mcp -o jsonpath='{.spec.clusterIP}')
probe_ip=$(k -n "$NS" get svc probe -o jsonpath='{.spec.clusterIP}')
curl -fsS --max-time 5 "http://$mcp_ip:9090/readyz" >/dev/null || die "host -> ClusterIP $mcp_ip:9090/readyz"
pass "host -> ClusterIP $mcp_ip:9090/readyz"

init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"0"}}}'
resp=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d "$init" "http://$mcp_ip:8443/mcp") || die "host -> ClusterIP $mcp_ip:8443/mcp initialize"
echo "$resp" | grep -q '"serverInfo"' || die "initialize answered without serverInfo: $resp"
pass "host -> ClusterIP $mcp_ip:8443/mcp initialize -> $(echo "$resp" | grep -o '"serverInfo":{[^}]*}')"

out=$(curl -fsS --max-time 5 "http://$probe_ip/") || die "host -> ClusterIP $probe_ip:80"
pass "host -> ClusterIP $probe_ip:80 -> $out"
pod=$(k -n "$NS" get pod -l app=probe -o jsonpath='{.items[0].metadata.name}')
pod_ip=$(k -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
out=$(curl -fsS --max-time 5 "http://$pod_ip:8080/") || die "host -> pod IP $pod_ip:8080"
pass "host -> pod IP $pod_ip:8080 -> $out"

out=$(k -n "$NS" exec "$pod" -- /probe get "http://$mcp_ip:9090/healthz") || die "kubectl exec $pod -- /probe get http://$mcp_ip:9090/healthz"
pass "kubectl exec + pod -> ClusterIP -> pod: $out"
out=$(k -n "$NS" exec "$pod" -- /probe get "http://$probe_ip/") || die "hairpin: pod -> its own Service"
pass "pod -> own Service (hairpin): $out"

out=$(k -n "$NS" exec "$pod" -- /probe get "http://mcp:9090/healthz") || die "pod -> http://mcp:9090 (cluster DNS, search path)"
out=$(k -n "$NS" exec "$pod" -- /probe get "http://probe.$NS.svc.cluster.local/") || die "pod -> http://probe.$NS.svc.cluster.local (cluster DNS)"
pass "cluster DNS from a pod: mcp, probe.$NS.svc.cluster.local -> $out"

k -n "$NS" logs deploy/mcp -c server | head -3 | cut -c1-200 >&2
pass "all checks in $((SECONDS - T0))s"
