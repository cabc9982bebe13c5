#!/usr/bin/env bash
# Provides envtest assets (etcd, kube-apiserver, kubectl, kube-controller-manager) for one
# Kubernetes version and prints the directory that holds them.
#
# 1. Use the cache if it is complete (setup-envtest's store layout, outside the repo).
# 2. Otherwise try setup-envtest's download (quick timeout: it is unreachable offline).
# 3. Otherwise build every binary from source through the Go module proxy, with wrapper
#    modules pinned to exact versions and version ldflags so the binaries report the truth.
#
# Idempotent: a second run with a warm cache does nothing but print the path.
# Progress goes to stderr; stdout carries only the assets directory.
set -euo pipefail
# shellcheck source=hack/lib/k8s-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s-build.sh"

K8S_VERSION=${ENVTEST_K8S_VERSION:-1.36.3}
ETCD_VERSION=${ENVTEST_ETCD_VERSION:-v3.6.8}
SETUP_ENVTEST_VERSION=${SETUP_ENVTEST_VERSION:-v0.25.1}
STORE=${ENVTEST_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest}
ASSETS="$STORE/k8s/${K8S_VERSION}-linux-amd64"
BINARIES=(etcd kube-apiserver kubectl kube-controller-manager)

log() { echo "envtest: $*" >&2; }
die() { echo "envtest: ERROR: $*" >&2; exit 1; }

complete() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$ASSETS/$b" ] || return 1; done
}

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "only linux/amd64 is supported by the source build (got $(uname -s)-$(uname -m))"
command -v go >/dev/null || die "go is not on PATH; install Go 1.26+"

if complete; then
  log "using cached assets in $ASSETS"
  echo "$ASSETS"; exit 0
fi
mkdir -p "$ASSETS"

# --- 2. setup-envtest download (works where the release host is reachable) ---------------
if [ -z "${ENVTEST_SKIP_DOWNLOAD:-}" ]; then
  log "trying setup-envtest download of $K8S_VERSION"
  dl=$(mktemp -d)
  if timeout 120 env GOFLAGS=-mod=mod go run "sigs.k8s.io/controller-runtime/tools/setup-envtest@${SETUP_ENVTEST_VERSION}" \
       use "$K8S_VERSION" --bin-dir "$dl" -p path >"$dl/path" 2>"$dl/err"; then
    src=$(cat "$dl/path")
    for b in etcd kube-apiserver kubectl; do [ -x "$src/$b" ] && cp "$src/$b" "$ASSETS/$b"; done
  else
    log "setup-envtest download unavailable ($(tail -1 "$dl/err" 2>/dev/null || true)); building from source"
  fi
  rm -rf "$dl"
fi

# --- 3. build from source ---------------------------------------------------------------
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

build_kubernetes() {
  K8S_BUILD_LOG_PREFIX=envtest k8s_build_binaries "$K8S_VERSION" "$ASSETS" kube-apiserver kubectl kube-controller-manager \
    || die "building the Kubernetes binaries failed"
}

build_etcd() {
  [ -x "$ASSETS/etcd" ] && return 0
  log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3"
  mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
  go mod init envtest-etcd-wrapper >/dev/null 2>&1
  GOFLAGS=-mod=mod go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 || die "could not fetch etcd $ETCD_VERSION"
  local s=$SECONDS
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3 || die "building etcd failed"
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
  log "built etcd in $((SECONDS - s))s"
}

build_etcd
build_kubernetes
complete || die "assets incomplete in $ASSETS"
"$ASSETS/kube-apiserver" --version >&2
echo "$ASSETS"
