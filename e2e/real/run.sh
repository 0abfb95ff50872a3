#!/usr/bin/env bash
# `just demo-real`, `just e2e-real` and `just e2e-real-cluster-ip`: builds the images and loads
# them into the local real nodes (unless SIGNPOST_IMAGE names an image already on the cluster's
# nodes, as on kind), then runs the journeys named as arguments, in order, against the cluster
# KUBECONFIG names:
#   seeds       journey.sh: the seeds' journey (the default)
#   cluster-ip  cluster-ip.sh: ClusterIP mode, Signpost's addresses as the Services' ClusterIPs
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
journeys=("$@")
[[ ${#journeys[@]} -gt 0 ]] || journeys=(seeds)
for journey in "${journeys[@]}"; do
  case "$journey" in
    seeds | cluster-ip) ;;
    *) echo "run.sh: unknown journey '$journey' (seeds, cluster-ip)" >&2; exit 2 ;;
  esac
done
if [[ -z "${SIGNPOST_IMAGE:-}" ]]; then
  "$repo/e2e/images/build.sh"
  "$repo/e2e/nodes/import.sh"
fi
for journey in "${journeys[@]}"; do
  case "$journey" in
    seeds) "$repo/e2e/real/journey.sh" ;;
    cluster-ip) "$repo/e2e/real/cluster-ip.sh" ;;
  esac
done
