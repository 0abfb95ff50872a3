#!/usr/bin/env bash
# Kubernetes' own e2e specs for Endpoints and EndpointSlices, run from `e2e.test` of the same
# release as the control plane, with Signpost in place of kube-controller-manager's endpoints,
# endpointslice and endpointslice-mirroring controllers (the local control plane runs
# kube-controller-manager without them). Only the specs that check API objects run: the local
# control plane's nodes are kwok fakes, whose pods are Running and Ready with an IP but run
# nothing, so no spec may exec into a pod or send traffic through a Service (those run on real
# nodes: e2e/real/conformance.sh).
#
# What it does: builds e2e.test (cached, e2e/controlplane/build.sh e2e-test), applies
# Signpost's CRDs, starts `signpost run` against KUBECONFIG and waits until it leads, runs
# e2e.test with the focus and skips below, then stops Signpost. The JUnit report, e2e.test's
# output and Signpost's log go to target/conformance/. docs/conformance.md lists the specs and
# their results. Usage: e2e/with-cluster.sh e2e/conformance.sh (or `just conformance`); needs
# KUBECONFIG. Exits with e2e.test's status.
#
# With SIGNPOST_CONFORMANCE_MODE=cluster-ip, Signpost runs in ClusterIP mode (issue 30): the
# script makes a self-signed certificate for 127.0.0.1, starts Signpost with its admission
# webhook on a loopback port and its own CIDRs (10.201.0.0/16, fd00:10:201::/64, apart from the
# API server's 10.96.0.0/16), registers a cluster-wide MutatingWebhookConfiguration for
# Services (removed again when the script exits, however it exits), checks that a probe
# Service gets an address from Signpost's CIDRs, and runs the endpoint specs plus Kubernetes'
# specs for the ServiceCIDR and IPAddress API, Services' type changes and ClusterIP allocation.
# Every Service address the API server records (IPAddress objects, watched during the run) must
# be in Signpost's CIDRs, or the run fails.
#
# Environment: SIGNPOST_BIN (default target/debug/signpost), SIGNPOST_CONFORMANCE_MODE
# (endpoints, the default, or cluster-ip), SIGNPOST_CONFORMANCE_METRICS_PORT (default: the first
# free port from 18092), SIGNPOST_CONFORMANCE_WEBHOOK_PORT (cluster-ip; default: the first free
# port from 19443), SIGNPOST_CONFORMANCE_FOCUS (a regex that narrows the run further, e.g.
# 'Mirroring'), SIGNPOST_CONFORMANCE_SKIPS=0 (run the skipped specs too, to see how they fail),
# SIGNPOST_CONFORMANCE_REPORT (default target/conformance, target/conformance-cluster-ip).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/against-cluster.sh" conformance
command -v kubectl >/dev/null || PATH="$(bin_dir k8s):$PATH"
source "$root/e2e/e2e-test.sh"
mode="${SIGNPOST_CONFORMANCE_MODE:-endpoints}"
case "$mode" in
  endpoints | cluster-ip) ;;
  *) echo "SIGNPOST_CONFORMANCE_MODE must be endpoints or cluster-ip, got '$mode'" >&2; exit 2 ;;
esac

# --- the specs: every one in these Describe blocks of test/e2e/network (plus the two below),
# except the skips. The names are matched against "[sig-network] <Describe> <It>". ---
focus=(
  # endpointslice.go
  '\[sig-network\] EndpointSlice '
  # endpointslicemirroring.go
  '\[sig-network\] EndpointSliceMirroring '
  # endpoints.go: the Endpoints API itself, and the endpoints controller's two specs
  '\[sig-network\] Endpoints should test the lifecycle of an Endpoint'
  '\[sig-network\] EndpointsController '
  # apiserver.go: the kubernetes Service's Endpoints and EndpointSlices (see the skip below)
  '\[sig-network\] API Server should have Endpoints and EndpointSlices pointing to API Server'
  # service_latency.go: 200 Services over one pod; time until each has its Endpoints
  '\[sig-network\] Service endpoints latency should not be very high'
)
skips=(
  # "regex|reason" (the reason is printed before the run)
  'EndpointSlice should support a Service with multiple ports specified in multiple EndpointSlices|connects to the ClusterIP from a pod (exec, kube-proxy): kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
  'EndpointSlice should support a Service with multiple endpoint IPs specified in multiple EndpointSlices|connects to the ClusterIP from a pod (exec, kube-proxy): kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
  'EndpointSliceMirroring should mirror a custom Endpoint with multiple subsets and same IP address|connects to the ClusterIP from a pod (exec, kube-proxy): kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
)

# --- ClusterIP mode: the specs about Service addresses, as the API server records them ---
if [[ "$mode" == cluster-ip ]]; then
  focus+=(
    # service_cidrs.go: the two APIs the API server's allocator keeps (Signpost publishes a
    # ServiceCIDR; every ClusterIP it writes becomes an IPAddress)
    '\[sig-network\] ServiceCIDR and IPAddress API '
    # service.go: Services created, updated, patched and deleted through the webhook
    '\[sig-network\] Services should find a service from listing all namespaces'
    '\[sig-network\] Services should complete a service status lifecycle'
    '\[sig-network\] Services should delete a collection of services'
    '\[sig-network\] Services should prevent NodePort collisions'
    '\[sig-network\] Services should check NodePort out-of-range'
    # service.go: type changes ClusterIP/NodePort <-> ExternalName (skipped below)
    '\[sig-network\] Services should be able to change the type from '
    # dual_stack.go: the families and addresses of single- and dual-stack ClusterIPs
    '\[sig-network\] \[Feature:IPv6DualStack\] should create a single stack service with cluster ip from primary service range'
    '\[sig-network\] \[Feature:IPv6DualStack\] should create service with ipv'
  )
  # The type changes themselves pass (the update succeeds, the ClusterIP is set or cleared, the
  # NodePort allocated); each spec then execs into a pod to reach the Service.
  skips+=(
    'Services should be able to change the type from ExternalName to ClusterIP|after the change, execs into a pod to reach the Service: kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
    'Services should be able to change the type from ExternalName to NodePort|after the change, execs into a pod to reach the Service: kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
    'Services should be able to change the type from ClusterIP to ExternalName|after the change, execs into a pod to resolve the name: kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
    'Services should be able to change the type from NodePort to ExternalName|after the change, execs into a pod to resolve the name: kwok pods run nothing; run on real nodes by e2e/real/conformance.sh'
  )
fi

# default/kubernetes' Endpoints and EndpointSlice are written by the API server's own endpoint
# reconciler, not by the endpoint controllers; the local API server runs with
# --endpoint-reconciler-type=none (it refuses a loopback address otherwise), so there is
# nothing to check there. Run the spec only where the API server writes them.
if ! kubectl get endpoints kubernetes -n default >/dev/null 2>&1; then
  skips+=('API Server should have Endpoints and EndpointSlices pointing to API Server|no default/kubernetes Endpoints: the API server runs without its endpoint reconciler')
fi

join() { local IFS='|'; echo "$*"; }
focus_re="$(join "${focus[@]}")"
skip_res=()
for s in "${skips[@]}"; do skip_res+=("${s%%|*}"); done
skip_re="$(join "${skip_res[@]}")"
if [[ "${SIGNPOST_CONFORMANCE_SKIPS:-1}" == 0 ]]; then
  skips=()
  skip_re='^$'
fi

step() { printf '\n==> %s\n' "$*"; }

step "e2e.test: build.sh e2e-test (cached after the first build)"
e2e_test_build
bin="${SIGNPOST_BIN:-$root/target/debug/signpost}"
[[ -x "$bin" ]] || { echo "FAIL: no signpost binary at $bin (cargo build -p signpost-controllers --bin signpost)" >&2; exit 1; }
default_report="$root/target/conformance"
[[ "$mode" == cluster-ip ]] && default_report="$root/target/conformance-cluster-ip"
report="${SIGNPOST_CONFORMANCE_REPORT:-$default_report}"
rm -rf "$report"
mkdir -p "$report"

free_port() { # first port from $1 nobody listens on
  local p="$1"
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
port="${SIGNPOST_CONFORMANCE_METRICS_PORT:-$(free_port 18092)}"
lease=signpost-conformance
# ClusterIP mode: Signpost's CIDRs, the ServiceCIDR it publishes for them, and the webhook.
cluster_ip_cidrs=(10.201.0.0/16 fd00:10:201::/64)
service_cidr_name=signpost-conformance
webhook_name=signpost-conformance
probe=signpost-conformance-probe
pid=
ipaddress_watch_pid=
cleanup() {
  if [[ "$mode" == cluster-ip ]]; then
    # The webhook first: no Service of anyone else may meet it once this run is over.
    kubectl delete mutatingwebhookconfiguration "$webhook_name" --ignore-not-found >/dev/null 2>&1 || true
  fi
  if [[ -n "$ipaddress_watch_pid" ]]; then kill -TERM "$ipaddress_watch_pid" 2>/dev/null || true; fi
  if [[ -n "$pid" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  kubectl -n default delete lease "$lease" --ignore-not-found >/dev/null 2>&1 || true
  if [[ "$mode" == cluster-ip ]]; then
    # The ServiceCIDR goes once the specs' namespaces (and their Services' addresses) have.
    kubectl delete servicecidr "$service_cidr_name" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kubectl -n default delete service "$probe" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kubectl wait --for=delete "servicecidr/$service_cidr_name" --timeout=90s >/dev/null 2>&1 || true
    if kubectl get servicecidr "$service_cidr_name" >/dev/null 2>&1; then
      echo "note: ServiceCIDR $service_cidr_name is still being deleted (addresses of it in use)" >&2
    fi
  fi
}
trap cleanup EXIT

step "Signpost's CRDs"
kubectl apply --server-side -f charts/signpost/crds/ >/dev/null
kubectl wait --for condition=Established --timeout=60s -f charts/signpost/crds/ >/dev/null

mode_args=(--service-cidr 10.198.0.0/16)
if [[ "$mode" == cluster-ip ]]; then
  step "ClusterIP mode: a certificate for 127.0.0.1, the webhook's port"
  # A ServiceCIDR of this name left terminating by a run just before cannot take addresses.
  kubectl wait --for=delete "servicecidr/$service_cidr_name" --timeout=90s >/dev/null 2>&1 || true
  webhook_port="${SIGNPOST_CONFORMANCE_WEBHOOK_PORT:-$(free_port 19443)}"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=signpost-conformance-webhook" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$report/webhook.key" -out "$report/webhook.crt" \
    2>/dev/null
  echo "    https://127.0.0.1:$webhook_port/mutate-services; CIDRs ${cluster_ip_cidrs[*]}"
  mode_args=(--cluster-ip-mode=true --webhook-addr "127.0.0.1:$webhook_port"
    --webhook-cert-file "$report/webhook.crt" --webhook-key-file "$report/webhook.key"
    --service-cidr-name "$service_cidr_name")
  for c in "${cluster_ip_cidrs[@]}"; do mode_args+=(--service-cidr "$c"); done
fi

step "signpost run ($bin; log in $report/signpost.log)"
"$bin" run --kubeconfig "$KUBECONFIG" "${mode_args[@]}" \
  --leader-election-namespace default --leader-election-name "$lease" \
  --metrics-addr "127.0.0.1:$port" >"$report/signpost.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 60))
until curl -fsS "http://127.0.0.1:$port/readyz" 2>/dev/null | grep -q leading; do
  if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "FAIL: signpost did not start leading within 60 s" >&2
    tail -n 30 "$report/signpost.log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "    leading (metrics on 127.0.0.1:$port)"

if [[ "$mode" == cluster-ip ]]; then
  step "ClusterIP mode: MutatingWebhookConfiguration $webhook_name (removed on exit)"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: $webhook_name
webhooks:
- name: services.signpost.dev
  clientConfig:
    url: https://127.0.0.1:$webhook_port/mutate-services
    caBundle: $(base64 -w0 "$report/webhook.crt")
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [services]
  failurePolicy: Ignore
  timeoutSeconds: 5
  sideEffects: NoneOnDryRun
  admissionReviewVersions: [v1]
EOF
  # The API server calls a new webhook once its informer has it: retry the probe briefly.
  deadline=$((SECONDS + 30))
  while :; do
    ip="$(probe_service_address default "$probe" "${cluster_ip_cidrs[*]}")" && break
    if ((SECONDS >= deadline)); then
      echo "FAIL: the probe Service got $ip, not an address in ${cluster_ip_cidrs[*]}" >&2
      tail -n 30 "$report/signpost.log" >&2
      exit 1
    fi
    sleep 1
  done
  echo "    a probe Service got $ip"
  ipaddresses_watch "$report"
fi

step "e2e.test $("$e2e_test" --version)"
echo "    focus: ${focus[*]}"
for s in "${skips[@]}"; do echo "    skip:  ${s%%|*}: ${s#*|}"; done
focus_args=(--ginkgo.focus="$focus_re")
if [[ -n "${SIGNPOST_CONFORMANCE_FOCUS:-}" ]]; then
  # Repeated --ginkgo.focus flags are OR-ed: narrow with one regex that needs both.
  echo "    narrowed to: $SIGNPOST_CONFORMANCE_FOCUS"
  # A focus entry whose own text matches it is kept whole (the text is part of every name
  # the entry matches); the others need it before or after them.
  n="$SIGNPOST_CONFORMANCE_FOCUS"
  narrowed=()
  for f in "${focus[@]}"; do
    if grep -qE -- "$n" <<<"${f//\\/}"; then narrowed+=("$f"); else narrowed+=("($f).*($n)" "($n).*($f)"); fi
  done
  focus_args=(--ginkgo.focus="$(join "${narrowed[@]}")")
fi
start=$SECONDS
status=0
e2e_test_run "$report" "${focus_args[@]}" --ginkgo.skip="$skip_re" || status=$?

step "results ($((SECONDS - start)) s; JUnit in $report/junit_01.xml)"
e2e_test_summary "$report"
if [[ "$mode" == cluster-ip ]]; then
  ipaddresses_check "$report" "${cluster_ip_cidrs[*]}" || { [[ "$status" != 0 ]] || status=1; }
fi
exit "$status"
