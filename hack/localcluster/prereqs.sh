#!/usr/bin/env bash
# Installs the Debian packages the localcluster runs on (idempotent: does nothing when they
# are all installed). Waits for a dpkg lock held by another apt run instead of failing.
#
# Not pinned to exact Debian versions: the archive keeps only the current point release, so
# a pin would break on the next security update. Tested with Debian 12: containerd
# 1.6.20~ds1-1+deb12u3, runc 1.1.5+ds1-1+deb12u1, containernetworking-plugins 1.1.1+ds1-3+b5,
# iptables 1.8.9-2, conntrack 1:1.4.7-1+b2, openssl 3.0.22-1~deb12u2, curl (readiness checks).
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack openssl curl)

log() { echo "localcluster: $*" >&2; }
die() { echo "localcluster: ERROR: $*" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "prerequisites installed (${PACKAGES[*]})"
  exit 0
fi
command -v apt-get >/dev/null || die "missing ${missing[*]} and apt-get is not available: install them with the system's package manager"
[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: run as root to install them"
log "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=900 -q)
apt-get "${apt_opts[@]}" update >&2 || die "apt-get update failed"
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
log "installed ${missing[*]}"
