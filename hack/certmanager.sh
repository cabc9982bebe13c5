#!/usr/bin/env bash
# cert-manager for the local cluster and tests, with no images: the project's own launcher
# (hack/certmanager, its own Go module) runs cert-manager's controllers and cainjector out of
# cluster against a kubeconfig.
#
#   hack/certmanager.sh build   # builds cert-manager-local, prints the binary's path
#   hack/certmanager.sh crds    # prints the path of one YAML file with cert-manager's CRDs
#
# Then:
#   kubectl apply --server-side -f "$(hack/certmanager.sh crds)"   # too big for client-side apply
#   "$(hack/certmanager.sh build)" --kubeconfig "$KUBECONFIG"       # --help lists the flags
#
# Both live in a cache outside the repo keyed by the cert-manager version pinned in
# hack/certmanager/go.mod. Idempotent: with a warm cache they only print the path (the
# launcher is rebuilt when its sources change). Progress goes to stderr; stdout carries only
# the path.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_DIR=$ROOT/hack/certmanager
CACHE=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator}

die() { echo "certmanager: ERROR: $*" >&2; exit 1; }
log() { echo "certmanager: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 build|crds"
command -v go >/dev/null || die "go is not on PATH; install Go 1.26+"

# The launcher's own go.mod pins cert-manager; its CRDs come from the same module version.
version=$(go -C "$MODULE_DIR" list -m -f '{{.Version}}' github.com/cert-manager/cert-manager) \
  || die "reading the cert-manager version from hack/certmanager/go.mod failed"
dir="$CACHE/cert-manager/$version"
mkdir -p "$dir"

case "$1" in
  build)
    bin="$dir/cert-manager-local"
    # Keyed by the sources too: the launcher is this repo's code, not a pinned release.
    sources=(go.mod go.sum)
    for f in "$MODULE_DIR"/*.go; do [[ $f == *_test.go ]] || sources+=("${f##*/}"); done
    sum=$( (cd "$MODULE_DIR" && cat "${sources[@]}" && go env GOVERSION) | sha256sum | cut -d' ' -f1)
    if [ -x "$bin" ] && [ "$(cat "$bin.sum" 2>/dev/null)" = "$sum" ]; then
      log "using cached cert-manager-local ($version)"
      echo "$bin"; exit 0
    fi
    log "building cert-manager-local with cert-manager $version (a few minutes the first time)"
    start=$SECONDS
    # A private temporary name: other scripts (demo, e2e) may build at the same time.
    tmp=$(mktemp "$dir/.cert-manager-local.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    CGO_ENABLED=0 go -C "$MODULE_DIR" build -trimpath -ldflags "-s -w" -o "$tmp" . >&2 \
      || die "building hack/certmanager failed"
    mv "$tmp" "$bin"
    echo "$sum" >"$bin.sum"
    log "built cert-manager-local in $((SECONDS - start))s"
    echo "$bin"
    ;;
  crds)
    out="$dir/crds.yaml"
    if [ -s "$out" ]; then
      log "using cached CRDs ($version)"
      echo "$out"; exit 0
    fi
    # The same source the envtest suites install: deploy/crds of the pinned module.
    go -C "$MODULE_DIR" mod download github.com/cert-manager/cert-manager >&2 \
      || die "downloading github.com/cert-manager/cert-manager@$version failed"
    src="$(go -C "$MODULE_DIR" list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)/deploy/crds"
    ls "$src"/*.yaml >/dev/null 2>&1 || die "no CRDs in $src"
    # Every file starts with its own '---'; cat keeps them separate documents.
    tmp=$(mktemp "$dir/.crds.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    cat "$src"/*.yaml >"$tmp"
    chmod 644 "$tmp"
    mv "$tmp" "$out"
    log "wrote $(grep -c '^kind: CustomResourceDefinition' "$out") CRDs from $src"
    echo "$out"
    ;;
  *) die "unknown command $1 (want build or crds)" ;;
esac
