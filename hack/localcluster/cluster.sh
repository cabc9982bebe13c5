#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine (Linux, root, no container engine):
# containerd + runc + CNI bridge, etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet and kube-proxy (iptables), all v1.36.3 built from source, and
# CoreDNS as the cluster DNS.
#
#   cluster.sh up [--image-dir DIR]...   start it; prints the admin kubeconfig path on stdout
#   cluster.sh down                      remove everything up created, host-wide (idempotent)
#   cluster.sh status                    exit 0 only if every component runs and the node is Ready
#   cluster.sh import IMAGE.tar...       import more images into the running containerd
#   cluster.sh images                    (re)build the localcluster's own images
#   cluster.sh kubeconfig                print the admin kubeconfig path (exit 1 when down)
#   cluster.sh leftovers                 list what down should have removed (exit 1 if any)
#
# See hack/localcluster/README.md for the interface, the requirements and what it touches.
# Progress goes to stderr; stdout carries only what a caller consumes (kubeconfig path,
# status lines).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=hack/lib/k8s-build.sh
source "$REPO/hack/lib/k8s-build.sh"
# shellcheck source=hack/localcluster/pki.sh
source "$HERE/pki.sh"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

# --- the interface (fixed: tests and the demo rely on these) --------------------------------
K8S_VERSION=${LOCALCLUSTER_K8S_VERSION:-1.36.3}
S=${LOCALCLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator/localcluster}
IMAGES_DIR=${LOCALCLUSTER_IMAGES_DIR:-$S/images}
# Image tarball directories imported by up, besides IMAGES_DIR (colon-separated).
IMAGE_DIRS=${LOCALCLUSTER_IMAGE_DIRS:-$REPO/dist/images}
NODE_NAME=localcluster
NODE_IP=10.99.0.1         # on NODE_BRIDGE as a /32: a private, port-less address of the host
NODE_BRIDGE=lcnode0
POD_BRIDGE=lccni0
POD_CIDR=10.244.0.0/16
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
API_URL=https://$NODE_IP:$API_PORT
ETCD_CLIENT=127.0.0.1:12379
ETCD_PEER=127.0.0.1:12380
DNS_SERVICE_IP=10.96.0.10 # kube-system/kube-dns, served by CoreDNS on NODE_IP:53
COREDNS_VERSION=${LOCALCLUSTER_COREDNS_VERSION:-v1.14.7}
COREDNS_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcp-fleet-operator/coredns/$COREDNS_VERSION
IMAGE_TAG=v1
PAUSE_IMAGE=localhost/pause:$IMAGE_TAG
KUBECONFIG_PATH=$S/kubeconfig
# ---------------------------------------------------------------------------------------------

LOCK=/run/lock/mcp-fleet-operator-localcluster.lock
# Which state dir owns the host-wide pieces (bridges, iptables, cgroups) right now.
MARKER=/run/mcp-fleet-operator-localcluster
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler coredns kubelet kube-proxy)
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
# Sysctls the node changes (kubelet's kernel tunables, forwarding, kube-proxy's localnet);
# recorded before up and restored by down.
SYSCTLS=(net/ipv4/ip_forward net/ipv4/conf/all/route_localnet net/bridge/bridge-nf-call-iptables
  net/bridge/bridge-nf-call-ip6tables vm/overcommit_memory vm/panic_on_oom kernel/panic
  kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Host paths kubelet/containerd/CNI may create outside the state dir; down removes those
# that did not exist before up.
HOST_PATHS=(/var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers /run/containerd /etc/cni)

T0=$SECONDS
log() { echo "localcluster: $*" >&2; }
die() { echo "localcluster: ERROR: $*" >&2; exit 1; }
since() { echo "+$((SECONDS - T0))s"; }
kc() { timeout 20 "$S/bin/kubectl" --kubeconfig "$S/etc/admin.kubeconfig" "$@"; }
ctr_() { timeout 20 ctr -a "$S/run/containerd.sock" -n k8s.io "$@"; }

# --- processes ------------------------------------------------------------------------------
# pid_of NAME [STATE]
pid_of() { local d=${2:-$S}; [ -f "$d/run/$1.pid" ] && cat "$d/run/$1.pid" 2>/dev/null; }

# alive NAME [STATE]: the recorded PID runs and is ours (its command line names the state
# dir), so a recycled PID is never mistaken for a component.
alive() {
  local d=${2:-$S} pid
  pid=$(pid_of "$1" "$d") || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$d/"
}

# start NAME CMD...: detached (own session, no lock fd, no terminal), log in logs/NAME.log.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$S/logs/$name.log" 2>&1 7>&- 8>&- 9>&- &
  echo $! >"$S/run/$name.pid"
  log "started $name (pid $!) $(since)"
}

# running PID: exists and is not a zombie (our daemons' parent is init, which may reap late).
running() { [ -r "/proc/$1/stat" ] && ! awk '{exit !($3 == "Z")}' "/proc/$1/stat" 2>/dev/null; }

# stop NAME...: SIGTERM to all at once, up to 20 s, then SIGKILL.
stop() {
  local name pids=() names=() p left
  for name in "$@"; do
    if alive "$name"; then pids+=("$(pid_of "$name")"); names+=("$name"); fi
    rm -f "$S/run/$name.pid"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  local t=$SECONDS
  for _ in $(seq 1 100); do
    left=; for p in "${pids[@]}"; do running "$p" && left=1; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  for p in "${pids[@]}"; do
    if running "$p"; then log "SIGKILL pid $p ($(cut -d' ' -f2,3 "/proc/$p/stat" 2>/dev/null) after $((SECONDS - t))s)"; kill -9 "$p" 2>/dev/null || true; fi
  done
  log "stopped ${names[*]} $(since)"
}

# waitfor WHAT SECONDS COMPONENT[,COMPONENT...] CMD...: poll CMD once a second; fail early,
# with its log, if a COMPONENT died.
waitfor() {
  local what=$1 n=$2 comps=$3 comp; shift 3
  for _ in $(seq 1 "$n"); do
    if "$@" >/dev/null 2>&1; then log "$what ok $(since)"; return 0; fi
    for comp in ${comps//,/ }; do
      if ! alive "$comp"; then
        log "$comp exited; last lines of $S/logs/$comp.log:"; tail -20 "$S/logs/$comp.log" >&2 || true
        die "$what: $comp is not running"
      fi
    done
    sleep 1
  done
  for comp in "${COMPONENTS[@]}"; do [ -f "$S/logs/$comp.log" ] && { log "--- $comp.log (tail)"; tail -5 "$S/logs/$comp.log" >&2; }; done
  die "$what: timed out after ${n}s (logs in $S/logs)"
}

# --- checks ---------------------------------------------------------------------------------
preflight() {
  [ "$(uname -s)" = Linux ] || die "the localcluster needs Linux (got $(uname -s))"
  [ "$(uname -m)" = x86_64 ] || die "the localcluster binaries are built for amd64 (got $(uname -m))"
  [ "$(id -u)" -eq 0 ] || die "the localcluster needs root (it starts containerd and kubelet, and changes iptables, cgroups and links): run it with sudo"
  grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (CONFIG_OVERLAY_FS; try: modprobe overlay)"
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    local c; for c in cpu memory pids; do
      grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || die "cgroup v2 controller $c is not available in /sys/fs/cgroup/cgroup.controllers"
    done
  else
    local c; for c in cpu cpuset memory pids; do
      [ -d "/sys/fs/cgroup/$c" ] || die "cgroup v1 controller $c is not mounted at /sys/fs/cgroup/$c"
    done
  fi
  if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    modprobe br_netfilter 2>/dev/null || true
    [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || die "bridge netfilter is missing (CONFIG_BRIDGE_NETFILTER; try: modprobe br_netfilter)"
  fi
  if [ -r /proc/config.gz ]; then
    local k; for k in CONFIG_VETH CONFIG_BRIDGE CONFIG_NF_NAT CONFIG_NETFILTER_XT_MATCH_COMMENT CONFIG_NETFILTER_XT_MATCH_STATISTIC; do
      zgrep -qE "^$k=(y|m)" /proc/config.gz || die "the kernel lacks $k (needed by the CNI bridge or kube-proxy)"
    done
  fi
}

# preflight_tools: after prereqs.sh, the tools up runs work here.
preflight_tools() {
  local t
  for t in containerd ctr runc iptables ip6tables conntrack openssl curl flock setsid ip; do
    command -v "$t" >/dev/null || die "$t is not on PATH (hack/localcluster/prereqs.sh installs the Debian packages)"
  done
  for t in bridge host-local portmap; do
    [ -x "/usr/lib/cni/$t" ] || die "the CNI plugin $t is not in /usr/lib/cni (Debian package containernetworking-plugins)"
  done
  iptables -t nat -S >/dev/null 2>&1 || die "iptables -t nat does not work here (netfilter NAT missing?)"
}

# --- teardown -------------------------------------------------------------------------------
# Our PIDs beyond the PID files (shims, lost PID files): processes whose command line names the
# state dir and whose executable is containerd's or one of the Kubernetes binaries.
stray_pids() {
  local f p exe
  # one grep over every command line, then the executable check on the few matches
  while read -r f; do
    p=${f#/proc/}; p=${p%/cmdline}
    [ "$p" = $$ ] && continue
    exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
    case "$exe" in
      /usr/bin/containerd* | "$S"/bin/* | */kubebuilder-envtest/k8s/* | "$COREDNS_CACHE"/*) echo "$p" ;;
    esac
  done < <(grep -laF -- "$S/" /proc/[0-9]*/cmdline 2>/dev/null || true)
  return 0
}

cgroup_roots() {
  local h
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo /sys/fs/cgroup; else
    for h in /sys/fs/cgroup/*/; do echo "${h%/}"; done
  fi
}

# Kill what runs in the pods' cgroups (containers outlive a killed shim) and remove the cgroups.
cleanup_cgroups() {
  local root g pids
  for _ in 1 2 3 4 5; do
    pids=$(for root in $(cgroup_roots); do [ -d "$root/kubepods" ] && find "$root/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
    [ -z "$pids" ] && break
    log "killing leftover container processes: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 1
  done
  for root in $(cgroup_roots); do
    for g in kubepods k8s.io; do
      [ -d "$root/$g" ] && { find "$root/$g" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
    done
  done
  return 0
}

# nft tables (FAMILY NAME lines) that exist now but did not before up.
new_nft_tables() {
  [ -f "$S/nft-tables.before" ] || return 0
  nft list tables 2>/dev/null | awk '{print $2, $3}' | grep -vxF -f "$S/nft-tables.before" || true
}

# nft_table_empty FAMILY NAME: only base chains, no rules, every policy accept.
nft_table_empty() {
  local body
  body=$(nft list table "$1" "$2" 2>/dev/null) || return 1
  ! grep -qE 'policy drop' <<<"$body" && ! grep -qvE '^\s*(table .*\{|chain .*\{|type .*;|\}|)\s*$' <<<"$body"
}

cleanup_iptables() {
  local ipt t ch
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    for t in filter nat mangle raw; do
      $ipt -t $t -S >/dev/null 2>&1 || continue
      # jumps into our chains first, then flush, then delete the chains
      { $ipt -t $t -S 2>/dev/null | grep -E '^-A .* -j (KUBE|CNI)-' || true; } | sed 's/^-A/-D/' | while read -r rule; do
        eval "$ipt -t $t $rule" 2>/dev/null || true
      done
      for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/{print $2}'); do $ipt -t $t -F "$ch" 2>/dev/null || true; done
      for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/{print $2}'); do $ipt -t $t -X "$ch" 2>/dev/null || true; done
    done
  done
  # kube-proxy's nftables tables (its iptables mode still cleans them up, and may leave them),
  # then the iptables-nft tables that appeared with the cluster and are empty again
  if command -v nft >/dev/null; then
    local fam tbl
    for fam in ip ip6; do
      if nft list table $fam kube-proxy >/dev/null 2>&1; then nft delete table $fam kube-proxy 2>/dev/null || true; fi
    done
    while read -r fam tbl; do
      nft_table_empty "$fam" "$tbl" && { nft delete table "$fam" "$tbl" 2>/dev/null || true; }
    done < <(new_nft_tables)
  fi
  if command -v conntrack >/dev/null; then
    conntrack -D -d "$SERVICE_CIDR" >/dev/null 2>&1 || true
    conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  fi
  return 0
}

# teardown: stop everything of state dir S and undo its host-wide changes. Bounded, idempotent,
# tolerant of a partial up: every step ignores what is already gone.
teardown() {
  local c pid m l
  [ -d "$S" ] || return 0
  log "tearing down the localcluster in $S"
  # 1. no new pods, then let kubelet stop the pods (CNI DEL, unmounts) through the API
  stop kube-controller-manager kube-scheduler coredns
  if alive kube-apiserver && alive kubelet; then
    kc delete pods --all-namespaces --all --grace-period=1 --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 1 45); do [ -z "$(kc get pods -A --no-headers 2>/dev/null)" ] && break; sleep 1; done
    log "pods deleted $(since)"
  fi
  # kube-proxy's own cleanup first (only if it ran); cleanup_iptables below catches the rest
  local proxy_ran=; [ -f "$S/run/kube-proxy.pid" ] && proxy_ran=1
  stop kube-proxy kubelet
  if [ -n "$proxy_ran" ] && [ -x "$S/bin/kube-proxy" ]; then
    timeout 30 "$S/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
    log "kube-proxy rules cleaned $(since)"
  fi
  # 2. what is left in containerd (partial up, pods that did not stop)
  if alive containerd; then
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  log "containerd tasks removed $(since)"
  stop kube-apiserver   # before etcd: it would wait for etcd in its shutdown
  stop etcd containerd
  # 3. shims of this containerd and anything else of ours that lost its PID file
  for _ in 1 2 3; do
    pid=$(stray_pids)
    [ -z "$pid" ] && break
    log "killing leftover processes of $S: ${pid//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -9 $pid 2>/dev/null || true
    sleep 1
  done
  log "no process left $(since)"
  cleanup_cgroups
  log "cgroups removed $(since)"
  # 4. mounts under the state dir and the pods' network namespaces (deepest first)
  for _ in 1 2 3; do
    m=$(awk '{print $2}' /proc/self/mounts | sed 's/\\040/ /g' | grep -E "^$S/|^/run/netns/cni-" | sort -r) || true
    [ -z "$m" ] && break
    while read -r l; do umount "$l" 2>/dev/null || umount -l "$l" 2>/dev/null || log "umount $l failed"; done <<<"$m"
  done
  rm -f /run/netns/cni-* 2>/dev/null || true
  log "unmounted $(since)"
  # 5. network: veths on the pod bridge, the bridges, iptables chains, nftables, conntrack
  for l in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$l" 2>/dev/null || true; done
  for l in "$POD_BRIDGE" "$NODE_BRIDGE"; do ip link del "$l" 2>/dev/null || true; done
  cleanup_iptables
  log "network cleaned $(since)"
  # 6. sysctls back to what they were before up
  # (once: the record then becomes *.before, which `leftovers` compares against)
  if [ -f "$S/sysctl.orig" ]; then
    while read -r k v; do
      if [ -w "/proc/sys/$k" ]; then echo "$v" >"/proc/sys/$k" 2>/dev/null || log "could not restore $k=$v"; fi
    done <"$S/sysctl.orig"
    mv -f "$S/sysctl.orig" "$S/sysctl.before"
  fi
  # 7. host paths we created, then the runtime part of the state dir
  [ -f "$S/host-preexisting" ] && mv -f "$S/host-preexisting" "$S/host-preexisting.before"
  for l in "${HOST_PATHS[@]}"; do
    [ -e "$l" ] || continue
    if [ -f "$S/host-preexisting.before" ] && grep -qxF "$l" "$S/host-preexisting.before"; then continue; fi
    rm -rf "$l" 2>/dev/null || log "could not remove $l"
  done
  rm -rf "${S:?}/run" "${S:?}/var" "$KUBECONFIG_PATH" 2>/dev/null || log "could not remove $S/run or $S/var (still mounted?)"
  [ "$(cat "$MARKER" 2>/dev/null)" = "$S" ] && rm -f "$MARKER"
  log "down $(since) (logs kept in $S/logs)"
}

# leftovers: list what up created and teardown should have removed; exit 1 if anything is left.
leftovers() {
  local bad=0 c l t ipt m k v cur root
  left() { echo "leftover: $*"; bad=1; }
  for c in "${COMPONENTS[@]}"; do alive "$c" && left "process $c (pid $(pid_of "$c"))"; done
  for c in $(stray_pids); do left "process $c: $(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | cut -c1-120)"; done
  m=$(awk '{print $2}' /proc/self/mounts | grep -E "^$S/|^/run/netns/cni-" || true)
  [ -z "$m" ] || left "mounts: ${m//$'\n'/ }"
  for l in /run/netns/cni-*; do [ -e "$l" ] && left "network namespace $l"; done
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    for t in filter nat mangle raw; do
      c=$($ipt -t $t -S 2>/dev/null | grep -E '^-N (KUBE|CNI)-|-j (KUBE|CNI)-' || true)
      [ -z "$c" ] || left "$ipt -t $t: $(echo "$c" | wc -l) KUBE-/CNI- chains or jumps"
    done
  done
  if command -v nft >/dev/null; then
    for t in ip ip6; do nft list table $t kube-proxy >/dev/null 2>&1 && left "nftables table $t kube-proxy"; done
    while read -r t c; do left "nftables table $t $c (created during the cluster's life)"; done < <(new_nft_tables)
  fi
  for l in "$NODE_BRIDGE" "$POD_BRIDGE"; do ip link show "$l" >/dev/null 2>&1 && left "link $l"; done
  ip route show | grep -qE "^${POD_CIDR%/*}" && left "route to $POD_CIDR"
  for root in $(cgroup_roots); do for c in kubepods k8s.io; do [ -d "$root/$c" ] && left "cgroup $root/$c"; done; done
  for l in "$S/sysctl.orig" "$S/sysctl.before"; do
    [ -f "$l" ] || continue
    while read -r k v; do
      cur=$(cat "/proc/sys/$k" 2>/dev/null || true)
      [ "$cur" = "$v" ] || left "sysctl $k=$cur (was $v before up)"
    done <"$l"
    break
  done
  for l in "${HOST_PATHS[@]}"; do
    [ -e "$l" ] || continue
    if [ -f "$S/host-preexisting.before" ] && grep -qxF "$l" "$S/host-preexisting.before"; then continue; fi
    left "path $l"
  done
  [ -e "$MARKER" ] && left "marker $MARKER ($(cat "$MARKER"))"
  for l in "$S/run" "$S/var" "$KUBECONFIG_PATH"; do [ -e "$l" ] && left "path $l"; done
  [ $bad -eq 0 ] && echo "clean: nothing of the localcluster is left on this host"
  return $bad
}

# teardown_in DIR: teardown of another state dir (the one the host marker names).
teardown_in() {
  local S=$1 KUBECONFIG_PATH=$1/kubeconfig
  teardown
}

# --- up -------------------------------------------------------------------------------------
binaries() {
  local assets b
  assets=$(ENVTEST_K8S_VERSION="$K8S_VERSION" "$REPO/hack/envtest.sh") || die "hack/envtest.sh could not provide etcd/kube-apiserver/kubectl/kube-controller-manager"
  K8S_BUILD_LOG_PREFIX=localcluster k8s_build_binaries "$K8S_VERSION" "$assets" kube-scheduler kubelet kube-proxy \
    || die "building kube-scheduler/kubelet/kube-proxy failed"
  mkdir -p "$S/bin"
  for b in etcd "${K8S_BINARIES[@]}"; do ln -sfn "$assets/$b" "$S/bin/$b"; done
  build_coredns
  ln -sfn "$COREDNS_CACHE/coredns" "$S/bin/coredns"
}

# build_coredns: CoreDNS (the cluster DNS) from its own module, static, cached by version.
build_coredns() {
  [ -x "$COREDNS_CACHE/coredns" ] && return 0
  local work s=$SECONDS
  log "building coredns $COREDNS_VERSION (a few minutes on a cold cache)"
  work=$(mktemp -d)
  if ! (cd "$work" && CGO_ENABLED=0 GOBIN="$work" go install -trimpath -ldflags "-s -w" \
        "github.com/coredns/coredns@$COREDNS_VERSION") >&2; then
    rm -rf "$work"; die "building github.com/coredns/coredns@$COREDNS_VERSION failed"
  fi
  mkdir -p "$COREDNS_CACHE" && mv "$work/coredns" "$COREDNS_CACHE/coredns"
  rm -rf "$work"
  log "built coredns in $((SECONDS - s))s"
}

build_images() {
  log "building the localcluster images into $IMAGES_DIR"
  (cd "$REPO" && go run ./hack/localcluster/images -out "$IMAGES_DIR" -tag "$IMAGE_TAG" -module-dir "$REPO") >&2 \
    || die "building the localcluster images failed"
}

write_kubeconfig() { # NAME CERT
  local f=$S/etc/$1.kubeconfig k="$S/bin/kubectl"
  rm -f "$f"
  $k config set-cluster localcluster --server="$API_URL" --certificate-authority="$S/pki/ca.crt" --embed-certs --kubeconfig="$f" >/dev/null
  $k config set-credentials "$2" --client-certificate="$S/pki/$2.crt" --client-key="$S/pki/$2.key" --embed-certs --kubeconfig="$f" >/dev/null
  $k config set-context localcluster --cluster=localcluster --user="$2" --kubeconfig="$f" >/dev/null
  $k config use-context localcluster --kubeconfig="$f" >/dev/null
  chmod 600 "$f"
}

write_configs() {
  local e=$S/etc
  mkdir -p "$e/cni/net.d"
  write_kubeconfig admin admin
  write_kubeconfig kube-controller-manager kube-controller-manager
  write_kubeconfig kube-scheduler kube-scheduler
  write_kubeconfig kubelet kubelet
  write_kubeconfig kube-proxy kube-proxy
  write_kubeconfig coredns coredns

  # CoreDNS on the node IP; kube-system/kube-dns (DNS_SERVICE_IP) points at it. Names outside
  # the cluster go to the host's resolvers.
  cat >"$e/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready $NODE_IP:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $e/coredns.kubeconfig localcluster
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
    loadbalance
}
EOF

  cat >"$e/cluster-dns.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_SERVICE_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
# CoreDNS runs on the host, not in a pod: the Service has no selector and this slice names
# the node IP.
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: localcluster}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF

  cat >"$e/containerd.toml" <<EOF
version = 2
root = "$S/var/containerd"
state = "$S/run/containerd"
[grpc]
  address = "$S/run/containerd.sock"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # no CAP_SYS_RESOURCE here: never lower a process's oom_score_adj below the parent's
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$e/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$S/run/runc"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$S/var/containerd-opt"
EOF

  cat >"$e/cni/net.d/10-localcluster.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "localcluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$S/var/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  cat >"$e/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
# cgroup v1 hosts: kubelet refuses v1 unless told otherwise; no systemd here
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$S/run/containerd.sock
imageServiceEndpoint: unix://$S/run/containerd.sock
podLogsDir: $S/var/log/pods
tlsCertFile: $S/pki/kubelet-serving.crt
tlsPrivateKeyFile: $S/pki/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $S/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: ["$DNS_SERVICE_IP"]
resolvConf: ""
enforceNodeAllocatable: ["pods"]
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF

  cat >"$e/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $e/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
# leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["$NODE_IP/32"]
EOF
}

import_images() { # FILE...
  local f
  for f in "$@"; do
    timeout 300 ctr -a "$S/run/containerd.sock" -n k8s.io images import "$f" >/dev/null || die "importing $f into containerd failed"
    log "imported $f"
  done
}

# image_tarballs: every *.tar of IMAGES_DIR, IMAGE_DIRS and --image-dir, once each.
image_tarballs() {
  local d f
  local -A seen=()
  local IFS=:
  for d in $IMAGES_DIR $IMAGE_DIRS ${EXTRA_IMAGE_DIRS:-}; do
    [ -n "$d" ] || continue
    [ -d "$d" ] || { log "no image directory $d (skipped; \`make images\` writes dist/images)"; continue; }
    for f in "$d"/*.tar; do
      [ -f "$f" ] || continue
      f=$(realpath "$f")
      [ -n "${seen[$f]:-}" ] && continue
      seen[$f]=1; echo "$f"
    done
  done
}

# EXIT trap of up: unless up finished, tear down what it started (a failure, die, SIGINT or
# SIGTERM all end here). The teardown itself is not interruptible; it is bounded.
UP_DONE=
on_up_exit() {
  local rc=$?
  [ -n "$UP_DONE" ] && return 0
  trap '' INT TERM
  # a signal trap may run inside a redirected function call (waitfor's `kc ... >/dev/null`):
  # back to the caller's stdout and stderr, saved by up
  exec 1>&7 2>&8
  log "up failed or was interrupted (rc=$rc): tearing down"
  teardown || true
  log "logs of this attempt are in $S/logs"
  exit 1
}

up() {
  EXTRA_IMAGE_DIRS=
  while [ $# -gt 0 ]; do
    case "$1" in
      --image-dir) [ $# -ge 2 ] || die "--image-dir needs a directory"; EXTRA_IMAGE_DIRS="${EXTRA_IMAGE_DIRS:+$EXTRA_IMAGE_DIRS:}$2"; shift 2 ;;
      *) die "unknown argument to up: $1 (usage: up [--image-dir DIR]...)" ;;
    esac
  done
  preflight
  mkdir -p "$S"
  exec 9>"$LOCK"
  flock -n 9 || die "another 'cluster.sh up' or 'down' is running (lock $LOCK)"

  local prev c d
  prev=$(cat "$MARKER" 2>/dev/null || true)
  for d in "$S" $prev; do
    for c in "${COMPONENTS[@]}"; do
      if alive "$c" "$d"; then die "a localcluster is already running (state $d, $c is up): use it, or run 'cluster.sh down' first"; fi
    done
  done
  if [ -n "$prev" ] || [ -d "$S/run" ] || ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    log "cleaning up after a previous run that did not finish"
    if [ -n "$prev" ] && [ "$prev" != "$S" ] && [ -d "$prev" ]; then
      teardown_in "$prev"
    fi
    teardown
  fi

  # Logs of the previous run move to logs-last; this run's stay in logs/ even after down.
  if [ -d "$S/logs" ]; then rm -rf "$S/logs-last"; mv "$S/logs" "$S/logs-last"; fi
  mkdir -p "$S/logs" "$S/run" "$S/var/etcd" "$S/var/kubelet" "$S/var/log/pods" "$S/etc"
  exec 7>&1 8>&2
  trap on_up_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # What exists before we touch the host, so down removes only what up added.
  : >"$S/host-preexisting"
  for c in "${HOST_PATHS[@]}"; do [ -e "$c" ] && echo "$c" >>"$S/host-preexisting"; done
  if command -v nft >/dev/null; then
    nft list tables 2>/dev/null | awk '{print $2, $3}' >"$S/nft-tables.before" || true
    # an empty file would make grep -f match everything: keep a line that matches no table
    [ -s "$S/nft-tables.before" ] || echo "none none" >"$S/nft-tables.before"
  fi
  [ -f "$S/sysctl.orig" ] || for c in "${SYSCTLS[@]}"; do
    [ -r "/proc/sys/$c" ] && echo "$c $(cat "/proc/sys/$c")" >>"$S/sysctl.orig"
  done
  echo "$S" >"$MARKER"

  log "preparing prerequisites, binaries and images $(since)"
  "$HERE/prereqs.sh"
  preflight_tools
  binaries
  local f
  # (re)build the own images when one is missing or older than its sources
  for f in pause probe everything-server; do
    if [ ! -f "$IMAGES_DIR/$f.tar" ] || [ -n "$(find "$HERE/pause" "$HERE/probe" "$HERE/images" "$REPO/hack/images/imagebuild" \
         -name '*.go' -newer "$IMAGES_DIR/$f.tar" 2>/dev/null | head -1)" ]; then
      build_images; break
    fi
  done
  rm -rf "$S/pki"
  pki_generate "$S/pki" "$NODE_NAME" "$NODE_IP" "$API_SERVICE_IP"
  write_configs
  log "binaries, images, PKI and configs ready $(since)"

  # node IP: a port-less bridge holding a /32 (no dummy driver on these kernels; loopback
  # addresses are refused as node IPs)
  ip link add "$NODE_BRIDGE" type bridge
  ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  echo 1 >/proc/sys/net/ipv4/ip_forward
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables

  start containerd containerd --config "$S/etc/containerd.toml"
  waitfor containerd 30 containerd ctr -a "$S/run/containerd.sock" version
  local tars
  mapfile -t tars < <(image_tarballs)
  import_images "${tars[@]}"

  start etcd "$S/bin/etcd" --name localcluster --data-dir "$S/var/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "localcluster=http://$ETCD_PEER" --listen-metrics-urls= --log-level=warn
  local P=$S/pki
  start kube-apiserver "$S/bin/kube-apiserver" --etcd-servers="http://$ETCD_CLIENT" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction --allow-privileged=true --profiling=false \
    --requestheader-client-ca-file="$P/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key"
  waitfor kube-apiserver 90 etcd,kube-apiserver kc get --raw /readyz
  kc apply --server-side --field-manager=localcluster -f "$S/etc/cluster-dns.yaml" >/dev/null
  start coredns "$S/bin/coredns" -conf "$S/etc/Corefile"
  start kube-controller-manager "$S/bin/kube-controller-manager" --kubeconfig="$S/etc/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$S/etc/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$S/etc/kube-controller-manager.kubeconfig" \
    --bind-address="$NODE_IP" --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --use-service-account-credentials=true --leader-elect=false \
    --controllers='*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' --profiling=false
  start kube-scheduler "$S/bin/kube-scheduler" --kubeconfig="$S/etc/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$S/etc/kube-scheduler.kubeconfig" --authorization-kubeconfig="$S/etc/kube-scheduler.kubeconfig" \
    --bind-address="$NODE_IP" --leader-elect=false --profiling=false
  start kubelet "$S/bin/kubelet" --config="$S/etc/kubelet.yaml" --kubeconfig="$S/etc/kubelet.kubeconfig" \
    --root-dir="$S/var/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
  start kube-proxy "$S/bin/kube-proxy" --config="$S/etc/kube-proxy.yaml"

  waitfor "node $NODE_NAME Ready" 120 containerd,kube-apiserver,kubelet kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  waitfor "ServiceAccount default/default" 60 kube-apiserver,kube-controller-manager kc get serviceaccount default
  waitfor "ConfigMap default/kube-root-ca.crt" 60 kube-controller-manager kc get configmap kube-root-ca.crt
  waitfor "Service default/kubernetes" 30 kube-apiserver kc get service kubernetes
  waitfor "cluster DNS ($DNS_SERVICE_IP -> coredns on $NODE_IP)" 60 coredns,kube-proxy curl -fsS --max-time 2 "http://$NODE_IP:8181/ready"
  for c in "${COMPONENTS[@]}"; do alive "$c" || die "$c exited during up (see $S/logs/$c.log)"; done

  install -m 600 "$S/etc/admin.kubeconfig" "$KUBECONFIG_PATH"
  UP_DONE=1
  log "up in $((SECONDS - T0))s: node $NODE_NAME ($NODE_IP) Ready, API $API_URL, kubeconfig $KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
}

down() {
  [ "$(id -u)" -eq 0 ] || die "down needs root"
  exec 9>"$LOCK"
  flock -w 120 9 || die "another 'cluster.sh up' or 'down' still holds $LOCK after 120s"
  local prev
  prev=$(cat "$MARKER" 2>/dev/null || true)
  if [ -n "$prev" ] && [ "$prev" != "$S" ] && [ -d "$prev" ]; then
    log "the host-wide pieces belong to $prev: tearing that one down too"
    teardown_in "$prev"
  fi
  teardown
}

status() {
  local ok=0 c node
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"; else printf '%-24s not running\n' "$c"; ok=1; fi
  done
  node=
  if [ -f "$S/etc/admin.kubeconfig" ]; then
    node=$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  fi
  if [ "$node" = True ]; then printf '%-24s Ready\n' "node/$NODE_NAME"; else printf '%-24s not Ready\n' "node/$NODE_NAME"; ok=1; fi
  printf '%-24s %s\n' apiserver "$API_URL"
  if [ $ok -eq 0 ] && [ -f "$KUBECONFIG_PATH" ]; then printf '%-24s %s\n' kubeconfig "$KUBECONFIG_PATH"; else
    printf '%-24s %s (absent)\n' kubeconfig "$KUBECONFIG_PATH"; ok=1; fi
  return $ok
}

import_cmd() {
  [ $# -gt 0 ] || die "usage: import IMAGE.tar..."
  alive containerd || die "the localcluster's containerd is not running (cluster.sh up first)"
  local f; for f in "$@"; do [ -f "$f" ] || die "no such image tarball: $f"; done
  import_images "$@"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  leftovers) leftovers ;;
  import) shift; import_cmd "$@" ;;
  images) build_images; ls "$IMAGES_DIR"/*.tar ;;
  kubeconfig) [ -f "$KUBECONFIG_PATH" ] || die "no kubeconfig at $KUBECONFIG_PATH: the localcluster is not up"; echo "$KUBECONFIG_PATH" ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
