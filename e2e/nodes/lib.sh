# Settings of the real nodes; sourced first by up.sh, down.sh and import.sh. Sources
# e2e/controlplane/lib.sh and cluster.sh (which give STATE, APISERVER_PORT, bin_dir) and sets
# `here` to that directory, as those expect.
#
# The wiring (docs/controlplane.md, "Real nodes"):
#   root namespace   spfab0 10.124.0.1/24 ── veth ──┐   forward.py 10.124.0.1:<api port> → the
#                    routes 10.245.<i>.0/24 via      │   API server on 127.0.0.1
#                    10.124.0.<10+i> (pods only)     │
#   sp-fabric        br0 (a bridge; no address) ─────┤── veth ── sp-node-<i>: eth0 10.124.0.<10+i>/24
#                                                     │            cni0 10.245.<i>.1/24 (pods' bridge)
#                                                     └── ...      containerd, kubelet, kube-proxy
# The nodes' default route leads to spfab0; the root namespace does not forward (ip_forward stays
# as it is): nodes and pods reach only each other and the API server's forwarder.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../controlplane" && pwd)"
source "$here/lib.sh"
source "$here/cluster.sh"

REAL_NODE_PREFIX=sp-node-
FABRIC_NETNS=sp-fabric
FABRIC_ROOT_IF=spfab0
FABRIC_GATEWAY=10.124.0.1
FABRIC_PREFIX_LEN=24
# Pod addresses of the real nodes: one /24 per node, apart from kwok's 10.244.0.0/16 so that a
# 20,000-pod benchmark never hands out a real node's address.
REAL_POD_CIDR=10.245.0.0/16
# The ClusterIP kubelets give pods as their DNS server: the chart's `signpost dns` Service.
CLUSTER_DNS_IP=10.96.0.10
# Pods of other tests must never land on a real node (their images do not exist there).
REAL_NODE_TAINT=signpost.dev/real-node
REAL_NODE_LABEL=signpost.dev/real-node
NODES_STATE="$STATE/nodes"
# Unix sockets live under /run: a socket path has at most 107 bytes, a checkout path has none.
NODES_RUN=/run/signpost-nodes
PAUSE_IMAGE=signpost.local/pause:3.10

node_name() { echo "$REAL_NODE_PREFIX$1"; }        # index -> node (and netns) name
node_ip() { echo "10.124.0.$((10 + $1))"; }
node_pod_cidr() { echo "10.245.$1.0/24"; }
node_dir() { echo "$NODES_STATE/$(node_name "$1")"; }
node_run() { echo "$NODES_RUN/$(node_name "$1")"; }
node_socket() { echo "$(node_run "$1")/containerd.sock"; }
# Every pod of a node lives under this cgroup (kubelet's cgroupRoot), in each hierarchy.
node_cgroup() { echo "signpost-$(node_name "$1")"; }

# The indexes of the nodes whose namespace exists, in order.
existing_nodes() {
  ip netns list 2>/dev/null | awk '{print $1}' | sed -n "s/^$REAL_NODE_PREFIX\([0-9]\+\)$/\1/p" | sort -n
}

# The cgroup hierarchies the node's cgroup is made in (cgroup v1: one per controller, and the
# named systemd hierarchy; on a cgroup v2 host, the one unified tree).
cgroup_hierarchies() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    echo /sys/fs/cgroup
    return
  fi
  local d
  for d in /sys/fs/cgroup/*/; do
    d="${d%/}"
    [[ -L "$d" ]] && continue
    echo "$d"
  done
}

# Runs a command inside a node's network namespace only. `ip netns exec` would also give it a
# fresh /sys, which hides the cgroup mounts kubelet and runc need.
in_node() { # index command...
  local i="$1"; shift
  nsenter --net="/run/netns/$(node_name "$i")" "$@"
}

ctr_node() { # index ctr-args...
  local i="$1"; shift
  ctr --address "$(node_socket "$i")" --namespace k8s.io "$@"
}
