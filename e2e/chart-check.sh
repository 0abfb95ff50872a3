#!/usr/bin/env bash
# Checks the Helm chart charts/signpost against the cluster KUBECONFIG names:
#   1. helm lint (default values, a dual-stack override, dns and proxy on, ClusterIP mode),
#      --strict
#   2. the values schema rejects bad values (CIDRs, enums, ranges, unknown keys)
#   3. helm template: default, dual-stack, single replica without leader election, ServiceMonitor,
#      dns (two replicas, one replica, with its ServiceMonitor), proxy, ClusterIP mode (generated
#      certificate: failurePolicy Ignore, a caBundle that signed a certificate whose SAN is the
#      webhook Service's DNS name; and a certificate of one's own)
#   4. the CRDs applied server-side, then every rendered manifest applied with
#      --dry-run=server: the controller's and dns's into a throwaway namespace labelled for the
#      restricted Pod Security Standard (a violation is a failure), the proxy's into one at
#      privileged
#   5. Pod Security for real: a Pod from each pod template, dry-run where the level is
#      enforced: controller and dns admitted under restricted; the proxy refused under
#      baseline for exactly hostNetwork, its hostPort and NET_ADMIN, admitted under privileged
#   6. least privilege: the ServiceAccounts, ClusterRoles, Role and bindings of the controller,
#      dns and proxy applied for real, and of the controller in ClusterIP mode (a second
#      release), `kubectl auth can-i --list` as each ServiceAccount: no Secrets, no `*`, the
#      expected verbs present and nothing more; then removed again
# Exits non-zero on the first failure. Usage: e2e/with-cluster.sh e2e/chart-check.sh
# (or `just chart-check`); needs KUBECONFIG.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/against-cluster.sh" chart-check
chart=charts/signpost

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '    ok: %s\n' "$*"; }

# --- tools: helm from the cache (built from the Go module proxy on a fresh machine), kubectl
# from the same Kubernetes release as the local control plane unless one is on PATH. ---
step "helm: build.sh helm (cached after the first build)"
"$here/build.sh" helm
helm="$(bin_dir helm)/helm"
[[ -x "$helm" ]] || fail "no helm at $helm"
if ! command -v kubectl >/dev/null; then
  PATH="$(bin_dir k8s):$PATH"
fi
command -v kubectl >/dev/null || fail "no kubectl on PATH (run e2e/controlplane/build.sh k8s)"
echo "    $("$helm" version --short 2>/dev/null || "$helm" version)"
echo "    kubectl $(kubectl version --client -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1)"

work="$(mktemp -d)"
suffix="$(date +%s)-$$"
ns="signpost-chart-check-$suffix"      # throwaway release namespace (restricted)
pns="$ns-node"                         # throwaway namespace for the proxy (privileged)
release="sp-check-$suffix"             # unique: cluster-scoped names never meet a real install
rbac_applied=()
cleanup() {
  local rc=$? f
  for f in "${rbac_applied[@]}"; do
    kubectl delete -f "$f" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
  kubectl delete namespace "$ns" "$pns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
  if [[ $rc -eq 0 ]]; then echo $'\n==> chart-check: PASS'; else echo $'\n==> chart-check: FAILED' >&2; fi
}
trap cleanup EXIT

cat > "$work/values-dual-stack.yaml" <<'EOF'
serviceCIDRs:
  - 10.200.0.0/16
  - fd00:10:200::/108
clusterDomain: example.internal
maxEndpointsPerSlice: 250
repairInterval: 5m
logFormat: text
watchNamespace: demo
replicaCount: 3
leaderElection:
  leaseDuration: 15s
  renewDeadline: 10s
  retryPeriod: 2s
metrics:
  bindAddress: "[::]"
EOF
cat > "$work/values-single.yaml" <<'EOF'
replicaCount: 1
leaderElection:
  enabled: false
EOF

# --- 1. lint ---
step "helm lint $chart (default values)"
"$helm" lint "$chart" --strict
step "helm lint $chart (dual-stack values)"
"$helm" lint "$chart" --strict -f "$work/values-dual-stack.yaml"
step "helm lint $chart (dns and proxy on, dns ServiceMonitor on)"
"$helm" lint "$chart" --strict --set dns.enabled=true --set dns.serviceMonitor.enabled=true \
  --set proxy.enabled=true
step "helm lint $chart (ClusterIP mode)"
"$helm" lint "$chart" --strict --set clusterIPMode=true

# --- 2. the schema and the template checks refuse bad values ---
step "values.schema.json and template checks reject bad values"
reject() { # description, helm args...
  local what="$1"; shift
  if "$helm" template x "$chart" "$@" >/dev/null 2>"$work/err"; then
    fail "accepted $what ($*)"
  fi
  ok "rejects $what: $(grep -v "^Error: values\|^signpost:" "$work/err" | grep -m1 . | sed 's/^[- ]*//' | cut -c1-110 || true)"
}
reject "a prefix longer than /32" --set 'serviceCIDRs={10.0.0.0/33}'
reject "an address without a prefix" --set 'serviceCIDRs={10.0.0.1}'
reject "an IPv6 CIDR wider than /64" --set 'serviceCIDRs={fd00::/48}'
reject "no serviceCIDRs" --set 'serviceCIDRs=null'
printf 'serviceCIDRs: []\n' > "$work/values-empty.yaml"
reject "an empty serviceCIDRs list" -f "$work/values-empty.yaml"
reject "logFormat xml" --set logFormat=xml
reject "maxEndpointsPerSlice 0" --set maxEndpointsPerSlice=0
reject "maxEndpointsPerSlice 1001" --set maxEndpointsPerSlice=1001
reject "repairInterval 0s" --set repairInterval=0s
reject "repairInterval 1d" --set repairInterval=1d
reject "metrics.port 70000" --set metrics.port=70000
reject "an unknown top-level key" --set replicas=3
reject "2 replicas without leader election" --set leaderElection.enabled=false
reject "an unknown dns key" --set dns.enabled=true --set dns.replicas=3
reject "an unknown dns.podDisruptionBudget key" --set dns.podDisruptionBudget.maxUnavailable=1
reject "dns.podDisruptionBudget.minAvailable 150%" --set dns.podDisruptionBudget.minAvailable=150%
reject "an unknown dns.serviceMonitor key" --set dns.serviceMonitor.port=metrics
reject "dns.serviceMonitor.interval 1x" --set dns.serviceMonitor.interval=1x
reject "dns.maxUdpSize 511" --set dns.maxUdpSize=511
reject "dns.containerPort 53 (the pod is not root)" --set dns.containerPort=53
reject "an unknown proxy key" --set proxy.privileged=true
reject "a proxy interface name over 15 characters" --set proxy.interface=signpost0123456789
reject "an unknown webhook key" --set clusterIPMode=true --set webhook.failurePolicy=Fail
reject "webhook.port 443 (the pod is not root)" --set clusterIPMode=true --set webhook.port=443
reject "webhook.timeoutSeconds 31" --set clusterIPMode=true --set webhook.timeoutSeconds=31
reject "webhook.tls.secretName without a caBundle" --set clusterIPMode=true --set webhook.tls.secretName=mine
reject "webhook.tls.caBundle without a secretName" --set clusterIPMode=true --set webhook.tls.caBundle=QUJD
reject "clusterIPMode yes" --set clusterIPMode=yes

# --- 3. render ---
render() { # name, helm args... (namespace: $render_ns, else $ns)
  local name="$1"; shift
  step "helm template ($name)"
  "$helm" template "$release" "$chart" --namespace "${render_ns:-$ns}" "$@" > "$work/$name.yaml"
  echo "    $(grep -c '^kind:' "$work/$name.yaml") objects: $(grep '^kind:' "$work/$name.yaml" | awk '{print $2}' | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')"
}
render default
render dual-stack -f "$work/values-dual-stack.yaml"
render single -f "$work/values-single.yaml"
render servicemonitor --set serviceMonitor.enabled=true
render dns --set dns.enabled=true
render dns-single --set dns.enabled=true --set dns.replicaCount=1
render dns-servicemonitor --set dns.enabled=true --set dns.serviceMonitor.enabled=true
# The proxy needs the privileged Pod Security level, so it is rendered for a namespace of its own.
render_ns="$pns" render proxy --set proxy.enabled=true
render cluster-ip --set clusterIPMode=true
printf '%s' 'not a CA, only its base64' | base64 -w0 > "$work/own-ca.b64"
render cluster-ip-own-cert --set clusterIPMode=true --set webhook.tls.secretName=my-webhook-cert \
  --set "webhook.tls.caBundle=$(cat "$work/own-ca.b64")" --set webhook.timeoutSeconds=5 \
  --set watchNamespace=demo

expect() { # file, fixed string, description
  grep -qF -- "$2" "$work/$1.yaml" || fail "$1: $3 (no '$2')"
  ok "$1: $3"
}
expect_not() {
  if grep -qF -- "$2" "$work/$1.yaml"; then fail "$1: $3 (found '$2')"; fi
  ok "$1: $3"
}
expect_kind() { # file, kind, count, description
  local got
  got="$(grep -c "^kind: $2\$" "$work/$1.yaml" || true)"
  [[ "$got" == "$3" ]] || fail "$1: $4 ($got × $2, want $3)"
  ok "$1: $4"
}
expect default "replicas: 2" "2 replicas"
expect default "- --service-cidr=10.200.0.0/16" "the default service CIDR"
expect default "- --log-format=json" "JSON logs"
expect default "- --metrics-addr=0.0.0.0:8080" "metrics on 8080"
expect default 'image: "ghcr.io/signpost-dev/signpost:0.1.0"' "image tag = appVersion"
expect default "kind: PodDisruptionBudget" "a PodDisruptionBudget"
expect default "topologyKey: kubernetes.io/hostname" "anti-affinity on the hostname"
expect default "fieldPath: metadata.namespace" "POD_NAMESPACE from the downward API"
expect default "path: /readyz" "a readiness probe"
expect default "readOnlyRootFilesystem: true" "a read-only root filesystem"
expect_not default "kind: ServiceMonitor" "no ServiceMonitor by default"
expect_not default "NET_ADMIN" "no NET_ADMIN"
expect dual-stack "- --service-cidr=fd00:10:200::/108" "the IPv6 service CIDR"
expect dual-stack "- --metrics-addr=[::]:8080" "metrics on [::]"
expect dual-stack "- --leader-election-lease-duration=15s" "lease duration"
expect dual-stack "- --namespace=demo" "a namespace scope"
expect single "- --leader-elect=false" "leader election off"
expect_not single "kind: PodDisruptionBudget" "no PDB for one replica"
expect_not single "kind: Role" "no Lease Role without leader election"
expect servicemonitor "kind: ServiceMonitor" "a ServiceMonitor when enabled"
expect_not default "signpost-dns" "no dns objects by default"
expect_not default "kind: DaemonSet" "no proxy by default"
expect_kind dns Deployment 2 "the controller's and the dns Deployment"
expect_kind dns PodDisruptionBudget 2 "a PodDisruptionBudget for each"
expect_kind dns ClusterRole 2 "a ClusterRole for each"
expect_kind dns ServiceMonitor 0 "no ServiceMonitor by default"
expect dns "- --listen=0.0.0.0:5353" "dns listens on 5353 in the pod"
expect dns "targetPort: dns-tcp" "the dns Service maps 53/TCP to it"
expect dns "targetPort: dns-metrics" "the dns Service carries the metrics port"
expect dns "- --metrics-addr=0.0.0.0:9153" "dns metrics on 9153"
expect dns "- --max-udp-size=1232" "dns --max-udp-size"
expect dns "- --max-upstream-in-flight=256" "dns --max-upstream-in-flight"
expect_not dns "--upstream=" "no --upstream unless set"
expect_not dns "NET_ADMIN" "no NET_ADMIN with dns"
expect_kind dns-single PodDisruptionBudget 1 "no dns PDB for one dns replica (the controller's stays)"
expect_kind dns-servicemonitor ServiceMonitor 1 "a dns ServiceMonitor when enabled"
expect dns-servicemonitor "app.kubernetes.io/name: signpost-dns" "selecting the dns Service"
expect dns-servicemonitor "- port: metrics" "on its metrics port"
expect_kind proxy DaemonSet 1 "a proxy DaemonSet"
expect_kind proxy ClusterRole 2 "a ClusterRole for the controller and one for the proxy"
expect proxy "hostNetwork: true" "the proxy on the host's network"
expect proxy 'add: ["NET_ADMIN", "NET_BIND_SERVICE"]' "with NET_ADMIN and NET_BIND_SERVICE only"
expect proxy "- --interface=signpost0" "proxy --interface"
expect proxy "- --max-connections=16384" "proxy --max-connections"
expect proxy "namespace: $pns" "in its own namespace"
expect_not default "kind: MutatingWebhookConfiguration" "no webhook by default"
expect_not default "--cluster-ip-mode" "ClusterIP mode off by default"
expect_not default "servicecidrs" "no ServiceCIDR rights by default"
expect_not default "ipaddresses" "no IPAddress rights by default"
expect_kind cluster-ip MutatingWebhookConfiguration 1 "ClusterIP mode: a MutatingWebhookConfiguration"
expect_kind cluster-ip Secret 1 "a generated certificate Secret"
expect_kind cluster-ip Service 2 "the metrics and the webhook Service"
expect_kind cluster-ip Role 2 "the Lease Role and the webhook's pod-label Role"
expect cluster-ip "- --cluster-ip-mode=true" "--cluster-ip-mode"
expect cluster-ip "- --service-cidr-name=signpost" "--service-cidr-name"
expect cluster-ip "- --webhook-addr=0.0.0.0:9443" "--webhook-addr"
expect cluster-ip "- --webhook-cert-file=/etc/signpost/webhook/tls.crt" "--webhook-cert-file"
expect cluster-ip "- --webhook-key-file=/etc/signpost/webhook/tls.key" "--webhook-key-file"
expect cluster-ip "containerPort: 9443" "the webhook's container port"
expect cluster-ip "secretName: $release-signpost-webhook-tls" "the Secret as a volume"
expect cluster-ip "readOnly: true" "mounted read-only"
expect cluster-ip "signpost.dev/webhook: leader" "the webhook Service selects the leader's pod"
expect cluster-ip "failurePolicy: Ignore" "failurePolicy Ignore"
expect cluster-ip "sideEffects: NoneOnDryRun" "sideEffects NoneOnDryRun"
expect cluster-ip "timeoutSeconds: 2" "timeoutSeconds 2"
expect cluster-ip 'operations: ["CREATE", "UPDATE"]' "on Services' CREATE and UPDATE"
expect cluster-ip "path: /mutate-services" "the binary's path"
expect cluster-ip 'verbs: ["get", "create"]' "servicecidrs: get, create"
expect cluster-ip 'verbs: ["patch"]' "pods: patch (the leader label)"
expect_not cluster-ip "namespaceSelector" "every namespace without watchNamespace"
expect_kind cluster-ip-own-cert Secret 0 "no generated Secret with webhook.tls.secretName"
expect cluster-ip-own-cert "secretName: my-webhook-cert" "the given Secret as a volume"
expect cluster-ip-own-cert "caBundle: $(cat "$work/own-ca.b64")" "the given caBundle"
expect cluster-ip-own-cert "kubernetes.io/metadata.name: demo" "only watchNamespace's Services"
expect cluster-ip-own-cert "timeoutSeconds: 5" "webhook.timeoutSeconds"

# The generated certificate: signed by the caBundle the API server is given, for the DNS name
# the API server asks for (<service>.<namespace>.svc of the configuration's clientConfig).
step "ClusterIP mode: the generated certificate, the caBundle and the webhook Service"
field() { # rendering, key -> its first value (a "key: value" line)
  awk -v k="$2:" '$1 == k { print $2; exit }' "$work/$1.yaml"
}
ca_bundle="$(field cluster-ip caBundle)"
[[ -n "$ca_bundle" ]] || fail "cluster-ip: the webhook configuration has no caBundle"
[[ "$(field cluster-ip ca.crt)" == "$ca_bundle" ]] || fail "cluster-ip: the Secret's ca.crt is not the caBundle"
base64 -d <<<"$ca_bundle" > "$work/webhook-ca.crt"
field cluster-ip tls.crt | base64 -d > "$work/webhook.crt"
field cluster-ip tls.key | base64 -d > "$work/webhook.key"
openssl verify -CAfile "$work/webhook-ca.crt" "$work/webhook.crt" >/dev/null \
  || fail "cluster-ip: the certificate is not signed by the caBundle"
ok "cluster-ip: the caBundle (= the Secret's ca.crt) signed the serving certificate"
webhook_svc="$(awk '/^kind: MutatingWebhookConfiguration/ { m = 1 } m && $1 == "service:" { s = 1; next } s && $1 == "name:" { print $2; exit }' "$work/cluster-ip.yaml")"
webhook_svc_ns="$(awk '/^kind: MutatingWebhookConfiguration/ { m = 1 } m && $1 == "service:" { s = 1; next } s && $1 == "namespace:" { print $2; exit }' "$work/cluster-ip.yaml")"
[[ "$webhook_svc" == "$release-signpost-webhook" && "$webhook_svc_ns" == "$ns" ]] \
  || fail "cluster-ip: the webhook configuration calls $webhook_svc_ns/$webhook_svc, not $ns/$release-signpost-webhook"
grep -qx "  name: $webhook_svc" "$work/cluster-ip.yaml" || fail "cluster-ip: no object named $webhook_svc"
ok "cluster-ip: the configuration calls Service $webhook_svc_ns/$webhook_svc on port $(awk '/^kind: MutatingWebhookConfiguration/ { m = 1 } m && $1 == "port:" { print $2; exit }' "$work/cluster-ip.yaml")"
sans="$(openssl x509 -in "$work/webhook.crt" -noout -ext subjectAltName | tail -n +2 | tr -d ' ')"
grep -qE "(^|,)DNS:$webhook_svc\.$webhook_svc_ns\.svc(,|\$)" <<<"$sans" \
  || fail "cluster-ip: the certificate's SAN ($sans) lacks $webhook_svc.$webhook_svc_ns.svc"
ok "cluster-ip: the certificate's SAN names $webhook_svc.$webhook_svc_ns.svc ($sans)"
[[ "$(openssl x509 -in "$work/webhook.crt" -noout -pubkey | sha256sum)" == "$(openssl pkey -in "$work/webhook.key" -pubout | sha256sum)" ]] \
  || fail "cluster-ip: tls.key is not the certificate's key"
ok "cluster-ip: tls.key is the certificate's key"

# --- 4. the API server accepts the manifests ---
step "kubectl apply --server-side -f $chart/crds/"
kubectl apply --server-side --force-conflicts -f "$chart/crds/"
kubectl wait --for=condition=Established --timeout=60s \
  crd/dnsrecords.signpost.dev crd/serviceips.signpost.dev

step "namespace $ns (throwaway; Pod Security: warn and audit at restricted)"
kubectl create namespace "$ns"
kubectl label namespace "$ns" pod-security.kubernetes.io/warn=restricted \
  pod-security.kubernetes.io/audit=restricted >/dev/null

step "namespace $pns (throwaway, for the proxy; Pod Security: privileged)"
kubectl create namespace "$pns"
kubectl label namespace "$pns" pod-security.kubernetes.io/enforce=privileged \
  pod-security.kubernetes.io/warn=privileged pod-security.kubernetes.io/audit=privileged >/dev/null

for name in default dual-stack single dns dns-single proxy cluster-ip cluster-ip-own-cert; do
  level=restricted
  [[ "$name" == proxy ]] && level=privileged
  step "kubectl apply --dry-run=server ($name, Pod Security $level)"
  kubectl apply --dry-run=server -f - < "$work/$name.yaml" 2>"$work/apply.err" \
    || { cat "$work/apply.err" >&2; fail "the API server refused the $name manifests"; }
  cat "$work/apply.err" >&2
  if grep -qi 'podsecurity\|violate' "$work/apply.err"; then
    fail "$name: a pod template violates the $level Pod Security Standard"
  fi
done

# --- 5. Pod Security for real, and 6. least privilege ---
sa="$release-signpost"
dns_sa="$release-signpost-dns"
proxy_sa="$release-signpost-proxy"
step "RBAC for real: ServiceAccounts, ClusterRoles, Role and bindings of release $release"
"$helm" template "$release" "$chart" --namespace "$ns" --set dns.enabled=true \
  --show-only templates/serviceaccount.yaml \
  --show-only templates/clusterrole.yaml --show-only templates/clusterrolebinding.yaml \
  --show-only templates/role.yaml --show-only templates/rolebinding.yaml \
  --show-only templates/dns-rbac.yaml > "$work/rbac.yaml"
"$helm" template "$release" "$chart" --namespace "$pns" --set proxy.enabled=true \
  --show-only templates/proxy-rbac.yaml > "$work/proxy-rbac.yaml"
# ClusterIP mode's controller as a second release (its own ClusterRole and Roles).
cip_release="$release-cip"
"$helm" template "$cip_release" "$chart" --namespace "$ns" --set clusterIPMode=true \
  --show-only templates/serviceaccount.yaml \
  --show-only templates/clusterrole.yaml --show-only templates/clusterrolebinding.yaml \
  --show-only templates/role.yaml --show-only templates/rolebinding.yaml > "$work/cip-rbac.yaml"
rbac_applied=("$work/rbac.yaml" "$work/proxy-rbac.yaml" "$work/cip-rbac.yaml")
kubectl apply -f "$work/rbac.yaml"
kubectl apply -f "$work/proxy-rbac.yaml"
kubectl apply -f "$work/cip-rbac.yaml"
for name in "$sa" "$dns_sa"; do
  grep -q "^  name: $name\$" "$work/rbac.yaml" || fail "no ServiceAccount named $name in the rendering"
done
grep -q "^  name: $proxy_sa\$" "$work/proxy-rbac.yaml" || fail "no ServiceAccount named $proxy_sa in the rendering"
as="system:serviceaccount:$ns:$sa"
dns_as="system:serviceaccount:$ns:$dns_sa"
proxy_as="system:serviceaccount:$pns:$proxy_sa"
cip_sa="$cip_release-signpost"
grep -q "^  name: $cip_sa\$" "$work/cip-rbac.yaml" || fail "no ServiceAccount named $cip_sa in the rendering"
cip_as="system:serviceaccount:$ns:$cip_sa"

# The ServiceAccounts exist now, so Pods that use them can be admitted.
pod_from() { # rendering, template, pod name -> $work/<pod name>.json
  "$helm" template "$release" "$chart" --namespace "${render_ns:-$ns}" "${@:4}" \
    --show-only "templates/$2" > "$work/$1-workload.yaml"
  local labels spec
  labels="$(kubectl create --dry-run=client -f "$work/$1-workload.yaml" -o jsonpath='{.spec.template.metadata.labels}')"
  spec="$(kubectl create --dry-run=client -f "$work/$1-workload.yaml" -o jsonpath='{.spec.template.spec}')"
  printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","labels":%s},"spec":%s}\n' \
    "$3" "$labels" "$spec" > "$work/$3.json"
}
enforce() { kubectl label --overwrite namespace "$1" "pod-security.kubernetes.io/enforce=$2" >/dev/null; }

step "Pods from the controller's and dns's templates, dry-run where restricted is enforced"
enforce "$ns" restricted
pod_from controller deployment.yaml signpost-psa-check
pod_from dns dns-deployment.yaml signpost-dns-psa-check --set dns.enabled=true
pod_from controller-cip deployment.yaml signpost-cip-psa-check --set clusterIPMode=true
for pod in signpost-psa-check signpost-dns-psa-check signpost-cip-psa-check; do
  kubectl -n "$ns" create --dry-run=server -f "$work/$pod.json" \
    || fail "$pod: the pod template is refused under the restricted Pod Security Standard"
done

# The proxy needs the privileged level, and no other: baseline refuses it for exactly the host
# network, the hostPort its metrics port becomes on the host network, and NET_ADMIN (baseline
# allows NET_BIND_SERVICE). Anything else in the refusal is a new privilege to justify.
step "a Pod from the proxy's template: refused under baseline (and why), admitted under privileged"
render_ns="$pns" pod_from proxy proxy-daemonset.yaml signpost-proxy-psa-check --set proxy.enabled=true
enforce "$pns" baseline
if kubectl -n "$pns" create --dry-run=server -f "$work/signpost-proxy-psa-check.json" \
  >/dev/null 2>"$work/psa.err"; then
  fail "the proxy pod is admitted under baseline: then its namespace need not be privileged (docs/helm.md)"
fi
cat "$work/psa.err"
grep -q 'violates PodSecurity "baseline' "$work/psa.err" || fail "the proxy pod was refused, but not by Pod Security"
# The violations, one per line: "name (details)" items separated by ", " outside parentheses.
sed -n 's/.*violates PodSecurity "baseline[^"]*": //p' "$work/psa.err" | awk '{
  depth = 0; item = ""
  for (i = 1; i <= length($0); i++) {
    c = substr($0, i, 1)
    if (c == "(") depth++
    if (c == ")") depth--
    if (c == "," && depth == 0) { print item; item = ""; i++; continue }
    item = item c
  }
  if (item != "") print item
}' | sed 's/ (.*//' | sort -u > "$work/psa-got.txt"
printf '%s\n' "host namespaces" "hostPort" "non-default capabilities" | sort > "$work/psa-want.txt"
if ! diff "$work/psa-want.txt" "$work/psa-got.txt"; then
  fail "the proxy pod's baseline violations are not exactly host namespaces, hostPort, non-default capabilities"
fi
grep -q 'hostNetwork=true' "$work/psa.err" || fail "host namespaces: not hostNetwork"
grep -q '"NET_ADMIN"' "$work/psa.err" || fail "non-default capabilities: not NET_ADMIN"
if grep -q '"NET_BIND_SERVICE"' "$work/psa.err"; then fail "baseline should allow NET_BIND_SERVICE"; fi
ok "baseline refuses exactly: $(paste -sd, "$work/psa-got.txt" | sed 's/,/, /g') (hostNetwork, NET_ADMIN)"
enforce "$pns" privileged
kubectl -n "$pns" create --dry-run=server -f "$work/signpost-proxy-psa-check.json" \
  || fail "the proxy pod is refused even under privileged"
ok "privileged admits the proxy pod"

# Wait until the authorizer sees the bindings (the RBAC cache follows within moments).
wait_can() { # identity, verb, resource
  for _ in $(seq 40); do
    [[ "$(kubectl auth can-i "$2" "$3" --as="$1" -n default 2>/dev/null || true)" == yes ]] && return 0
    sleep 0.5
  done
  fail "$1 still cannot $2 $3 after 20 s"
}
wait_can "$as" create endpointslices.discovery.k8s.io
wait_can "$dns_as" watch dnsrecords.signpost.dev
wait_can "$proxy_as" watch serviceips.signpost.dev
wait_can "$cip_as" watch ipaddresses.networking.k8s.io

# `can-i --list` as "resource verb" lines, one per verb; non-resource URL rows are checked
# for wildcard verbs here and left out (they come from system:discovery, not from the chart).
can_i_pairs() { # identity, namespace
  kubectl auth can-i --list --as="$1" -n "$2" | tee "$work/can-i.txt" | awk '
    NR == 1 { next }
    {
      line = $0; sub(/[ \t]+$/, "", line)
      if (!match(line, /\[[^]]*\]$/)) { print "UNPARSED " line; next }
      verbs = substr(line, RSTART + 1, RLENGTH - 2)
      if (line ~ /^[ \t]/) {
        if (verbs ~ /\*/) print "NONRESOURCE-WILDCARD " line
        next
      }
      split(line, f, /[ \t]+/); n = split(verbs, v, " ")
      for (i = 1; i <= n; i++) print f[1], v[i]
    }' | sort -u
}
# What the chart must grant (and nothing more), and what every authenticated identity may do.
want_cluster() {
  cat <<'WANT'
services get list watch
services/finalizers update
pods list watch
nodes list watch
endpoints get list watch create update delete
endpointslices.discovery.k8s.io get list watch create update delete
serviceips.signpost.dev get list watch create delete
dnsrecords.signpost.dev get list watch create update patch delete
dnsrecords.signpost.dev/status get update patch
events.events.k8s.io create patch
customresourcedefinitions.apiextensions.k8s.io get
WANT
}
want_lease() { echo "leases.coordination.k8s.io get create update"; }
# ClusterIP mode: the ServiceCIDR (read, created once) and the API server's IPAddresses (watch
# cache), cluster-wide; in the release namespace, the leader's label on its own pod.
want_cluster_ip() {
  cat <<'WANT'
servicecidrs.networking.k8s.io get create
ipaddresses.networking.k8s.io list watch
WANT
}
want_webhook_pods() { echo "pods patch"; }
# signpost dns: reads DNSRecords, publishes InvalidDNSRecord Warning Events.
want_dns() {
  cat <<'WANT'
dnsrecords.signpost.dev get list watch
events.events.k8s.io create patch
WANT
}
# signpost proxy: reads its four inputs, writes nothing.
want_proxy() {
  cat <<'WANT'
dnsrecords.signpost.dev get list watch
serviceips.signpost.dev get list watch
services get list watch
endpointslices.discovery.k8s.io get list watch
WANT
}
pairs() { awk '{ for (i = 2; i <= NF; i++) print $1, $i }' | sort -u; }

check_can_i() { # identity, namespace, label, want-function...
  local who="$1" n="$2" label="$3"; shift 3
  # What any ServiceAccount may do without the chart (system:basic-user, ClusterTrustBundle
  # discovery, ...): can-i --list as one that no binding names, in the same namespace.
  can_i_pairs "system:serviceaccount:${who#system:serviceaccount:}-nobody-$suffix" "$n" > "$work/baseline.txt"
  can_i_pairs "$who" "$n" > "$work/got.txt"
  cat "$work/can-i.txt"
  for f in "$@"; do "$f"; done | pairs > "$work/want.txt"
  sort -u "$work/want.txt" "$work/baseline.txt" > "$work/allowed.txt"
  local bad=0
  if grep -E '^(UNPARSED|NONRESOURCE-WILDCARD) ' "$work/got.txt"; then bad=1; fi
  if grep -iE '^[^ ]*secret' "$work/got.txt"; then echo "    ^ Secrets access"; bad=1; fi
  if grep -E '\*' "$work/got.txt"; then echo "    ^ a wildcard"; bad=1; fi
  if comm -23 "$work/got.txt" "$work/allowed.txt" | grep .; then echo "    ^ more than needed"; bad=1; fi
  if comm -13 "$work/got.txt" "$work/want.txt" | grep .; then echo "    ^ missing"; bad=1; fi
  ((bad == 0)) || fail "can-i --list as $who ($label) is not the least privilege"
  ok "$label: $(wc -l < "$work/got.txt") resource verbs = the chart's $(wc -l < "$work/want.txt") + $(comm -12 "$work/got.txt" "$work/baseline.txt" | wc -l) that every ServiceAccount has; no Secrets, no '*'"
}

step "kubectl auth can-i --list --as=$as -n default (cluster-wide rules)"
check_can_i "$as" default "controller, cluster-wide" want_cluster
step "kubectl auth can-i --list --as=$as -n $ns (plus the Lease Role)"
check_can_i "$as" "$ns" "controller, release namespace" want_cluster want_lease
step "kubectl auth can-i --list --as=$cip_as -n default and -n $ns (ClusterIP mode)"
check_can_i "$cip_as" default "controller in ClusterIP mode, cluster-wide" want_cluster want_cluster_ip
check_can_i "$cip_as" "$ns" "controller in ClusterIP mode, release namespace" want_cluster want_cluster_ip want_lease want_webhook_pods
step "kubectl auth can-i --list --as=$dns_as -n default and -n $ns"
check_can_i "$dns_as" default "dns, cluster-wide" want_dns
check_can_i "$dns_as" "$ns" "dns, release namespace (no Lease)" want_dns
step "kubectl auth can-i --list --as=$proxy_as -n default and -n $pns"
check_can_i "$proxy_as" default "proxy, cluster-wide" want_proxy
check_can_i "$proxy_as" "$pns" "proxy, its namespace" want_proxy

step "spot checks with kubectl auth can-i"
can() { # identity, expected(yes|no) verb resource [namespace]
  local who="$1" want="$2" verb="$3" res="$4" n="${5:-default}" got
  got="$(kubectl auth can-i "$verb" "$res" --as="$who" -n "$n" 2>/dev/null || true)"
  [[ "$got" == "$want" ]] || fail "${who##*:}: can-i $verb $res -n $n: got '$got', want '$want'"
  ok "${who##*:}: can-i $verb $res -n $n: $got"
}
can "$as" no get secrets
can "$as" no list secrets "$ns"
can "$as" no '*' '*'
can "$as" no update serviceips.signpost.dev
can "$as" no delete pods
can "$as" no create services
can "$as" yes create endpointslices.discovery.k8s.io
can "$as" yes patch dnsrecords.signpost.dev/status
can "$as" yes create events.events.k8s.io
can "$as" yes update leases.coordination.k8s.io "$ns"
can "$as" no update leases.coordination.k8s.io default
can "$as" no delete leases.coordination.k8s.io "$ns"
can "$as" no create servicecidrs.networking.k8s.io
can "$as" no patch pods "$ns"
can "$cip_as" yes create servicecidrs.networking.k8s.io
can "$cip_as" no update servicecidrs.networking.k8s.io
can "$cip_as" no delete servicecidrs.networking.k8s.io
can "$cip_as" no create ipaddresses.networking.k8s.io
can "$cip_as" yes patch pods "$ns"
can "$cip_as" no patch pods default
can "$cip_as" no update pods "$ns"
can "$cip_as" no get secrets "$ns"
can "$dns_as" yes watch dnsrecords.signpost.dev
can "$dns_as" no update dnsrecords.signpost.dev
can "$dns_as" no list services
can "$dns_as" no list endpointslices.discovery.k8s.io
can "$dns_as" no get secrets "$ns"
can "$dns_as" no update leases.coordination.k8s.io "$ns"
can "$proxy_as" yes watch endpointslices.discovery.k8s.io
can "$proxy_as" no list endpoints
can "$proxy_as" no list pods
can "$proxy_as" no update services
can "$proxy_as" no create events.events.k8s.io
can "$proxy_as" no delete serviceips.signpost.dev
can "$proxy_as" no get secrets "$pns"

step "remove the RBAC objects and the namespaces"
kubectl delete -f "$work/rbac.yaml" --wait=false
kubectl delete -f "$work/proxy-rbac.yaml" --wait=false
kubectl delete -f "$work/cip-rbac.yaml" --wait=false
rbac_applied=()
