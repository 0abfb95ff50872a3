# Sourced first by every benchmark part: strict mode, a failing command named, and the
# repository's root ($root) as the working directory.
set -Eeuo pipefail
part_name="$(basename "$0")"
# A failing command stops the benchmark; say which, rather than exit with no word.
trap 'echo "$part_name: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# Runs the part again under e2e/with-cluster.sh when KUBECONFIG names no cluster: the local
# control plane, started for the run if it is not running. Call as `needs_cluster "$@"`.
needs_cluster() {
  [[ -n "${KUBECONFIG:-}" ]] || exec e2e/with-cluster.sh "$0" "$@"
}
