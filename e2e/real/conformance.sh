#!/usr/bin/env bash
# Kubernetes' own e2e specs that need real pods, run by e2e.test (the control plane's release)
# on the real nodes while the chart runs Signpost in ClusterIP mode: cluster-ip.sh calls it once
# its own steps have passed, with the chart installed and its webhook called (issue 30).
#
#   Services' type changes [Conformance]: ExternalName -> ClusterIP and -> NodePort (the
#     webhook gives the updated Service Signpost's address, kube-proxy routes it, an exec pod
#     reaches it by name, ClusterIP and every node's NodePort), ClusterIP and NodePort ->
#     ExternalName (the address is released; the name resolves through `signpost dns`).
#   The other Services specs that send traffic from a pod through a Service: basic and multiport
#     endpoints, NodePort, session affinity, unready pods, no endpoints (refused), port changes.
#   The EndpointSlice and mirroring specs that connect to a ClusterIP from a pod.
#   The DNS [Conformance] specs, answered by `signpost dns`.
#   Service CIDRs: a Service that asks for an address of another ServiceCIDR keeps it.
# The kwok run (e2e/conformance.sh) has to skip all of these: kwok's pods run nothing.
#
# The specs' pods run Kubernetes' agnhost and glibc-dns-testing images, built here (agnhost
# from the same release: e2e/images/build.sh) and imported into the nodes under the names
# e2e.test asks for.
# e2e.test's pods carry no toleration, so for the run the real nodes lose their
# signpost.dev/real-node taint and the kwok nodes get signpost.dev/conformance-run (a
# non-blocking taint for e2e.test); both are put back on exit, however it exits. Every Service
# address the API server records during the run must be in Signpost's CIDRs (or the one a spec
# asks for by name), or the run fails.
#
# Usage: e2e/real/conformance.sh <Signpost's CIDR>...   (KUBECONFIG names the cluster)
# Environment: SIGNPOST_REAL_CONFORMANCE_FOCUS (a regex that replaces the specs' focus).
# Output: e2e.test's log and JUnit report in target/real/conformance. Exits with e2e.test's
# status (1 if an address was not Signpost's).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../against-cluster.sh" e2e-real-cluster-ip
command -v kubectl >/dev/null || PATH="$(bin_dir k8s):$PATH"
source "$root/e2e/e2e-test.sh"
(($# > 0)) || { echo "usage: e2e/real/conformance.sh <Signpost's CIDR>..." >&2; exit 2; }
cidrs="$*"
report="$root/target/real/conformance"
rm -rf "$report"
mkdir -p "$report"
# The real nodes' label and taint (e2e/nodes/lib.sh), and the kwok nodes' taint for the run.
real=signpost.dev/real-node
run_taint=signpost.dev/conformance-run

step() { printf '\n==> %s\n' "$*"; }

focus="${SIGNPOST_REAL_CONFORMANCE_FOCUS:-$(
  IFS='|'
  specs=(
    # service.go: every [Conformance] spec that sends traffic through a Service (the four type
    # changes among them), and the ones that check what kube-proxy makes of Signpost's
    # endpoints (unready pods published, ports added and removed, no endpoints refused)
    '\[sig-network\] Services should be able to change the type from '
    '\[sig-network\] Services should serve (a basic endpoint|multiport endpoints) from pods'
    '\[sig-network\] Services should serve endpoints on same port and different protocols'
    '\[sig-network\] Services should be able to create a functioning NodePort service'
    '\[sig-network\] Services should (have session affinity work|be able to switch session affinity) for (service with type clusterIP|NodePort service)'
    '\[sig-network\] Services should be updated after adding or deleting ports'
    '\[sig-network\] Services should create endpoints for unready pods'
    '\[sig-network\] Services should be rejected when no endpoints exist'
    '\[sig-network\] Services should be able to update service type to NodePort listening on same port number but different protocols'
    # dns.go: every [Conformance] spec; `signpost dns` is the pods' DNS server, queried from
    # agnhost (musl's side upstream) and glibc-dns-testing pods (A, SRV, PTR, pod hostnames,
    # ExternalName CNAMEs, search paths)
    '\[sig-network\] DNS should (provide DNS for the cluster|provide /etc/hosts entries for the cluster|provide DNS for services|resolve DNS of partial qualified names for services|provide DNS for pods for Hostname|provide DNS for pods for Subdomain|provide DNS for ExternalName services|support configurable pod DNS nameservers)'
    # service_cidrs.go: a second ServiceCIDR beside Signpost's, a NodePort Service asking for
    # its own address there (left to it by the webhook), reached from a pod
    '\[sig-network\] Service CIDRs should create Services and serve on different Service CIDRs'
    # endpointslice.go, endpointslicemirroring.go: the specs that reach a ClusterIP from a pod
    '\[sig-network\] EndpointSlice should support a Service with multiple ports specified in multiple EndpointSlices'
    '\[sig-network\] EndpointSlice should support a Service with multiple endpoint IPs specified in multiple EndpointSlices'
    '\[sig-network\] EndpointSliceMirroring should mirror a custom Endpoint with multiple subsets and same IP address'
  )
  echo "${specs[*]}"
)}"

node_names() { kubectl get nodes -l "$1" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }
mapfile -t real_nodes < <(node_names "$real=true")
mapfile -t other_nodes < <(node_names "$real!=true")
((${#real_nodes[@]} > 0)) || { echo "FAIL: no real nodes (label $real=true) to run pods on" >&2; exit 1; }
restore_nodes() {
  if ((${#other_nodes[@]} > 0)); then
    kubectl taint nodes "${other_nodes[@]}" "$run_taint-" >/dev/null 2>&1 || true
  fi
  kubectl taint nodes "${real_nodes[@]}" "$real=true:NoSchedule" --overwrite >/dev/null 2>&1 \
    || echo "note: could not put the $real taint back on ${real_nodes[*]}" >&2
}
ipaddress_watch_pid=
cleanup() {
  local status=$?
  trap - EXIT
  [[ -z "$ipaddress_watch_pid" ]] || kill -TERM "$ipaddress_watch_pid" 2>/dev/null || true
  restore_nodes
  exit "$status"
}
trap cleanup EXIT

step "e2e.test: build.sh e2e-test (cached after the first build)"
e2e_test_build

step "the specs' pods on the real nodes only: ${real_nodes[*]} (restored on exit)"
if ((${#other_nodes[@]} > 0)); then
  kubectl taint nodes "${other_nodes[@]}" "$run_taint=elsewhere:NoSchedule" --overwrite >/dev/null
fi
kubectl taint nodes "${real_nodes[@]}" "$real:NoSchedule-" >/dev/null 2>&1 || true
kubectl get nodes -o custom-columns='NAME:.metadata.name,TAINTS:.spec.taints[*].key'

ipaddresses_watch "$report"
step "e2e.test $("$e2e_test" --version)"
echo "    focus: $focus"
start=$SECONDS
status=0
e2e_test_run "$report" --ginkgo.focus="$focus" \
  --non-blocking-taints="$run_taint,node-role.kubernetes.io/control-plane" \
  --kubectl-path "$(command -v kubectl)" --ginkgo.v || status=$?

step "results ($((SECONDS - start)) s; JUnit in $report/junit_01.xml)"
e2e_test_summary "$report"
# The Service CIDRs spec asks for an address of its own ServiceCIDR (203.0.113.0/24, the
# documentation range): an address a user chose, which the webhook rightly leaves alone.
ipaddresses_check "$report" "$cidrs 203.0.113.0/24" || { [[ "$status" != 0 ]] || status=1; }
exit "$status"
