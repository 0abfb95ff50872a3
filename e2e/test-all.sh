#!/usr/bin/env bash
# Every test, against the cluster KUBECONFIG names: unit, integration and e2e tests (cargo), then
# the Helm chart checks, the RBAC proof and Kubernetes' own e2e specs for Endpoints and
# EndpointSlices (e2e/conformance.sh), then those again with Signpost in ClusterIP mode, with the
# specs for ServiceCIDRs, IPAddresses and ClusterIP allocation. Run through e2e/with-cluster.sh
# (`just test`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$SECONDS
cargo test --workspace --all-features -- --nocapture
bash e2e/chart-check.sh
bash e2e/rbac-check.sh
bash e2e/conformance.sh
SIGNPOST_CONFORMANCE_MODE=cluster-ip bash e2e/conformance.sh
echo "==> all tests passed in $((SECONDS - start)) s"
