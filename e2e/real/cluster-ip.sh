#!/usr/bin/env bash
# ClusterIP mode's journey with real pods (issue 30), against the cluster KUBECONFIG names (the
# local control plane with real nodes): helm install of charts/signpost with clusterIPMode=true
# (`signpost dns` as the pods' cluster DNS; no `signpost proxy`, so kube-proxy alone carries the
# traffic); the API server calls the chart's webhook, which gives a new Service an address of
# Signpost's CIDR as its spec.clusterIP, the same address as its ServiceIP claim, its DNSRecord
# and the API server's IPAddress; kube-proxy on the nodes routes that address: curls from a
# client pod reach the three pods behind it. Then the leader pod is deleted: the webhook Service
# follows the new leader and a second Service again gets Signpost's address, reached the same
# way. Last, Kubernetes' own specs that need real pods (Services' type changes among them) run on
# the same nodes against this install: e2e/real/conformance.sh. Every step asserts; a failure
# prints what was seen and exits 1.
#
# The API server must reach the webhook: at the webhook Service's ClusterIP, or (the local
# control plane, whose API server is in no node's network namespace) at the leader pod's
# address with --enable-aggregator-routing=true. Signpost's CIDR (serviceCIDRs of
# e2e/real/values.yaml, 10.200.0.0/16) must overlap no ServiceCIDR of the cluster, the API
# server's --service-cluster-ip-range included.
#
# Environment: as journey.sh (SIGNPOST_IMAGE, SIGNPOST_HOSTNAMES_IMAGE, SIGNPOST_CLIENT_IMAGE,
# SIGNPOST_IMAGE_PULL_POLICY, SIGNPOST_KEEP=1 leaves the release, the namespace and the
# ServiceCIDR in place), SIGNPOST_REAL_CONFORMANCE=0 (skip Kubernetes' specs).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${KUBECONFIG:?KUBECONFIG must name the cluster}"
image="${SIGNPOST_IMAGE:-signpost.local/signpost:dev}"
hostnames_image="${SIGNPOST_HOSTNAMES_IMAGE:-signpost.local/hostnames:1}"
client_image="${SIGNPOST_CLIENT_IMAGE:-signpost.local/client:1}"
pull_policy="${SIGNPOST_IMAGE_PULL_POLICY:-Never}"
release=signpost
sys_ns=signpost-system
ns=demo-cluster-ip
cidr=10.200.0.0/16
service_cidr_name=signpost
webhook_svc="$release-webhook"
logs="$repo/target/real/cluster-ip"
mkdir -p "$logs"
journey="e2e-real cluster-ip"
source "$repo/e2e/real/steps.sh"
source "$repo/e2e/addresses.sh"

cleanup() {
  local status=$?
  trap - EXIT
  save_pod_logs
  if [[ "${SIGNPOST_KEEP:-0}" != 1 ]]; then
    kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null 2>&1 || true
    "$helm" uninstall "$release" -n "$sys_ns" --wait --timeout 2m >/dev/null 2>&1 || true
    # Signpost never deletes its ServiceCIDR; left behind, the API server could allocate from
    # it for Services of a later run without ClusterIP mode, where 10.200.0.0/16 is Signpost's
    # own VIP range. It goes once no address of it is in use.
    kubectl delete servicecidr "$service_cidr_name" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kubectl wait --for=delete "servicecidr/$service_cidr_name" --timeout=60s >/dev/null 2>&1 \
      || echo "note: ServiceCIDR $service_cidr_name is still being deleted" >&2
  fi
  exit "$status"
}
trap cleanup EXIT

source "$repo/e2e/real/app.sh"

# A ServiceCIDR of this name left terminating by a run just before cannot take addresses.
kubectl wait --for=delete "servicecidr/$service_cidr_name" --timeout=60s >/dev/null 2>&1 || true
repository="${image%:*}" tag="${image##*:}"
say "helm install $release charts/signpost --set clusterIPMode=true (image $image; dns on, proxy off)"
"$helm" upgrade --install "$release" "$repo/charts/signpost" -n "$sys_ns" --create-namespace \
  -f "$repo/e2e/real/values.yaml" "${placement[@]}" \
  --set clusterIPMode=true --set proxy.enabled=false \
  --set "image.repository=$repository" --set "image.tag=$tag" --set "image.pullPolicy=$pull_policy" \
  --wait --timeout 3m || fail "helm install did not become ready"
run kubectl -n "$sys_ns" get pods -o wide
check_pods() { kubectl -n "$sys_ns" get pods -o json | python3 "$repo/e2e/real/check_pods.py" 4; }
check_pods > "$logs/pod-check.txt" || fail "Signpost's pods: $(cat "$logs/pod-check.txt")"
echo "Signpost's pods: Running, ready, 0 restarts; non-root, read-only root filesystem"

# The leader publishes the ServiceCIDR and labels its pod, which the webhook Service selects.
lease_holder_pod() {
  local holder
  holder="$(kubectl -n "$sys_ns" get lease signpost -o jsonpath='{.spec.holderIdentity}')"
  [[ -n "$holder" ]] && echo "${holder%_*}"
}
published() { [[ "$(kubectl get servicecidr "$service_cidr_name" -o jsonpath='{.spec.cidrs[*]}')" == "$cidr" ]]; }
wait_for "ServiceCIDR $service_cidr_name over $cidr" 60 published
run kubectl get servicecidr
webhook_endpoint_is_leader() { # -> the leader pod's address, once it is the only endpoint
  local leader ip got
  leader="$(lease_holder_pod)" || return 1
  ip="$(kubectl -n "$sys_ns" get pod "$leader" -o jsonpath='{.status.podIP}')"
  got="$(kubectl -n "$sys_ns" get endpointslices -l "kubernetes.io/service-name=$webhook_svc" \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}')"
  [[ -n "$ip" && "$got" == "$ip" ]] || { echo "leader $leader ($ip), endpoints: ${got:-none}"; return 1; }
  echo "$leader $ip"
}
wait_for "the webhook Service's only endpoint to be the leader's pod" 60 webhook_endpoint_is_leader
read -r leader leader_ip < <(webhook_endpoint_is_leader)
run kubectl -n "$sys_ns" get pods -L signpost.dev/webhook -l app.kubernetes.io/name=signpost
run kubectl -n "$sys_ns" get endpointslices -l "kubernetes.io/service-name=$webhook_svc"
echo "the webhook Service leads to the leader $leader ($leader_ip) only"

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The API server calls a new webhook configuration once its informer has it.
webhook_called() { probe_service_address "$ns" probe "$cidr"; }
wait_for "the API server to call the webhook (a probe Service with an address of $cidr)" 60 webhook_called

# An upgrade keeps the chart's certificate (lookup): the caBundle stays the CA of the
# certificate the running pods loaded, and the webhook goes on being called.
ca_bundle() { kubectl get mutatingwebhookconfiguration "$release" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | sha256sum; }
serving_cert() { kubectl -n "$sys_ns" get secret "$release-webhook-tls" -o jsonpath='{.data.tls\.crt}' | sha256sum; }
before="$(ca_bundle) $(serving_cert)"
say "helm upgrade $release charts/signpost --reuse-values"
"$helm" upgrade "$release" "$repo/charts/signpost" -n "$sys_ns" --reuse-values --wait --timeout 3m >/dev/null \
  || fail "helm upgrade failed"
[[ "$(ca_bundle) $(serving_cert)" == "$before" ]] || fail "the upgrade changed the caBundle or the certificate"
wait_for "the API server to call the webhook after the upgrade" 30 webhook_called
echo "after helm upgrade: the same caBundle and certificate, and the webhook is still called"

say "the first seed's app: 3 hostnames pods with an HTTP readiness probe, a Service, a client pod"
apply_seed_app
run kubectl -n "$ns" get svc hostnames

# The Service's own ClusterIP is Signpost's address: in its CIDR, claimed by a ServiceIP for
# this Service, recorded by the API server as an IPAddress of this Service, in the DNSRecord.
claim_of() { # service
  kubectl get serviceips -l "signpost.dev/service-namespace=$ns,signpost.dev/service-name=$1" \
    -o jsonpath='{.items[*].spec.address}'
}
record_of() { kubectl -n "$ns" get dnsrecord "$1" -o jsonpath='{.spec.ipv4[0]}'; }
same_address() { # service -> its ClusterIP, once claim, IPAddress and DNSRecord agree
  local ip claim parent record
  ip="$(kubectl -n "$ns" get svc "$1" -o jsonpath='{.spec.clusterIP}')"
  in_cidrs "$ip" "$cidr" || { echo "spec.clusterIP $ip is not in $cidr"; return 1; }
  claim="$(claim_of "$1")"
  [[ "$claim" == "$ip" ]] || { echo "ClusterIP $ip, ServiceIP claim: ${claim:-none}"; return 1; }
  parent="$(kubectl get ipaddress "$ip" -o jsonpath='{.spec.parentRef.resource}/{.spec.parentRef.namespace}/{.spec.parentRef.name}')"
  [[ "$parent" == "services/$ns/$1" ]] || { echo "IPAddress $ip names ${parent:-nothing}"; return 1; }
  record="$(record_of "$1")"
  [[ "$record" == "$ip" ]] || { echo "ClusterIP $ip, DNSRecord: ${record:-none}"; return 1; }
  echo "$ip"
}
wait_for "hostnames' ClusterIP, claim, IPAddress and DNSRecord to agree" 60 same_address hostnames
ip="$(same_address hostnames)"
run kubectl -n "$ns" get svc hostnames -o wide
run kubectl get serviceips -l "signpost.dev/service-namespace=$ns"
run kubectl get ipaddress "$ip"
run kubectl -n "$ns" get dnsrecord hostnames
echo "hostnames' CLUSTER-IP $ip is in Signpost's $cidr, and is its ServiceIP claim, its IPAddress and its DNSRecord"

run kubectl -n "$ns" rollout status deploy/hostnames --timeout=120s
wait_for "the client pod" 120 kubectl -n "$ns" wait --for=condition=Ready pod/client --timeout=5s
in_client() { kubectl -n "$ns" exec client -- "$@"; }
if [[ -n "$on_real_nodes" ]] && ip netns list 2>/dev/null | grep -qw sp-node-1; then
  # kube-proxy programs the address like any ClusterIP (its table in the node's namespace).
  programmed() { nsenter --net=/run/netns/sp-node-1 nft list table ip kube-proxy | grep -F "$ip"; }
  wait_for "kube-proxy on sp-node-1 to program $ip" 60 programmed
  say "nsenter --net=/run/netns/sp-node-1 nft list table ip kube-proxy | grep $ip"
  programmed
fi

# Through kube-proxy: no signpost proxy runs, so only its DNAT leads $ip to the pods.
curl_ip() { in_client curl -sS --max-time 2 "http://$1/"; }
all_three_answer() { # address
  local seen=() _
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12; do seen+=("$(curl_ip "$1")") || return 1; done
  [[ "$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)" == 3 ]] || { echo "${seen[*]}"; return 1; }
}
wait_for "all three pods to answer on $ip" 60 all_three_answer "$ip"
for _ in 1 2 3; do
  say "kubectl -n $ns exec client -- curl -s http://$ip/"
  curl_ip "$ip" || fail "curl $ip failed"
  echo
done
echo "kube-proxy routes Signpost's address $ip to the hostnames pods"
resolves_to() { # name address
  local out
  out="$(in_client nslookup "$1")" || { echo "$out"; return 1; }
  grep -q "Address: $2\$" <<<"$out" || { echo "$out"; return 1; }
  echo "$out"
}
say "kubectl -n $ns exec client -- nslookup hostnames"
wait_for "nslookup hostnames to answer $ip" 60 resolves_to hostnames "$ip"
resolves_to hostnames "$ip"

# Failover: the webhook Service follows the new leader, whose webhook chooses the next address.
say "# the Signpost leader $leader is deleted"
run kubectl -n "$sys_ns" delete pod "$leader" --wait=false
new_leader_serves() {
  local got
  got="$(webhook_endpoint_is_leader)" || { echo "$got"; return 1; }
  [[ "${got%% *}" != "$leader" ]] || { echo "still $got"; return 1; }
  echo "$got"
}
wait_for "another replica to lead and be the webhook Service's only endpoint" 120 new_leader_serves
read -r leader2 leader2_ip < <(new_leader_serves)
echo "the lease and the webhook Service are now $leader2 ($leader2_ip)"
wait_for "the API server to call the new leader's webhook" 60 webhook_called
run kubectl -n "$ns" create service clusterip hostnames-2 --tcp=80:9376
kubectl -n "$ns" patch service hostnames-2 --type=merge -p '{"spec":{"selector":{"app":"hostnames"}}}' >/dev/null
wait_for "hostnames-2's ClusterIP, claim, IPAddress and DNSRecord to agree" 60 same_address hostnames-2
ip2="$(same_address hostnames-2)"
run kubectl -n "$ns" get svc -o wide
wait_for "all three pods to answer on $ip2" 60 all_three_answer "$ip2"
say "kubectl -n $ns exec client -- curl -s http://$ip2/"
curl_ip "$ip2" || fail "curl $ip2 failed"
echo
echo "after the failover, hostnames-2 got $ip2 from the new leader, and kube-proxy routes it"

if [[ "${SIGNPOST_REAL_CONFORMANCE:-1}" != 0 ]]; then
  say "e2e/real/conformance.sh $cidr   # Kubernetes' specs with pods, on these nodes"
  "$repo/e2e/real/conformance.sh" "$cidr" || fail "Kubernetes' specs failed (target/real/conformance/e2e.log)"
fi
echo "e2e-real cluster-ip: every step passed"
