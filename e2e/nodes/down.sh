#!/usr/bin/env bash
# Stops every real node up.sh started and removes all it made: the pods' processes (by the
# node's cgroup), kubelet, kube-proxy, containerd and its shims, the mounts under the nodes'
# directories, the pods' network namespaces, the cgroups, the nodes' and the fabric's
# namespaces, the root namespace's veth and routes, and the Node objects. Safe to run twice,
# and when nothing was started.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || exit 0   # nothing of this kind can exist without root
# The namespaces, cgroups and the fabric have fixed names on the machine: a control plane that
# never had real nodes (no nodes directory in its state) must not take down another one's,
# as every `cluster-down` and `e2e/with-cluster.sh` run would.
[[ -d "$NODES_STATE" ]] || exit 0

stop_pid() { # component
  local c="$1" pid
  pid="$(pid_of "$c")"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    echo "==> stopped $c (pid $pid)"
  fi
  rm -f "$STATE/pids/$c.pid"
}

# Every process in a node's cgroup (its pods' containers), SIGKILL: a container's PID 1 may
# ignore SIGTERM, and the pods are gone with the node anyway.
kill_cgroup() { # cgroup-name
  local h pids
  for _ in $(seq 20); do
    pids=""
    while read -r h; do
      [[ -d "$h/$1" ]] || continue
      pids+=" $(find "$h/$1" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
    done < <(cgroup_hierarchies)
    [[ -n "${pids// /}" ]] || return 0
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
}

remove_cgroup() { # cgroup-name
  local h
  while read -r h; do
    [[ -d "$h/$1" ]] || continue
    find "$h/$1" -depth -type d -exec rmdir {} \; 2>/dev/null
  done < <(cgroup_hierarchies)
}

# Mount points under a directory, deepest first.
mounts_under() { # dir
  awk -v d="$1/" 'index($5 "/", d) == 1 {print $5}' /proc/self/mountinfo | sort -r
}

# The nodes whose namespace or directory exists (an interrupted up.sh may leave either).
indexes="$({ existing_nodes; ls "$NODES_STATE" 2>/dev/null | sed -n "s/^$REAL_NODE_PREFIX//p"; } | sort -un)"
for i in $indexes; do
  name="$(node_name "$i")"
  stop_pid "$name-kube-proxy"
  stop_pid "$name-kubelet"
  kill_cgroup "$(node_cgroup "$i")"
  # The shims (and any process left in the node's namespace) go with containerd.
  ip netns pids "$name" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  stop_pid "$name-containerd"
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $(node_socket "$i")" 2>/dev/null
  for dir in "$(node_dir "$i")" "$(node_run "$i")"; do
    for m in $(mounts_under "$dir"); do umount -l "$m" 2>/dev/null; done
  done
  remove_cgroup "$(node_cgroup "$i")"
  ip route del "$(node_pod_cidr "$i")" 2>/dev/null
  ip netns del "$name" 2>/dev/null
  rm -rf "$(node_dir "$i")" "$(node_run "$i")"
done
# The pods' network namespaces (containerd names them cni-<uuid>) whose processes are gone.
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
  [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && ip netns del "$ns" 2>/dev/null
done
for m in $(mounts_under /run/netns); do
  [[ "$m" == /run/netns/cni-* && ! -e "$m" ]] && umount -l "$m" 2>/dev/null
done
stop_pid api-forward
ip link del "$FABRIC_ROOT_IF" 2>/dev/null
ip netns del "$FABRIC_NETNS" 2>/dev/null
rmdir "$NODES_RUN" 2>/dev/null
if cluster_healthy; then
  "$(bin_dir k8s)/kubectl" --kubeconfig "$STATE/admin.kubeconfig" delete nodes \
    -l "$REAL_NODE_LABEL=true" --ignore-not-found --wait=false >/dev/null 2>&1
fi
exit 0
