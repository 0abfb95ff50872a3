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
# up.sh leaves a running control plane as it is (adding the real nodes asked for); only one
# started here is stopped afterwards.
was_running=0
cluster_healthy && was_running=1
# The trap comes first: an up.sh that fails half-way leaves what it started stopped too.
[[ "$was_running" == 1 ]] || trap '"$cp_here/down.sh"' EXIT
"$cp_here/up.sh"
export KUBECONFIG="$KUBECONFIG_OUT"
export PATH="$(bin_dir k8s):$PATH"
"$@"
