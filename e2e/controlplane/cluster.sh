# Settings and process helpers of the local control plane; sourced by up.sh and down.sh.

repo="$(cd "$here/../.." && pwd)"
STATE="${SIGNPOST_STATE:-$repo/.state/controlplane}"
KUBECONFIG_OUT="${SIGNPOST_KUBECONFIG:-$repo/.kube/config}"
APISERVER_PORT="${SIGNPOST_APISERVER_PORT:-16443}"
ETCD_PORT="${SIGNPOST_ETCD_PORT:-12379}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
ETCD_METRICS_PORT=$((ETCD_PORT + 2))
KCM_PORT=$((APISERVER_PORT + 1))
SCHEDULER_PORT=$((APISERVER_PORT + 2))
KWOK_PORT=$((APISERVER_PORT + 3))
# The API server's own Service ranges (dual-stack, so Services may ask for IPv6 or both);
# Signpost's defaults (10.200.0.0/16, fd00:10:200::/64) are deliberately different.
APISERVER_SERVICE_CIDR=10.96.0.0/16,fd00:10:96::/108
POD_CIDR=10.244.0.0/16
# Each kwok node's own part of it (kwok keeps one address pool per node range, and one shared
# pool has handed two pods the same address): 16,382 pods a node.
KWOK_NODE_POD_CIDRS=(10.244.0.0/18 10.244.64.0/18 10.244.128.0/18)
ZONES=(a b c)
KCM_WITHOUT_ENDPOINTS='*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller'
# Stop order: dependents first, etcd last (stopping all at once leaves the API server hanging).
COMPONENTS_STOP_ORDER=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

# etcd's data: under the state directory (the machine's disk), or with SIGNPOST_ETCD_TMPFS=1 in
# memory (/dev/shm), linked from there. The benchmarks use memory: on a shared VM the disk's
# fsync latency moves from minute to minute and belongs to neither controller being compared.
ETCD_TMPFS_DIR="/dev/shm/signpost-etcd-$ETCD_PORT"

# Where the running (or last) control plane keeps etcd's data: "tmpfs" or "disk".
etcd_storage() { [[ -L "$STATE/etcd" ]] && echo tmpfs || echo disk; }

# Removes the state directory, and etcd's data in memory if it was kept there.
remove_state() {
  if [[ -L "$STATE/etcd" ]]; then rm -rf "$(readlink "$STATE/etcd")"; fi
  rm -rf "$STATE"
}

# Creates etcd's data directory where SIGNPOST_ETCD_TMPFS says (the state directory exists).
make_etcd_dir() {
  if [[ "${SIGNPOST_ETCD_TMPFS:-0}" == 1 ]]; then
    [[ -d /dev/shm && -w /dev/shm ]] || { echo "SIGNPOST_ETCD_TMPFS=1: /dev/shm is not a writable directory" >&2; exit 1; }
    rm -rf "$ETCD_TMPFS_DIR"
    mkdir -m 700 "$ETCD_TMPFS_DIR"
    ln -s "$ETCD_TMPFS_DIR" "$STATE/etcd"
  else
    mkdir -m 700 "$STATE/etcd"
  fi
}

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }

alive() { # component
  local pid; pid="$(pid_of "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

any_running() {
  local c
  for c in "${COMPONENTS_STOP_ORDER[@]}"; do alive "$c" && return 0; done
  return 1
}

cluster_healthy() {
  local c
  for c in "${COMPONENTS_STOP_ORDER[@]}"; do alive "$c" || return 1; done
  curl -fsS --max-time 5 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" \
    --key "$STATE/pki/admin.key" "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1 \
    && [[ -f "$KUBECONFIG_OUT" ]]
}

start_component() { # name binary args...
  local name="$1"; shift
  echo "==> starting $name"
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/pids/$name.pid"
}

# Waits until a command succeeds; on timeout or if the component died, prints its log tail.
wait_for() { # what timeout-seconds command...
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout)) start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    local comp="${what%% *}"
    if [[ -f "$STATE/pids/$comp.pid" ]] && ! alive "$comp"; then
      echo "!! $comp exited; last lines of $STATE/logs/$comp.log:" >&2
      tail -n 30 "$STATE/logs/$comp.log" >&2
      exit 1
    fi
    if (( SECONDS >= deadline )); then
      echo "!! $what not healthy after ${timeout}s" >&2
      [[ -f "$STATE/logs/$comp.log" ]] && { echo "last lines of $STATE/logs/$comp.log:" >&2; tail -n 30 "$STATE/logs/$comp.log" >&2; }
      exit 1
    fi
    sleep 0.2
  done
  echo "    $what healthy after $((SECONDS - start)) s"
}

write_admin_kubeconfig() { # path
  cat > "$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: signpost-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: signpost-admin
  user:
    client-certificate: $STATE/pki/admin.crt
    client-key: $STATE/pki/admin.key
contexts:
- name: signpost-local
  context:
    cluster: signpost-local
    user: signpost-admin
current-context: signpost-local
KCFG
}

print_export() {
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
  echo "export PATH=$(bin_dir k8s):\$PATH   # kubectl $(module_version k8s k8s.io/kubernetes)"
}
