#!/usr/bin/env bash
# The first seed's demo with real connections: `curl <VIP>` three times returns three
# different pod names, and a pod that fails its readiness probe gets no more requests.
#
# Signpost runs in ClusterIP mode (issue 30): its admission webhook (HTTPS on 127.0.0.1, with a
# certificate openssl makes for the run) writes the address Signpost chooses into each new
# Service of namespace `demo`, so the Service has one address, the same in `kubectl get svc`,
# its DNSRecord, `dig` and `curl`.
#
# Network layout (see docs/proxy.md): everything that carries VIP or pod traffic runs inside
# ONE network namespace this script creates (`signpost-demo`) and deletes on exit:
#   root namespace:  kube-apiserver 127.0.0.1:16443, signpost run (talks to the API, serves
#                    its webhook to the API server on 127.0.0.1:<webhook port>),
#                    e2e/netns/forward.py on 10.123.0.1:16443 -> 127.0.0.1:16443
#   signpost-demo:   lo (127.0.0.1), eth-api 10.123.0.2/30 (veth to the root side),
#                    signpost dns on 127.0.0.1:53, signpost proxy (VIPs on signpost0),
#                    e2e/netns/backends.py (pod IPs on pods0, an HTTP server per pod)
# No VIP or pod address is ever routed in, or contacted from, the root namespace.
# Needs root (ip netns). Cleans up the webhook configuration, the namespace `demo`, the
# ServiceCIDR, the netns and its processes on exit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SIGNPOST_BIN:-$repo/target/debug/signpost}"
cidr="${SIGNPOST_DEMO_CIDR:-10.200.0.0/16}"
port="${SIGNPOST_DEMO_METRICS_PORT:-18080}"
netns="${SIGNPOST_DEMO_NETNS:-signpost-demo}"
webhook_port="${SIGNPOST_DEMO_WEBHOOK_PORT:-18443}"
# The name of the ServiceCIDR Signpost publishes over $cidr and of the webhook configuration.
objects=signpost-demo
logs="$repo/target/demo"
mkdir -p "$logs"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
inside() { ip netns exec "$netns" "$@"; }
wait_for() { # what seconds command...
  local what="$1" deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "demo: timed out waiting for $what" >&2
      for f in "$logs"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2 || true; done
      exit 1
    fi
    sleep 0.2
  done
}

if [[ "$(id -u)" != 0 ]]; then
  echo "demo: needs root (it creates a network namespace); try: sudo -E just demo" >&2
  exit 1
fi

pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  echo
  echo "demo: cleaning up (webhook, namespace demo, ServiceCIDR $objects, netns $netns, processes)"
  # The webhook first: no Service may meet it once Signpost is gone.
  kubectl delete mutatingwebhookconfiguration "$objects" --ignore-not-found >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  kubectl delete namespace demo --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  # Goes once the namespace's Services have released its addresses.
  kubectl delete servicecidr "$objects" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  "$repo/e2e/netns/down.sh" "$netns" || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kubectl apply --server-side -f "$repo/charts/signpost/crds/" >/dev/null
kubectl wait --for condition=established --timeout=30s crd/dnsrecords.signpost.dev crd/serviceips.signpost.dev >/dev/null
# A ServiceCIDR of this name left terminating by the run before cannot take addresses.
kubectl wait --for=delete "servicecidr/$objects" --timeout=60s >/dev/null 2>&1 || true
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=signpost-demo-webhook" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$logs/webhook.key" -out "$logs/webhook.crt" \
  2>/dev/null

# A leftover of an interrupted run would make `ip netns add` fail.
"$repo/e2e/netns/down.sh" "$netns"
state="$("$repo/e2e/netns/up.sh" "$netns" --api 0)"
kc="$state/kubeconfig"
echo "network namespace $netns: lo, pods0, eth-api 10.123.0.2/30; API server through 10.123.0.1 (kubeconfig $kc)"

"$bin" run --service-cidr "$cidr" --namespace demo --leader-elect=false \
  --cluster-ip-mode=true --webhook-addr "127.0.0.1:$webhook_port" --service-cidr-name "$objects" \
  --webhook-cert-file "$logs/webhook.crt" --webhook-key-file "$logs/webhook.key" \
  --metrics-addr "127.0.0.1:$port" >"$logs/run.log" 2>&1 &
pids+=($!)
inside "$bin" dns --kubeconfig "$kc" --namespace demo --listen 127.0.0.1:53 \
  --metrics-addr 127.0.0.1:9153 >"$logs/dns.log" 2>&1 &
pids+=($!)
inside "$bin" proxy --kubeconfig "$kc" --namespace demo --interface signpost0 \
  --metrics-addr 127.0.0.1:9154 >"$logs/proxy.log" 2>&1 &
pids+=($!)
KUBECONFIG="$kc" inside python3 "$repo/e2e/netns/backends.py" --namespace demo \
  --selector app=hostnames --port 9376 --interface pods0 >"$logs/backends.log" 2>&1 &
pids+=($!)
wait_for "signpost run to be ready" 60 curl -fsS "http://127.0.0.1:$port/readyz"
wait_for "signpost dns to be ready" 60 inside curl -fsS http://127.0.0.1:9153/readyz
wait_for "signpost proxy to be ready" 60 inside curl -fsS http://127.0.0.1:9154/readyz
echo "signpost run, dns and proxy are running (logs in $logs)"

kubectl create namespace demo >/dev/null
say "# ClusterIP mode: the API server asks Signpost's webhook for every new Service's address in demo"
kubectl apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: $objects
webhooks:
- name: services.signpost.dev
  clientConfig:
    url: https://127.0.0.1:$webhook_port/mutate-services
    caBundle: $(base64 -w0 "$logs/webhook.crt")
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [services]
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: demo
  failurePolicy: Ignore
  timeoutSeconds: 5
  sideEffects: NoneOnDryRun
  admissionReviewVersions: [v1]
YAML
source "$repo/e2e/addresses.sh"
wait_for "the API server to call Signpost's webhook" 30 probe_service_address demo webhook-probe "$cidr"
echo "MutatingWebhookConfiguration $objects -> https://127.0.0.1:$webhook_port/mutate-services; ServiceCIDR $objects: $(kubectl get servicecidr "$objects" -o jsonpath='{.spec.cidrs[*]}')"
run kubectl apply -f "$repo/e2e/demo/hostnames.yaml"
start=$SECONDS
run kubectl -n demo rollout status deploy/hostnames --timeout=60s
ready_endpoints() { [[ "$(kubectl -n demo get endpoints hostnames -o jsonpath='{.subsets[*].addresses[*].ip}' 2>/dev/null | wc -w)" == "$1" ]]; }
has_record() { kubectl -n demo get dnsrecord hostnames -o jsonpath='{.status.addressSummary}' 2>/dev/null | grep -q .; }
proxy_backends() { inside curl -fsS http://127.0.0.1:9154/metrics | grep -qx "signpost_proxy_ready_backends $1"; }
wait_for "3 endpoints" 30 ready_endpoints 3
wait_for "the DNSRecord" 30 has_record
wait_for "the proxy to have 3 ready backends" 30 proxy_backends 3
for ip in $(kubectl -n demo get pods -l app=hostnames -o jsonpath='{.items[*].status.podIP}'); do
  wait_for "a server on pod IP $ip" 30 inside curl -fsS --max-time 1 "http://$ip:9376/"
done
echo "converged $((SECONDS - start)) s after the Deployment was applied"

run kubectl -n demo get svc,endpoints,endpointslices,dnsrecords -o wide
vip="$(kubectl -n demo get svc hostnames -o jsonpath='{.spec.clusterIP}')"
cluster_ips="$(kubectl -n demo get svc hostnames -o jsonpath='{.spec.clusterIPs[*]}')"
recorded="$(kubectl -n demo get dnsrecord hostnames -o jsonpath='{.spec.ipv4[*]} {.spec.ipv6[*]}' | xargs)"
uid="$(kubectl -n demo get svc hostnames -o jsonpath='{.metadata.uid}')"
run kubectl get serviceips --field-selector "spec.serviceRef.uid=$uid"
run kubectl get ipaddress "$vip"
if [[ "$cluster_ips" != "$vip" || "$recorded" != "$vip" ]] || ! in_cidrs "$vip" "$cidr"; then
  echo "demo: expected one address from $cidr everywhere; Service: $cluster_ips, DNSRecord: $recorded" >&2
  exit 1
fi
echo "one address: $vip is the Service's CLUSTER-IP, chosen by Signpost from $cidr; its ServiceIP claim and its DNSRecord say the same"

say "ip netns exec $netns dig @127.0.0.1 hostnames.demo.svc.cluster.local +noall +answer"
answer="$(inside dig @127.0.0.1 hostnames.demo.svc.cluster.local +noall +answer +tries=1 +time=2)"
echo "$answer"
[[ "$(awk '$4 == "A" {print $5}' <<<"$answer")" == "$vip" ]] || { echo "demo: DNS did not return the CLUSTER-IP $vip" >&2; exit 1; }

curl_vip() { inside curl -sS --max-time 2 "http://$vip/"; }
say "# inside $netns: curl the CLUSTER-IP three times"
seen=()
for _ in 1 2 3; do
  say "curl $vip"
  name="$(curl_vip)"
  echo "$name"
  seen+=("$name")
done
distinct="$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)"
if [[ "$distinct" != 3 ]]; then
  echo "demo: expected three different pod names, got: ${seen[*]}" >&2
  exit 1
fi
echo "three curls, three different pods: round robin over the ready endpoints"

pod="$(kubectl -n demo get pods -l app=hostnames -o jsonpath='{.items[0].metadata.name}')"
say "# $pod fails its readiness probe"
run "$repo/e2e/controlplane/pod-ready.sh" demo "$pod" false
wait_for "the pod to leave the ready set" 10 ready_endpoints 2
wait_for "the proxy to drop it" 10 proxy_backends 2
run kubectl -n demo get endpointslices -l kubernetes.io/service-name=hostnames \
  -o 'custom-columns=NAME:.metadata.name,ADDRESSES:.endpoints[*].addresses[0],READY:.endpoints[*].conditions.ready'
say "# inside $netns: six more curls; $pod must not answer"
for _ in 1 2 3 4 5 6; do
  name="$(curl_vip)"
  echo "curl $vip -> $name"
  if [[ "$name" == "$pod" ]]; then
    echo "demo: $pod answered although it is not ready" >&2
    exit 1
  fi
done
echo "$pod got no connection after it left the ready set"
say "ip netns exec $netns curl -s http://127.0.0.1:9154/metrics | grep signpost_proxy_connections"
inside curl -fsS http://127.0.0.1:9154/metrics | grep '^signpost_proxy_connections_total' || true
