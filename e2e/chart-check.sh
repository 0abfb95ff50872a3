#!/usr/bin/env bash
# Checks the Helm chart charts/signpost against the cluster KUBECONFIG names:
#   1. helm lint (default values and a dual-stack override), --strict
#   2. the values schema rejects bad values (CIDRs, enums, ranges, unknown keys)
#   3. helm template: default, dual-stack, single replica without leader election, ServiceMonitor
#   4. the CRDs applied server-side, then every rendered manifest applied with
#      --dry-run=server into a throwaway namespace labelled for the restricted Pod Security
#      Standard (a violation is a failure)
#   5. least privilege: the ServiceAccount, ClusterRole, Role and bindings applied for real,
#      `kubectl auth can-i --list` as the ServiceAccount: no Secrets, no `*`, the expected
#      verbs present and nothing more; then removed again
# Exits non-zero on the first failure. Usage: e2e/with-cluster.sh e2e/chart-check.sh
# (or `just chart-check`); needs KUBECONFIG.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
chart=charts/signpost

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '    ok: %s\n' "$*"; }

: "${KUBECONFIG:?set KUBECONFIG (or run through e2e/with-cluster.sh / just chart-check)}"

# --- tools: helm from the cache (built from the Go module proxy on a fresh machine), kubectl
# from the same Kubernetes release as the local control plane unless one is on PATH. ---
here=e2e/controlplane
# shellcheck source=controlplane/lib.sh
source "$here/lib.sh"
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
ns="signpost-chart-check-$suffix"      # throwaway release namespace
release="sp-check-$suffix"             # unique: cluster-scoped names never meet a real install
rbac_applied=""
cleanup() {
  local rc=$?
  if [[ -n "$rbac_applied" && -f "$rbac_applied" ]]; then
    kubectl delete -f "$rbac_applied" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
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

# --- 3. render ---
render() { # name, helm args...
  local name="$1"; shift
  step "helm template ($name)"
  "$helm" template "$release" "$chart" --namespace "$ns" "$@" > "$work/$name.yaml"
  echo "    $(grep -c '^kind:' "$work/$name.yaml") objects: $(grep '^kind:' "$work/$name.yaml" | awk '{print $2}' | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')"
}
render default
render dual-stack -f "$work/values-dual-stack.yaml"
render single -f "$work/values-single.yaml"
render servicemonitor --set serviceMonitor.enabled=true

expect() { # file, fixed string, description
  grep -qF -- "$2" "$work/$1.yaml" || fail "$1: $3 (no '$2')"
  ok "$1: $3"
}
expect_not() {
  if grep -qF -- "$2" "$work/$1.yaml"; then fail "$1: $3 (found '$2')"; fi
  ok "$1: $3"
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

# --- 4. the API server accepts the manifests ---
step "kubectl apply --server-side -f $chart/crds/"
kubectl apply --server-side --force-conflicts -f "$chart/crds/"
kubectl wait --for=condition=Established --timeout=60s \
  crd/dnsrecords.signpost.dev crd/serviceips.signpost.dev

step "namespace $ns (throwaway; Pod Security: warn and audit at restricted)"
kubectl create namespace "$ns"
kubectl label namespace "$ns" pod-security.kubernetes.io/warn=restricted \
  pod-security.kubernetes.io/audit=restricted >/dev/null

for name in default dual-stack single; do
  step "kubectl apply --dry-run=server ($name)"
  kubectl apply --dry-run=server -f - < "$work/$name.yaml" 2>"$work/apply.err" \
    || { cat "$work/apply.err" >&2; fail "the API server refused the $name manifests"; }
  cat "$work/apply.err" >&2
  if grep -qi 'podsecurity\|violate' "$work/apply.err"; then
    fail "$name: the pod template violates the restricted Pod Security Standard"
  fi
done

# --- 5. least privilege ---
sa="$release-signpost"
step "RBAC for real: ServiceAccount, ClusterRole, Role and bindings of release $release in $ns"
"$helm" template "$release" "$chart" --namespace "$ns" \
  --show-only templates/serviceaccount.yaml \
  --show-only templates/clusterrole.yaml --show-only templates/clusterrolebinding.yaml \
  --show-only templates/role.yaml --show-only templates/rolebinding.yaml > "$work/rbac.yaml"
rbac_applied="$work/rbac.yaml"
kubectl apply -f "$work/rbac.yaml"
grep -q "^  name: $sa\$" "$work/rbac.yaml" || fail "no ServiceAccount named $sa in the rendering"
as="system:serviceaccount:$ns:$sa"

# The ServiceAccount exists now, so a Pod that uses it can be admitted.
step "a Pod from the Deployment's template, dry-run in a namespace that enforces restricted"
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
"$helm" template "$release" "$chart" --namespace "$ns" --show-only templates/deployment.yaml \
  > "$work/deployment.yaml"
labels="$(kubectl create --dry-run=client -f "$work/deployment.yaml" -o jsonpath='{.spec.template.metadata.labels}')"
spec="$(kubectl create --dry-run=client -f "$work/deployment.yaml" -o jsonpath='{.spec.template.spec}')"
printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"signpost-psa-check","labels":%s},"spec":%s}\n' \
  "$labels" "$spec" > "$work/pod.json"
kubectl -n "$ns" create --dry-run=server -f "$work/pod.json" \
  || fail "the pod template is refused under the restricted Pod Security Standard"

# Wait until the authorizer sees the binding (the RBAC cache follows within moments).
for _ in $(seq 40); do
  [[ "$(kubectl auth can-i create endpointslices.discovery.k8s.io --as="$as" -n default 2>/dev/null || true)" == yes ]] && break
  sleep 0.5
done

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
  cat <<'EOF'
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
EOF
}
want_lease() { echo "leases.coordination.k8s.io get create update"; }
pairs() { awk '{ for (i = 2; i <= NF; i++) print $1, $i }' | sort -u; }

check_can_i() { # namespace, label, want-function...
  local n="$1" label="$2"; shift 2
  # What any ServiceAccount of the namespace may do without the chart (system:basic-user,
  # ClusterTrustBundle discovery, ...): can-i --list as one that no binding names.
  can_i_pairs "system:serviceaccount:$ns:nobody-$suffix" "$n" > "$work/baseline.txt"
  can_i_pairs "$as" "$n" > "$work/got.txt"
  cat "$work/can-i.txt"
  for f in "$@"; do "$f"; done | pairs > "$work/want.txt"
  sort -u "$work/want.txt" "$work/baseline.txt" > "$work/allowed.txt"
  local bad=0
  if grep -E '^(UNPARSED|NONRESOURCE-WILDCARD) ' "$work/got.txt"; then bad=1; fi
  if grep -iE '^[^ ]*secret' "$work/got.txt"; then echo "    ^ Secrets access"; bad=1; fi
  if grep -E '\*' "$work/got.txt"; then echo "    ^ a wildcard"; bad=1; fi
  if comm -23 "$work/got.txt" "$work/allowed.txt" | grep .; then echo "    ^ more than needed"; bad=1; fi
  if comm -13 "$work/got.txt" "$work/want.txt" | grep .; then echo "    ^ missing"; bad=1; fi
  ((bad == 0)) || fail "can-i --list as $as ($label) is not the least privilege"
  ok "$label: $(wc -l < "$work/got.txt") resource verbs = the chart's $(wc -l < "$work/want.txt") + $(comm -12 "$work/got.txt" "$work/baseline.txt" | wc -l) that every ServiceAccount has; no Secrets, no '*'"
}

step "kubectl auth can-i --list --as=$as -n default (cluster-wide rules)"
check_can_i default "cluster-wide" want_cluster
step "kubectl auth can-i --list --as=$as -n $ns (plus the Lease Role)"
check_can_i "$ns" "release namespace" want_cluster want_lease

step "spot checks with kubectl auth can-i"
can() { # expected(yes|no) verb resource [namespace]
  local want="$1" verb="$2" res="$3" n="${4:-default}" got
  got="$(kubectl auth can-i "$verb" "$res" --as="$as" -n "$n" 2>/dev/null || true)"
  [[ "$got" == "$want" ]] || fail "can-i $verb $res -n $n: got '$got', want '$want'"
  ok "can-i $verb $res -n $n: $got"
}
can no get secrets
can no list secrets "$ns"
can no '*' '*'
can no update serviceips.signpost.dev
can no delete pods
can no create services
can yes create endpointslices.discovery.k8s.io
can yes patch dnsrecords.signpost.dev/status
can yes create events.events.k8s.io
can yes update leases.coordination.k8s.io "$ns"
can no update leases.coordination.k8s.io default
can no delete leases.coordination.k8s.io "$ns"

step "remove the RBAC objects and the namespace"
kubectl delete -f "$work/rbac.yaml" --wait=false
rbac_applied=""
