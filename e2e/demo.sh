#!/usr/bin/env bash
# The first seed's demo: run Signpost against the cluster named by KUBECONFIG (the local control
# plane under `just demo`), deploy the `hostnames` app, and show what a user looks at: the
# Service, its Endpoints and EndpointSlice, its DNSRecord and the ServiceIP claim of its VIP;
# then make one pod fail its readiness probe and show it leave the ready set.
# Cleans up the namespace and the Signpost process on exit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SIGNPOST_BIN:-$repo/target/debug/signpost}"
cidr="${SIGNPOST_DEMO_CIDR:-10.200.0.0/16}"
port="${SIGNPOST_DEMO_METRICS_PORT:-18080}"
log="$repo/target/demo-signpost.log"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
wait_for() { # what seconds command...
  local what="$1" deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "demo: timed out waiting for $what" >&2
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

kubectl apply --server-side -f "$repo/charts/signpost/crds/" >/dev/null
kubectl wait --for condition=established --timeout=30s crd/dnsrecords.signpost.dev crd/serviceips.signpost.dev >/dev/null

"$bin" run --service-cidr "$cidr" --leader-elect=false --metrics-addr "127.0.0.1:$port" >"$log" 2>&1 &
signpost_pid=$!
cleanup() {
  kubectl delete namespace demo --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  kill -TERM "$signpost_pid" 2>/dev/null || true
  wait "$signpost_pid" 2>/dev/null || true
}
trap cleanup EXIT
wait_for "signpost to be ready" 60 curl -fsS "http://127.0.0.1:$port/readyz"
echo "signpost is running (pid $signpost_pid, service CIDR $cidr, log $log)"

kubectl create namespace demo >/dev/null
run kubectl apply -f "$repo/e2e/demo/hostnames.yaml"
start=$SECONDS
run kubectl -n demo rollout status deploy/hostnames --timeout=60s
ready_endpoints() { [[ "$(kubectl -n demo get endpoints hostnames -o jsonpath='{.subsets[*].addresses[*].ip}' 2>/dev/null | wc -w)" == "$1" ]]; }
has_record() { kubectl -n demo get dnsrecord hostnames -o jsonpath='{.status.addressSummary}' 2>/dev/null | grep -q .; }
wait_for "3 endpoints" 30 ready_endpoints 3
wait_for "the DNSRecord" 30 has_record
echo "converged $((SECONDS - start)) s after the Deployment was applied"

run kubectl -n demo get svc,endpoints,endpointslices,dnsrecords -o wide
run kubectl get serviceips
vip="$(kubectl -n demo get dnsrecord hostnames -o jsonpath='{.spec.ipv4[0]}')"
echo "hostnames.demo.svc.cluster.local -> $vip (Signpost's VIP; the API server's own clusterIP is $(kubectl -n demo get svc hostnames -o jsonpath='{.spec.clusterIP}'))"

pod="$(kubectl -n demo get pods -l app=hostnames -o jsonpath='{.items[0].metadata.name}')"
say "# $pod fails its readiness probe"
"$repo/e2e/controlplane/pod-ready.sh" demo "$pod" false
wait_for "the pod to leave the ready set" 10 ready_endpoints 2
run kubectl -n demo get endpoints hostnames -o wide
run kubectl -n demo get endpointslices -l kubernetes.io/service-name=hostnames \
  -o 'custom-columns=NAME:.metadata.name,ADDRESSES:.endpoints[*].addresses[0],READY:.endpoints[*].conditions.ready'
