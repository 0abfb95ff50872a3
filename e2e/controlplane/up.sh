#!/usr/bin/env bash
# Starts the local control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok with three fake nodes, all on 127.0.0.1. Builds the binaries first
# (cached). Safe to run twice: a healthy running control plane is left as it is.
#
# Environment:
#   SIGNPOST_STATE        state directory (default <repo>/.state/controlplane)
#   SIGNPOST_KUBECONFIG   admin kubeconfig to write (default <repo>/.kube/config)
#   SIGNPOST_KCM_ENDPOINTS=1  run kube-controller-manager WITH its endpoint controllers (the
#                         benchmark peer) instead of without them
#   SIGNPOST_ETCD_TMPFS=1 keep etcd's data in memory (/dev/shm) instead of on disk
#   SIGNPOST_APISERVER_PORT, SIGNPOST_ETCD_PORT  ports (default 16443, 12379)
#   SIGNPOST_REAL_NODES=N also start N real nodes (kubelet, containerd, kube-proxy, each in a
#                         network namespace; needs root): e2e/nodes/up.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"
source "$here/cluster.sh"

real_nodes="${SIGNPOST_REAL_NODES:-0}"
if cluster_healthy; then
  echo "control plane already running (state in $STATE)"
  if [[ "$real_nodes" != 0 ]]; then "$repo/e2e/nodes/up.sh" "$real_nodes"; fi
  print_export
  exit 0
fi
if any_running; then
  echo "control plane partly running: stopping it first"
  "$here/down.sh"
fi

"$here/build.sh" etcd k8s kwok
K8S_BIN="$(bin_dir k8s)"
ETCD_BIN="$(bin_dir etcd)"
KWOK_BIN="$(bin_dir kwok)"

remove_state
mkdir -p "$STATE"/{pki,pids,logs} "$(dirname "$KUBECONFIG_OUT")"
make_etcd_dir
start_all=$SECONDS

# --- certificates: one CA signs the serving certificate and the admin client certificate ---
pki="$STATE/pki"
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=signpost-local-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
    -out apiserver.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' > apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=signpost-admin" \
    -keyout admin.key -out admin.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > admin.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile admin.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

write_admin_kubeconfig "$STATE/admin.kubeconfig"

# --- etcd ---
start_component etcd "$ETCD_BIN/etcd" \
  --name signpost --data-dir "$(readlink -f "$STATE/etcd")" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "signpost=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls "http://127.0.0.1:$ETCD_METRICS_PORT" --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_METRICS_PORT/health"

# --- kube-apiserver ---
start_component kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
  --endpoint-reconciler-type none \
  --service-cluster-ip-range "$APISERVER_SERVICE_CIDR" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins OwnerReferencesPermissionEnforcement \
  --client-ca-file "$pki/ca.crt" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --allow-privileged=true --profiling=false \
  --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
  --kubelet-preferred-address-types InternalIP \
  --enable-aggregator-routing=true \
  --cert-dir "$STATE/apiserver-certs"
wait_for kube-apiserver 60 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
  "https://127.0.0.1:$APISERVER_PORT/readyz"

# --- kube-controller-manager (Signpost replaces its three endpoint controllers) ---
if [[ "${SIGNPOST_KCM_ENDPOINTS:-0}" == 1 ]]; then
  kcm_controllers='*'
else
  kcm_controllers="$KCM_WITHOUT_ENDPOINTS"
fi
start_component kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$STATE/admin.kubeconfig" \
  --controllers "$kcm_controllers" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
  --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --use-service-account-credentials=false \
  --kube-api-qps 300 --kube-api-burst 500 \
  --service-cluster-ip-range "$APISERVER_SERVICE_CIDR"
wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"

# --- kube-scheduler ---
start_component kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$STATE/admin.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false \
  --kube-api-qps 300 --kube-api-burst 500
wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHEDULER_PORT/healthz"

# --- kwok: fake nodes whose pods become Running and Ready with pod IPs ---
kwok_dir="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
: > "$STATE/kwok-stages.yaml"
for stage in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  { echo "---"; cat "$kwok_dir/kustomize/stage/$stage"; } >> "$STATE/kwok-stages.yaml"
done
start_component kwok "$KWOK_BIN/kwok" \
  --kubeconfig "$STATE/admin.kubeconfig" \
  --config "$STATE/kwok-stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --cidr "$POD_CIDR" --node-ip 127.0.0.1 \
  --server-address "127.0.0.1:$KWOK_PORT"

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
for i in 0 1 2; do
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-${ZONES[$i]}
spec:
  podCIDR: ${KWOK_NODE_POD_CIDRS[$i]}
  podCIDRs: [${KWOK_NODE_POD_CIDRS[$i]}]
status:
  addresses:
  - type: InternalIP
    address: 127.0.0.1
---
EOF
done | kubectl_admin apply -f - >/dev/null
wait_for "3 Ready nodes" 60 bash -c \
  "[[ \$('$K8S_BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' get nodes --no-headers 2>/dev/null | grep -cw Ready) -ge 3 ]]"
wait_for "default ServiceAccount" 60 "$K8S_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" \
  get serviceaccount default -n default

cp "$STATE/admin.kubeconfig" "$KUBECONFIG_OUT"
if [[ "$real_nodes" != 0 ]]; then "$repo/e2e/nodes/up.sh" "$real_nodes"; fi
echo "control plane up in $((SECONDS - start_all)) s (logs in $STATE/logs; etcd data on $(etcd_storage))"
print_export
