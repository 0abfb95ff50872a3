#!/usr/bin/env bash
# Proves the chart's RBAC is enough: installs the chart with Helm into the cluster KUBECONFIG
# names (on the local control plane its pods are kwok fakes that run nothing), then runs the
# locally built `signpost run` with a kubeconfig that holds a token of the chart's
# ServiceAccount, and checks that the first seed's app converges (Endpoints, EndpointSlice,
# ServiceIP, DNSRecord). Uninstalls everything afterwards. Usage: e2e/with-cluster.sh e2e/rbac-check.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/against-cluster.sh" rbac-check
"$here/build.sh" helm >/dev/null
helm="$(bin_dir helm)/helm"
command -v kubectl >/dev/null || PATH="$(bin_dir k8s):$PATH"
bin="${SIGNPOST_BIN:-$root/target/debug/signpost}"
release_ns=signpost-rbac
app_ns=rbac-demo
port=18090
work="$(mktemp -d)"
pid=

cleanup() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  kubectl delete namespace "$app_ns" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  "$helm" uninstall signpost --namespace "$release_ns" --wait >/dev/null 2>&1 || true
  kubectl delete namespace "$release_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }
wait_for() { # what seconds command...
  local what="$1" deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: timed out waiting for $what" >&2
      tail -n 30 "$work/signpost.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

step "helm install signpost into $release_ns"
"$helm" install signpost charts/signpost --namespace "$release_ns" --create-namespace \
  --set 'serviceCIDRs={10.199.0.0/16}' >/dev/null
sa="$(kubectl -n "$release_ns" get serviceaccounts -l app.kubernetes.io/instance=signpost -o jsonpath='{.items[0].metadata.name}')"
echo "    ServiceAccount $release_ns/$sa"

step "kubeconfig with a token of $sa"
token="$(kubectl -n "$release_ns" create token "$sa" --duration=1h)"
server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca_data="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
if [[ -n "$ca_data" ]]; then
  base64 -d <<<"$ca_data" > "$work/ca.crt"
else
  cp "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')" "$work/ca.crt"
fi
[[ -s "$work/ca.crt" ]] || { echo "FAIL: could not find the cluster's CA certificate in KUBECONFIG" >&2; exit 1; }
cat > "$work/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority: "$work/ca.crt"}}]
users: [{name: sa, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: sa}}]
current-context: c
KCFG

step "signpost run as $sa (leader election in $release_ns)"
"$bin" run --kubeconfig "$work/kubeconfig" --service-cidr 10.199.0.0/16 \
  --leader-election-namespace "$release_ns" --leader-election-name signpost-rbac-check \
  --metrics-addr "127.0.0.1:$port" >"$work/signpost.log" 2>&1 &
pid=$!
wait_for "signpost to lead and be ready" 60 bash -c "curl -fsS http://127.0.0.1:$port/readyz | grep -q leading"

step "the first seed's app in $app_ns"
kubectl create namespace "$app_ns" >/dev/null
sed "s/namespace: demo/namespace: $app_ns/" e2e/demo/hostnames.yaml | kubectl apply -f - >/dev/null
start=$SECONDS
endpoints_ready() { [[ "$(kubectl -n "$app_ns" get endpoints hostnames -o jsonpath='{.subsets[*].addresses[*].ip}' | wc -w)" == 3 ]]; }
slice_ready() { [[ "$(kubectl -n "$app_ns" get endpointslices -l kubernetes.io/service-name=hostnames -o jsonpath='{.items[*].endpoints[*].addresses[0]}' | wc -w)" == 3 ]]; }
claimed() { kubectl get serviceips -l "signpost.dev/service-namespace=$app_ns" -o name | grep -q .; }
recorded() { kubectl -n "$app_ns" get dnsrecord hostnames -o jsonpath='{.status.addressSummary}' | grep -q '^10\.199\.'; }
wait_for "Endpoints with 3 addresses" 60 endpoints_ready
wait_for "an EndpointSlice with 3 endpoints" 30 slice_ready
wait_for "a ServiceIP claim" 30 claimed
wait_for "a DNSRecord with the VIP" 30 recorded
echo "    converged in $((SECONDS - start)) s with only the chart's RBAC"
kubectl -n "$app_ns" get endpoints,endpointslices,dnsrecords
kubectl get serviceips -l "signpost.dev/service-namespace=$app_ns"
# An RBAC denial reads 'User "system:serviceaccount:…" cannot <verb> resource …' (other 403s,
# such as writes into a namespace being deleted, are not about permissions).
denied='cannot (get|list|watch|create|update|patch|delete) resource'
if grep -Eq "$denied" "$work/signpost.log"; then
  echo "FAIL: the chart's ServiceAccount was denied an API call:" >&2
  grep -E "$denied" "$work/signpost.log" | head -5 >&2
  exit 1
fi
echo "==> rbac-check: PASS"
