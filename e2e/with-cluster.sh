#!/usr/bin/env bash
# Runs a command against a cluster: the one KUBECONFIG names if it is set, otherwise the local
# control plane, which is started for the command and stopped afterwards, even when the
# command fails (unless it was already running before, then it is left running). With
# SIGNPOST_REAL_NODES=N the local control plane gets N real nodes too (needs root).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${KUBECONFIG:-}" ]]; then
  exec "$@"
fi
here="$here/controlplane"
source "$here/lib.sh"
source "$here/cluster.sh"
cp_here="$here"
if cluster_healthy; then
  echo "==> using the running local control plane"
  if [[ "${SIGNPOST_REAL_NODES:-0}" != 0 ]]; then "$repo/e2e/nodes/up.sh" "$SIGNPOST_REAL_NODES"; fi
else
  "$cp_here/up.sh"
  trap '"$cp_here/down.sh"' EXIT
fi
export KUBECONFIG="$KUBECONFIG_OUT"
export PATH="$(bin_dir k8s):$PATH"
"$@"
