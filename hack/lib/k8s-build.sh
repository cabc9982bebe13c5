# shellcheck shell=bash
# Builds Kubernetes binaries from source through the Go module proxy. Sourced by
# hack/envtest.sh and hack/localcluster/cluster.sh; one definition of the wrapper module and
# of the flags, so every binary reports the right version and the Go build cache is shared.
#
#   source hack/lib/k8s-build.sh
#   k8s_build_binaries 1.36.3 "$DEST" kube-apiserver kubelet ...
#
# Builds only the binaries missing from DEST (atomically: <name>.tmp then mv). Progress goes
# to stderr prefixed with $K8S_BUILD_LOG_PREFIX; returns non-zero with a message on failure.

# Binaries k8s_build_binaries knows (all live under k8s.io/kubernetes/cmd/).
K8S_BUILD_KNOWN=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

_k8s_build_log() { echo "${K8S_BUILD_LOG_PREFIX:-k8s-build}: $*" >&2; }

# k8s_build_ldflags VERSION: the fixed flag set (same for every binary, so the cache is reused).
# Without the -X stamps the binaries report v0.0.0-master.
k8s_build_ldflags() {
  local version=$1 v minor p ldf="-s -w"
  v="v${version#v}"
  minor=$(echo "${version#v}" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$ldf"
}

# k8s_build_binaries VERSION DEST NAME...: build each NAME missing from DEST.
k8s_build_binaries() {
  local version=${1#v} dest=$2; shift 2
  local need=() b k ok
  for b in "$@"; do
    ok=
    for k in "${K8S_BUILD_KNOWN[@]}"; do [ "$b" = "$k" ] && ok=1; done
    [ -n "$ok" ] || { _k8s_build_log "ERROR: unknown binary $b (known: ${K8S_BUILD_KNOWN[*]})"; return 1; }
    [ -x "$dest/$b" ] || need+=("$b")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  command -v go >/dev/null || { _k8s_build_log "ERROR: go is not on PATH; install Go 1.26+"; return 1; }
  mkdir -p "$dest" || return 1

  local v="v$version" work rc=0
  work=$(mktemp -d) || return 1
  _k8s_build_log "building ${need[*]} from k8s.io/kubernetes@$v (several minutes on a cold cache)"
  # A subshell in an || list ignores set -e, so every step checks its own status.
  (
    cd "$work" || exit 1
    go mod init k8s-build-wrapper >/dev/null 2>&1 || { _k8s_build_log "ERROR: go mod init failed in $work"; exit 1; }
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
    # paths; a wrapper must replace each one with the published v0.<minor>.<patch> instead.
    gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [ -f "$gomod" ] || { _k8s_build_log "ERROR: could not download k8s.io/kubernetes@$v through the module proxy"; exit 1; }
    staging=$(awk '/^replace \(/{r=1;next} r&&/^\)/{r=0} r&&$1 ~ /^k8s.io\// && $3 ~ /^\.\/staging/ {print $1}' "$gomod")
    [ -n "$staging" ] || { _k8s_build_log "ERROR: found no staging modules in k8s.io/kubernetes@$v go.mod"; exit 1; }
    {
      echo "require k8s.io/kubernetes $v"
      for m in $staging; do echo "replace $m => $m v0.${version#1.}"; done
    } >>go.mod
    {
      printf 'package tools\n\nimport (\n'
      for b in "${need[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
      printf ')\n'
    } >tools.go
    GOFLAGS=-mod=mod go mod tidy >&2 || { _k8s_build_log "ERROR: go mod tidy failed for the kubernetes wrapper module"; exit 1; }
    ldf=$(k8s_build_ldflags "$version")
    for b in "${need[@]}"; do
      s=$SECONDS
      CGO_ENABLED=0 go build -trimpath -ldflags "$ldf" -o "$dest/$b.tmp" "k8s.io/kubernetes/cmd/$b" \
        || { rm -f "$dest/$b.tmp"; _k8s_build_log "ERROR: building $b failed"; exit 1; }
      mv "$dest/$b.tmp" "$dest/$b" || exit 1
      _k8s_build_log "built $b in $((SECONDS - s))s"
    done
  ) || rc=$?
  rm -rf "$work"
  return $rc
}
