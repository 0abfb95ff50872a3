#!/usr/bin/env bash
# Makes a pod of the local control plane ready or not ready, as a failing readiness probe
# would: sets its Ready and ContainersReady conditions through the status subresource.
# kwok does not revert it. Usage: pod-ready.sh <namespace> <pod> true|false
set -euo pipefail
[[ $# -eq 3 && ( "$3" == true || "$3" == false ) ]] || { echo "usage: $0 <namespace> <pod> true|false" >&2; exit 2; }
status=False; [[ "$3" == true ]] && status=True
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
kubectl -n "$1" patch pod "$2" --subresource=status --type=strategic -p "{\"status\":{\"conditions\":[
  {\"type\":\"Ready\",\"status\":\"$status\",\"lastTransitionTime\":\"$now\"},
  {\"type\":\"ContainersReady\",\"status\":\"$status\",\"lastTransitionTime\":\"$now\"}]}}"
