#!/usr/bin/env bash
# Installs Debian's Chromium (package chromium) for the browser tests and prints the path of
# the browser, /usr/bin/chromium. Idempotent: a warm run only checks that it starts.
# Concurrent callers serialise on a lock, so apt runs once. Test tools' own browser
# downloads (`npx playwright install`) cannot work here: only Debian's build is used.
set -euo pipefail

bin=/usr/bin/chromium
cache="${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator}"

ready() { [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q '^Chromium '; }

if ready; then
	echo "$bin"
	exit 0
fi

command -v apt-get >/dev/null || { echo "chromium.sh: $bin is missing and there is no apt-get: install Chromium and set MCP_CHROMIUM to its path" >&2; exit 1; }
sudo=()
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null || { echo "chromium.sh: installing the chromium package needs root (or sudo)" >&2; exit 1; }
	sudo=(sudo)
fi
mkdir -p "$cache"
exec 9>"$cache/.chromium.lock"
flock -w 900 9 || { echo "chromium.sh: timed out waiting for another install of chromium" >&2; exit 1; }
if ready; then # another caller finished while we waited
	echo "$bin"
	exit 0
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -o DPkg::Lock::Timeout=600 &&
	"${sudo[@]}" apt-get install -y -o DPkg::Lock::Timeout=600 chromium; } >"$log" 2>&1; then
	echo "chromium.sh: 'apt-get install chromium' failed; apt said:" >&2
	tail -20 "$log" >&2
	exit 1
fi
ready || { echo "chromium.sh: installed, but '$bin --version' does not print a Chromium version" >&2; exit 1; }
echo "$bin"
