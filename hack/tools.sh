#!/usr/bin/env bash
# Builds one pinned packaging tool through the Go module proxy into a cache outside the repo,
# keyed by version, and prints the binary's path:
#
#   hack/tools.sh helm         # helm.sh/helm/v4/cmd/helm
#   hack/tools.sh kube-score   # github.com/zegl/kube-score/cmd/kube-score
#
# Idempotent: with a warm cache it only prints the path. Progress goes to stderr; stdout
# carries only the path. Versions are overridable (HELM_VERSION, KUBE_SCORE_VERSION) but
# pinned here so every machine runs the same binaries.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v4.3.1}
KUBE_SCORE_VERSION=${KUBE_SCORE_VERSION:-v1.20.0}
CACHE=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator}

die() { echo "tools: ERROR: $*" >&2; exit 1; }
log() { echo "tools: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 helm|kube-score"
command -v go >/dev/null || die "go is not on PATH; install Go 1.26+"

case "$1" in
  helm)
    name=helm version=$HELM_VERSION pkg=helm.sh/helm/v4/cmd/helm
    # The same version stamps helm's own release build sets (`helm version` tells the truth).
    ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
    ;;
  kube-score)
    name=kube-score version=$KUBE_SCORE_VERSION pkg=github.com/zegl/kube-score/cmd/kube-score
    ldflags="-s -w -X main.version=$version"
    ;;
  *) die "unknown tool $1 (want helm or kube-score)" ;;
esac

bin="$CACHE/$name/$version/$name"
if [ -x "$bin" ]; then
  log "using cached $name $version"
  echo "$bin"; exit 0
fi

mkdir -p "$(dirname "$bin")"
gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
log "building $name $version from $pkg (first time on this machine)"
start=$SECONDS
# go install pkg@version builds with the tool's own go.mod, untouched by this repo's.
GOBIN=$gobin CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "$pkg@$version" >&2 \
  || die "building $pkg@$version failed"
mv "$gobin/$name" "$bin.tmp"
mv "$bin.tmp" "$bin"
log "built $name $version in $((SECONDS - start))s"
echo "$bin"
