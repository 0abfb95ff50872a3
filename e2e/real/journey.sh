#!/usr/bin/env bash
# The seeds' journey with real pods, against the cluster KUBECONFIG names (the local control
# plane with real nodes, or kind): helm install of charts/signpost (controller, `signpost dns` as
# the pods' cluster DNS, `signpost proxy` on every node); the first seed's `hostnames`
# Deployment (3 containers with an HTTP readiness probe) and a client pod; from inside the
# client pod, `nslookup hostnames` returns Signpost's VIP and three curls of it return three
# different pods; one pod made to fail its readiness probe gets no further connection; the
# Signpost leader pod deleted, the other replica takes over and a new Service converges, seen
# from the client pod. Every step asserts; a failure prints what was seen and exits 1.
#
# Environment (defaults: the images built by `just image` on the local real nodes):
#   SIGNPOST_IMAGE, SIGNPOST_HOSTNAMES_IMAGE, SIGNPOST_CLIENT_IMAGE  image references
#   SIGNPOST_IMAGE_PULL_POLICY   for the Signpost image (default Never: no registry here)
#   SIGNPOST_KEEP=1              leave the release and the demo namespace installed
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${KUBECONFIG:?KUBECONFIG must name the cluster}"
image="${SIGNPOST_IMAGE:-signpost.local/signpost:dev}"
hostnames_image="${SIGNPOST_HOSTNAMES_IMAGE:-signpost.local/hostnames:1}"
client_image="${SIGNPOST_CLIENT_IMAGE:-signpost.local/client:1}"
pull_policy="${SIGNPOST_IMAGE_PULL_POLICY:-Never}"
release=signpost
sys_ns=signpost-system
ns=demo-real
logs="$repo/target/real"
mkdir -p "$logs"
journey="e2e-real"
source "$repo/e2e/real/steps.sh"

cleanup() {
  local status=$?
  trap - EXIT
  save_pod_logs
  if [[ "${SIGNPOST_KEEP:-0}" != 1 ]]; then
    kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null 2>&1 || true
    "$helm" uninstall "$release" -n "$sys_ns" --wait --timeout 2m >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT

# On the local control plane the real nodes are tainted (the kwok tests' pods must not land
# there) and labelled; on kind every node is real and nothing is needed.
source "$repo/e2e/real/app.sh"

repository="${image%:*}" tag="${image##*:}"
say "helm install $release charts/signpost (image $image; dns and proxy enabled)"
"$helm" upgrade --install "$release" "$repo/charts/signpost" -n "$sys_ns" --create-namespace \
  -f "$repo/e2e/real/values.yaml" "${placement[@]}" \
  --set "image.repository=$repository" --set "image.tag=$tag" --set "image.pullPolicy=$pull_policy" \
  --wait --timeout 3m || fail "helm install did not become ready"

# Every Signpost pod: Running, ready through its probes, never restarted; the controller and
# DNS pods non-root with a read-only root filesystem (the proxy is root with NET_ADMIN and
# NET_BIND_SERVICE only, as docs/decisions.md says).
run kubectl get pods -A -o wide
check_pods() { kubectl -n "$sys_ns" get pods -o json | python3 "$repo/e2e/real/check_pods.py" 3; }
check_pods > "$logs/pod-check.txt" || fail "Signpost's pods: $(cat "$logs/pod-check.txt")"
echo "Signpost's pods: Running, ready, 0 restarts; controller, dns and proxy non-root, read-only root filesystem"

say "the first seed's app: 3 hostnames pods with an HTTP readiness probe, and a client pod"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
apply_seed_app
run kubectl -n "$ns" rollout status deploy/hostnames --timeout=120s
wait_for "the client pod" 120 kubectl -n "$ns" wait --for=condition=Ready pod/client --timeout=5s

record_vip() { # service
  local vip
  vip="$(kubectl -n "$ns" get dnsrecord "$1" -o jsonpath='{.spec.ipv4[0]}')"
  [[ -n "$vip" ]] && echo "$vip"
}
wait_for "the DNSRecord of hostnames" 60 record_vip hostnames
vip="$(record_vip hostnames)"
run kubectl -n "$ns" get svc,endpointslices,dnsrecords -o wide
in_client() { kubectl -n "$ns" exec client -- "$@"; }

# The name through the pod's search path, as any application would ask it.
resolves_to_vip() { # name vip
  local out
  out="$(in_client nslookup "$1")" || { echo "$out"; return 1; }
  grep -q "Address: $2\$" <<<"$out" || { echo "$out"; return 1; }
  echo "$out"
}
say "kubectl -n $ns exec client -- nslookup hostnames"
wait_for "nslookup hostnames to answer $vip" 60 resolves_to_vip hostnames "$vip"
resolves_to_vip hostnames "$vip"
echo "(Signpost's VIP is $vip)"

# Each proxy learns the endpoints on its own; every pod must answer through the VIP first.
curl_vip() { in_client curl -sS --max-time 2 "http://$vip/"; }
all_three_answer() {
  local seen=() n
  for n in 1 2 3 4 5 6 7 8 9; do seen+=("$(curl_vip)") || return 1; done
  [[ "$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)" == 3 ]] || { echo "${seen[*]}"; return 1; }
}
wait_for "all three pods to answer on $vip" 60 all_three_answer
say "# from the client pod: curl the VIP three times"
seen=()
for _ in 1 2 3; do
  say "kubectl -n $ns exec client -- curl -s http://$vip/"
  name="$(curl_vip)" || fail "curl $vip failed: $name"
  echo "$name"
  seen+=("$name")
done
[[ "$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)" == 3 ]] \
  || fail "expected three different pod names, got: ${seen[*]}"
echo "three curls, three different pods"

# A real readiness failure: the probe's file goes away inside the container.
pod="$(kubectl -n "$ns" get pods -l app=hostnames -o jsonpath='{.items[0].metadata.name}')"
say "# $pod fails its readiness probe"
run kubectl -n "$ns" exec "$pod" -- rm /tmp/www/ready
ready_count() { # service count
  [[ "$(kubectl -n "$ns" get endpointslices -l "kubernetes.io/service-name=$1" \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | grep -c .)" == "$2" ]]
}
wait_for "$pod to leave the ready endpoints" 30 ready_count hostnames 2
run kubectl -n "$ns" get pods -l app=hostnames -o wide
run kubectl -n "$ns" get endpointslices -l kubernetes.io/service-name=hostnames \
  -o 'custom-columns=NAME:.metadata.name,ADDRESSES:.endpoints[*].addresses[0],READY:.endpoints[*].conditions.ready'
# The proxies apply the change a moment after the slice: wait until nine curls miss the pod.
misses_pod() {
  local n name
  for n in 1 2 3 4 5 6 7 8 9; do
    name="$(curl_vip)" || return 1
    [[ "$name" != "$pod" ]] || return 1
  done
}
wait_for "the proxies to stop sending to $pod" 30 misses_pod
say "# from the client pod: six more curls; $pod must not answer"
for _ in 1 2 3 4 5 6; do
  name="$(curl_vip)" || fail "curl $vip failed: $name"
  echo "curl $vip -> $name"
  [[ "$name" != "$pod" ]] || fail "$pod answered although it is not ready"
done
echo "$pod got no connection after it failed its readiness probe"

# Leader failover seen from the pods: the leader's pod deleted, a new Service still converges.
# The holder identity is <pod name>_<pid>.
lease_holder_pod() {
  local holder
  holder="$(kubectl -n "$sys_ns" get lease signpost -o jsonpath='{.spec.holderIdentity}')"
  [[ -n "$holder" ]] && echo "${holder%_*}"
}
leader="$(lease_holder_pod)" || fail "no Signpost replica holds the lease"
say "# the Signpost leader $leader is deleted"
run kubectl -n "$sys_ns" delete pod "$leader" --wait=false
new_leader() {
  local pod
  pod="$(lease_holder_pod)" && [[ "$pod" != "$leader" ]] && echo "$pod"
}
wait_for "another replica to take the lease" 90 new_leader
echo "the lease is now held by $(new_leader)"
run kubectl -n "$ns" create service clusterip hostnames-2 --tcp=80:9376
kubectl -n "$ns" patch service hostnames-2 --type=merge -p '{"spec":{"selector":{"app":"hostnames"}}}' >/dev/null
wait_for "the DNSRecord of hostnames-2" 60 record_vip hostnames-2
vip2="$(record_vip hostnames-2)"
say "kubectl -n $ns exec client -- nslookup hostnames-2"
wait_for "nslookup hostnames-2 to answer $vip2" 60 resolves_to_vip hostnames-2 "$vip2"
resolves_to_vip hostnames-2 "$vip2"
answers_vip2() { in_client curl -sS --max-time 2 "http://$vip2/" | grep -q hostnames-; }
wait_for "a pod to answer on $vip2" 60 answers_vip2
say "kubectl -n $ns exec client -- curl -s http://$vip2/"
in_client curl -sS --max-time 2 "http://$vip2/"; echo
echo "after the failover, hostnames-2 converged: resolved and connected from the client pod"
run kubectl get pods -A -o wide
echo "e2e-real: every step passed"
