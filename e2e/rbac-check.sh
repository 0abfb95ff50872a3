#!/usr/bin/env bash
# Proves the chart's RBAC is enough: installs the chart with Helm into the cluster KUBECONFIG
# names (on the local control plane its pods are kwok fakes that run nothing), then runs the
# locally built `signpost run` with a kubeconfig that holds a token of the chart's
# ServiceAccount, and checks that the first seed's app converges (Endpoints, EndpointSlice,
# ServiceIP, DNSRecord). Then ClusterIP mode: the release upgraded with clusterIPMode=true and
# `signpost run --cluster-ip-mode` started again with the same token, the chart's generated
# certificate and POD_NAME of one of the chart's pods: it publishes its ServiceCIDR, lists and
# watches IPAddresses, labels that pod as the webhook's leader, answers an AdmissionReview over
# TLS (the chart's CA, the webhook Service's DNS name) with an address of its CIDR, and claims
# the address of a Service created with one. No API call of either run may be Forbidden.
# Uninstalls everything afterwards. Usage: e2e/with-cluster.sh e2e/rbac-check.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/against-cluster.sh" rbac-check
"$here/build.sh" helm >/dev/null
helm="$(bin_dir helm)/helm"
command -v kubectl >/dev/null || PATH="$(bin_dir k8s):$PATH"
bin="${SIGNPOST_BIN:-$root/target/debug/signpost}"
release_ns=signpost-rbac
app_ns=rbac-demo
port=18090
service_cidr_name=signpost-rbac-check
work="$(mktemp -d)"
log="$work/signpost.log"   # the running signpost's, shown when a wait times out
pid=

cleanup() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  kubectl delete namespace "$app_ns" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  "$helm" uninstall signpost --namespace "$release_ns" --wait >/dev/null 2>&1 || true
  kubectl delete namespace "$release_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  # Signpost never deletes its ServiceCIDR; it goes once no address of it is in use.
  kubectl delete servicecidr "$service_cidr_name" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }
wait_for() { # what seconds command...
  local what="$1" deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: timed out waiting for $what" >&2
      tail -n 30 "$log" >&2 || true
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
no_denial() { # log
  if grep -Eq "$denied" "$1"; then
    echo "FAIL: the chart's ServiceAccount was denied an API call:" >&2
    grep -E "$denied" "$1" | head -5 >&2
    exit 1
  fi
}
no_denial "$work/signpost.log"
echo "    no API call denied"

# --- ClusterIP mode ---
step "ClusterIP mode: helm upgrade signpost --set clusterIPMode=true"
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
"$helm" upgrade signpost charts/signpost --namespace "$release_ns" --reuse-values \
  --set clusterIPMode=true --set "serviceCIDRName=$service_cidr_name" >/dev/null
# The chart's webhook configuration calls the webhook Service, which the API server reaches
# only where it can reach the leader's pod (the chart's pods here run nothing): removed, so no
# Service create of the cluster waits on it. The webhook is called directly below.
kubectl delete mutatingwebhookconfiguration signpost --ignore-not-found >/dev/null
kubectl -n "$release_ns" rollout status deploy/signpost --timeout=60s >/dev/null
# A pod of the new ReplicaSet (one being replaced would go away under the label).
pod="$(kubectl -n "$release_ns" get pods -l app.kubernetes.io/instance=signpost,app.kubernetes.io/name=signpost \
  --field-selector=status.phase=Running \
  -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}' | head -1)"
[[ -n "$pod" ]] || { echo "FAIL: no running pod of the chart's Deployment" >&2; exit 1; }
secret=signpost-webhook-tls
for key in tls.crt tls.key ca.crt; do
  kubectl -n "$release_ns" get secret "$secret" -o jsonpath="{.data.${key//./\\.}}" | base64 -d > "$work/webhook-$key"
  [[ -s "$work/webhook-$key" ]] || { echo "FAIL: the chart's Secret $secret has no $key" >&2; exit 1; }
done
echo "    the chart's certificate: $(openssl x509 -in "$work/webhook-tls.crt" -noout -subject)"
webhook_port=18443
while (exec 3<>"/dev/tcp/127.0.0.1/$webhook_port") 2>/dev/null; do webhook_port=$((webhook_port + 1)); done

log="$work/signpost-cip.log"
step "signpost run --cluster-ip-mode as $sa (POD_NAME=$pod; webhook on 127.0.0.1:$webhook_port)"
POD_NAME="$pod" POD_NAMESPACE="$release_ns" "$bin" run --kubeconfig "$work/kubeconfig" \
  --service-cidr 10.199.0.0/16 --cluster-ip-mode=true --service-cidr-name "$service_cidr_name" \
  --webhook-addr "127.0.0.1:$webhook_port" \
  --webhook-cert-file "$work/webhook-tls.crt" --webhook-key-file "$work/webhook-tls.key" \
  --leader-election-namespace "$release_ns" --leader-election-name signpost-rbac-check \
  --metrics-addr "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
wait_for "signpost to lead and be ready in ClusterIP mode" 60 bash -c "curl -fsS http://127.0.0.1:$port/readyz | grep -q leading"
published() { [[ "$(kubectl get servicecidr "$service_cidr_name" -o jsonpath='{.spec.cidrs[*]}')" == 10.199.0.0/16 ]]; }
wait_for "ServiceCIDR $service_cidr_name over 10.199.0.0/16" 30 published
kubectl get servicecidr "$service_cidr_name"
labelled() { [[ "$(kubectl -n "$release_ns" get pods -l signpost.dev/webhook=leader -o name)" == "pod/$pod" ]]; }
wait_for "pod $pod labelled signpost.dev/webhook=leader (and no other)" 30 labelled
echo "    pod $pod: signpost.dev/webhook=leader"

# The webhook over TLS as the API server calls it: the chart's CA, the Service's DNS name. Not a
# dry run (the webhook leaves those to the API server): each answer holds its address until a
# repair period passes with no Service claiming it.
dns_name="signpost-webhook.$release_ns.svc"
review() {
  curl -fsS --max-time 5 --cacert "$work/webhook-ca.crt" --resolve "$dns_name:$webhook_port:127.0.0.1" \
    -H 'Content-Type: application/json' "https://$dns_name:$webhook_port/mutate-services" \
    -d "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"rbac-check\",\"operation\":\"CREATE\",\"dryRun\":false,\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"probe\",\"namespace\":\"$app_ns\"},\"spec\":{\"type\":\"ClusterIP\",\"ports\":[{\"port\":80}]}}}}"
}
chosen() { review | sed -n 's/.*"patch":"\([^"]*\)".*/\1/p' | base64 -d | grep -o '"value":"10\.199\.[0-9.]*"'; }
wait_for "the webhook to choose an address of 10.199.0.0/16" 30 chosen
echo "    POST https://$dns_name:$webhook_port/mutate-services -> $(chosen | head -1)"

# A Service created with an address of the ServiceCIDR: the API server accepts it (and records
# an IPAddress), and Signpost claims what spec.clusterIP says.
address=10.199.255.77
# (The API server takes addresses of a new ServiceCIDR once its informer has it.)
wait_for "the API server to accept a Service at $address" 30 \
  kubectl -n "$app_ns" create service clusterip pinned --tcp=80 --clusterip="$address"
claimed_pinned() {
  kubectl get serviceips -l "signpost.dev/service-namespace=$app_ns,signpost.dev/service-name=pinned" \
    -o jsonpath='{.items[*].spec.address}' | grep -qx "$address"
}
wait_for "the ServiceIP claim of $app_ns/pinned at $address" 30 claimed_pinned
kubectl get ipaddress "$address"
kubectl get serviceips -l "signpost.dev/service-namespace=$app_ns,signpost.dev/service-name=pinned"
no_denial "$log"
echo "    no API call denied in ClusterIP mode"
echo "==> rbac-check: PASS"
