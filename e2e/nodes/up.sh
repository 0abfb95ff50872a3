#!/usr/bin/env bash
# Starts N real nodes beside the local control plane's kwok nodes: each one a network namespace
# with containerd (CNI bridge), a kubelet and kube-proxy built from the control plane's
# Kubernetes release, registered with the same API server. Needs root and a running control
# plane (e2e/controlplane/up.sh calls this when SIGNPOST_REAL_NODES is set).
# Usage: up.sh <count>   (1-9). Undo with down.sh (cluster-down does).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

count="${1:-}"
[[ "$count" =~ ^[1-9]$ ]] || { echo "nodes/up.sh: the node count must be 1 to 9, got '${count}'" >&2; exit 2; }
[[ "$(id -u)" == 0 ]] || { echo "nodes/up.sh: real nodes need root (network namespaces, cgroups, mounts)" >&2; exit 1; }
for tool in containerd containerd-shim-runc-v2 runc ctr nsenter nft; do
  command -v "$tool" >/dev/null || { echo "nodes/up.sh: '$tool' is missing; run 'just setup'" >&2; exit 1; }
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] \
  || { echo "nodes/up.sh: the CNI plugins are missing in /usr/lib/cni; run 'just setup'" >&2; exit 1; }
cluster_healthy || { echo "nodes/up.sh: the control plane is not running; start it with 'just cluster-up'" >&2; exit 1; }

"$here/build.sh" node
K8S_BIN="$(bin_dir k8s)"
kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
pki="$STATE/pki"
mkdir -p "$NODES_STATE" "$NODES_RUN"

# --- the fabric: one bridge the nodes and the root namespace's veth hang off ---
if ! ip netns list | grep -qw "$FABRIC_NETNS"; then
  ip netns add "$FABRIC_NETNS"
  ip -n "$FABRIC_NETNS" link set lo up
  ip -n "$FABRIC_NETNS" link add br0 type bridge
  ip -n "$FABRIC_NETNS" link set br0 up
  ip link add "$FABRIC_ROOT_IF" type veth peer name up0 netns "$FABRIC_NETNS"
  ip -n "$FABRIC_NETNS" link set up0 master br0 up
  ip addr add "$FABRIC_GATEWAY/$FABRIC_PREFIX_LEN" dev "$FABRIC_ROOT_IF"
  ip link set "$FABRIC_ROOT_IF" up
fi
# The API server listens on loopback; the nodes (and pods, through the `kubernetes` Service)
# reach it through this forwarder on the root side of the fabric.
if ! alive api-forward; then
  start_component api-forward python3 "$repo/e2e/netns/forward.py" \
    "$FABRIC_GATEWAY:$APISERVER_PORT" "127.0.0.1:$APISERVER_PORT"
fi

# A client certificate signed by the cluster's CA, and a kubeconfig that reaches the API
# server through the forwarder (its serving certificate names localhost, not 10.124.0.1).
node_kubeconfig() { # dir name subject
  local dir="$1" name="$2" subject="$3"
  openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$dir/$name.key" \
    -out "$dir/$name.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > "$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  cat > "$dir/$name.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: signpost-local
  cluster:
    server: https://$FABRIC_GATEWAY:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
    tls-server-name: localhost
users:
- name: $name
  user:
    client-certificate: $dir/$name.crt
    client-key: $dir/$name.key
contexts:
- name: default
  context: {cluster: signpost-local, user: $name}
current-context: default
KCFG
}

start_node() { # index
  local i="$1" name ip dir run cg h
  name="$(node_name "$i")" ip="$(node_ip "$i")" dir="$(node_dir "$i")" run="$(node_run "$i")"
  cg="$(node_cgroup "$i")"
  if alive "$name-kubelet"; then
    echo "==> $name already running"
    return
  fi
  echo "==> starting real node $name ($ip, pods $(node_pod_cidr "$i"))"
  rm -rf "$dir" "$run"
  mkdir -p "$dir"/{cni,cni-ipam,kubelet,pod-logs,containerd} "$run"

  # Network: a namespace on the fabric, forwarding for its pods (routes to the other nodes'
  # pods below). No default route: nothing outside the project's namespaces is reachable.
  ip netns add "$name"
  ip -n "$name" link set lo up
  ip link add "n$i" netns "$FABRIC_NETNS" type veth peer name eth0 netns "$name"
  ip -n "$FABRIC_NETNS" link set "n$i" master br0 up
  ip -n "$name" addr add "$ip/$FABRIC_PREFIX_LEN" dev eth0
  ip -n "$name" link set eth0 up
  in_node "$i" sysctl -qw net.ipv4.ip_forward=1
  # kube-proxy's DNAT must also see traffic between two pods of the node's bridge.
  in_node "$i" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  ip route replace "$(node_pod_cidr "$i")" via "$ip" dev "$FABRIC_ROOT_IF"

  # cgroups: every pod of the node under one parent, so stopping it finds every process.
  while read -r h; do
    mkdir -p "$h/$cg"
    if [[ -f "$h/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" > "$h/$cg/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h/$cg/cpuset.mems"
    fi
  done < <(cgroup_hierarchies)

  # CNI: a bridge per node, host-local addresses from the node's /24.
  cat > "$dir/cni/10-signpost.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "signpost-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni-ipam",
        "ranges": [[{"subnet": "$(node_pod_cidr "$i")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON

  # containerd: its own root, state and socket; the pause image built here; oom_score_adj
  # clamped (root here lacks CAP_SYS_RESOURCE, see ../shared/notes/real-nodes.md).
  cat > "$dir/containerd.toml" <<TOML
version = 2
root = "$dir/containerd"
state = "$run/state"
[grpc]
  address = "$(node_socket "$i")"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
TOML
  start_component "$name-containerd" nsenter --net="/run/netns/$name" \
    containerd --config "$dir/containerd.toml"
  wait_for "$name-containerd" 30 ctr --address "$(node_socket "$i")" version
  import_images "$i"

  # kubelet: a client certificate the Node authorizer accepts (system:node:<name>).
  node_kubeconfig "$dir" kubelet "/O=system:nodes/CN=system:node:$name"
  : > "$dir/resolv.conf"
  cat > "$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Our machines run cgroup v1, which kubelet 1.35+ refuses unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cg
containerRuntimeEndpoint: unix://$(node_socket "$i")
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: cluster.local
# Pods inherit no search domains or servers from this machine.
resolvConf: $dir/resolv.conf
podLogsDir: $dir/pod-logs
registerWithTaints:
  - {key: $REAL_NODE_TAINT, value: "true", effect: NoSchedule}
# The machine's disk is shared with everything else: no evictions for it, and no image garbage
# collection (the images cannot be pulled again).
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
failSwapOn: false
maxPods: 40
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
YAML
  start_component "$name-kubelet" nsenter --net="/run/netns/$name" \
    "$K8S_BIN/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
    --hostname-override "$name" --node-ip "$ip" \
    --node-labels "$REAL_NODE_LABEL=true,topology.kubernetes.io/zone=zone-real-$i"

  # kube-proxy: the user the API server's default RBAC binds to system:node-proxier.
  node_kubeconfig "$dir" kube-proxy "/CN=system:kube-proxy"
  cat > "$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $name
mode: nftables
clusterCIDR: $REAL_POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the machine-wide conntrack settings alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
  start_component "$name-kube-proxy" nsenter --net="/run/netns/$name" \
    "$K8S_BIN/kube-proxy" --config "$dir/kube-proxy.yaml"
}

# Loads every image built under target/images into a node's containerd (the pause image is
# built first when missing: no pod starts without it).
import_images() { # index
  local i="$1" tar
  [[ -f "$repo/target/images/pause.tar" ]] || "$repo/e2e/images/build.sh" pause >/dev/null
  for tar in "$repo"/target/images/*.tar; do
    ctr_node "$i" images import "$tar" >/dev/null
  done
}

for i in $(seq 1 "$count"); do start_node "$i"; done

# Routes between the nodes: each node's pods through that node's address on the fabric; every
# other address toward the root side, as a real node's default route. Service addresses need it:
# a hostNetwork process's connection to a ClusterIP must find a route before kube-proxy's DNAT
# rewrites it, and a connection to a Service with no endpoints must be routed (into the forward
# hook, where kube-proxy refuses it) rather than fail as "network is unreachable". The root
# namespace does not forward on our machines (lib.sh), so nothing leaves the machine this way.
for i in $(existing_nodes); do
  ip -n "$(node_name "$i")" route replace default via "$FABRIC_GATEWAY"
  for j in $(existing_nodes); do
    [[ "$i" == "$j" ]] && continue
    ip -n "$(node_name "$i")" route replace "$(node_pod_cidr "$j")" via "$(node_ip "$j")"
  done
done

# The `kubernetes` Service's endpoints lead to the forwarder (the API server runs with
# --endpoint-reconciler-type=none and advertises only loopback). Mirroring is skipped: this
# slice is written here directly, as the API server's own reconciler would.
kubectl_admin apply --server-side --force-conflicts -f - >/dev/null <<YAML
apiVersion: v1
kind: Endpoints
metadata:
  name: kubernetes
  namespace: default
  labels: {endpointslice.kubernetes.io/skip-mirror: "true"}
subsets:
  - addresses: [{ip: $FABRIC_GATEWAY}]
    ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: local-control-plane.signpost.dev
addressType: IPv4
endpoints:
  - addresses: [$FABRIC_GATEWAY]
    conditions: {ready: true}
ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
YAML

ready_real_nodes() {
  [[ "$(kubectl_admin get nodes -l "$REAL_NODE_LABEL=true" --no-headers 2>/dev/null | grep -cw Ready)" -ge "$count" ]]
}
wait_for "$(node_name 1)-kubelet ($count real nodes Ready)" 120 ready_real_nodes
kubectl_admin get nodes -l "$REAL_NODE_LABEL=true" -o wide
