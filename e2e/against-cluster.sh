# Sourced first by the scripts that check Signpost against the cluster KUBECONFIG names
# (chart-check, rbac-check, conformance): runs them from the repository's root, stops with one
# line when KUBECONFIG is unset, and loads the local control plane's helpers (bin_dir, ...).
# Usage: source "$(dirname "${BASH_SOURCE[0]}")/against-cluster.sh" <just recipe>
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${KUBECONFIG:?set KUBECONFIG (or run through e2e/with-cluster.sh / just $1)}"
here=e2e/controlplane
# shellcheck source=controlplane/lib.sh
source "$here/lib.sh"
