#!/usr/bin/env bash
# Kubernetes' own e2e specs for Endpoints and EndpointSlices, run from `e2e.test` of the same
# release as the control plane, with Signpost in place of kube-controller-manager's endpoints,
# endpointslice and endpointslice-mirroring controllers (the local control plane runs
# kube-controller-manager without them). Only the specs that check API objects run: the local
# control plane's nodes are kwok fakes, whose pods are Running and Ready with an IP but run
# nothing, so no spec may exec into a pod or send traffic through a Service.
#
# What it does: builds e2e.test (cached, e2e/controlplane/build.sh e2e-test), applies
# Signpost's CRDs, starts `signpost run` against KUBECONFIG and waits until it leads, runs
# e2e.test with the focus and skips below, then stops Signpost. The JUnit report, e2e.test's
# output and Signpost's log go to target/conformance/. docs/conformance.md lists the specs and
# their results. Usage: e2e/with-cluster.sh e2e/conformance.sh (or `just conformance`); needs
# KUBECONFIG. Exits with e2e.test's status.
#
# Environment: SIGNPOST_BIN (default target/debug/signpost), SIGNPOST_CONFORMANCE_METRICS_PORT
# (default: the first free port from 18092), SIGNPOST_CONFORMANCE_FOCUS (a regex that narrows
# the run further, e.g. 'Mirroring'), SIGNPOST_CONFORMANCE_REPORT (default target/conformance).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${KUBECONFIG:?set KUBECONFIG (or run through e2e/with-cluster.sh / just conformance)}"
here=e2e/controlplane
# shellcheck source=controlplane/lib.sh
source "$here/lib.sh"
command -v kubectl >/dev/null || PATH="$(bin_dir k8s):$PATH"

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
  'EndpointSlice should support a Service with multiple ports specified in multiple EndpointSlices|connects to the ClusterIP from a pod (exec, kube-proxy): kwok pods run nothing'
  'EndpointSlice should support a Service with multiple endpoint IPs specified in multiple EndpointSlices|connects to the ClusterIP from a pod (exec, kube-proxy): kwok pods run nothing'
  'EndpointSliceMirroring should mirror a custom Endpoint with multiple subsets and same IP address|connects to the ClusterIP from a pod (exec, kube-proxy): kwok pods run nothing'
)

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

step() { printf '\n==> %s\n' "$*"; }

step "e2e.test: build.sh e2e-test (cached after the first build)"
"$here/build.sh" e2e-test
e2e_test="$(bin_dir k8s)/e2e.test"
bin="${SIGNPOST_BIN:-$root/target/debug/signpost}"
[[ -x "$bin" ]] || { echo "FAIL: no signpost binary at $bin (cargo build -p signpost-controllers --bin signpost)" >&2; exit 1; }
report="${SIGNPOST_CONFORMANCE_REPORT:-$root/target/conformance}"
rm -rf "$report"
mkdir -p "$report"

port="${SIGNPOST_CONFORMANCE_METRICS_PORT:-}"
if [[ -z "$port" ]]; then
  port=18092
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
fi
lease=signpost-conformance
pid=
cleanup() {
  if [[ -n "$pid" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  kubectl -n default delete lease "$lease" --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "Signpost's CRDs"
kubectl apply --server-side -f charts/signpost/crds/ >/dev/null
kubectl wait --for condition=Established --timeout=60s -f charts/signpost/crds/ >/dev/null

step "signpost run ($bin; log in $report/signpost.log)"
"$bin" run --kubeconfig "$KUBECONFIG" --service-cidr 10.198.0.0/16 \
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

step "e2e.test $("$e2e_test" --version)"
echo "    focus: ${focus[*]}"
for s in "${skips[@]}"; do echo "    skip:  ${s%%|*}: ${s#*|}"; done
focus_args=(--ginkgo.focus="$focus_re")
if [[ -n "${SIGNPOST_CONFORMANCE_FOCUS:-}" ]]; then
  # Repeated --ginkgo.focus flags are OR-ed: narrow with one regex that needs both.
  echo "    narrowed to: $SIGNPOST_CONFORMANCE_FOCUS"
  n="$SIGNPOST_CONFORMANCE_FOCUS"
  focus_args=(--ginkgo.focus="($focus_re).*($n)|($n).*($focus_re)")
fi
start=$SECONDS
set +e
"$e2e_test" --kubeconfig "$KUBECONFIG" --provider skeleton \
  "${focus_args[@]}" --ginkgo.skip="$skip_re" \
  --ginkgo.no-color --ginkgo.silence-skips --ginkgo.timeout=1h \
  --report-dir "$report" --e2e-output-dir "$report" \
  2>&1 | tee "$report/e2e.log"
status="${PIPESTATUS[0]}"
set -e

step "results ($((SECONDS - start)) s; JUnit in $report/junit_01.xml)"
if [[ -f "$report/junit_01.xml" ]]; then
  # One line per spec that ran: PASS or FAIL and its name (suite set-up nodes left out).
  awk '
    /<testcase / {
      match($0, /name="[^"]*"/); name = substr($0, RSTART + 6, RLENGTH - 7)
      state = "PASS"; open = ($0 !~ /\/>/)
    }
    open && /<skipped/ { state = "SKIP" }
    open && /<failure/ { state = "FAIL" }
    /<\/testcase>/ || (/<testcase / && !open) {
      if (name ~ /^\[It\] / && state != "SKIP") print "    " state "  " substr(name, 6)
      name = ""; open = 0
    }' "$report/junit_01.xml"
fi
exit "$status"
