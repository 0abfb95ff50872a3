#!/usr/bin/env bash
# `just demo-real` and `just e2e-real`: builds the images and loads them into the local real
# nodes (unless SIGNPOST_IMAGE names an image already on the cluster's nodes, as on kind), then
# runs the journey (journey.sh) against the cluster KUBECONFIG names.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${SIGNPOST_IMAGE:-}" ]]; then
  "$repo/e2e/images/build.sh"
  "$repo/e2e/nodes/import.sh"
fi
exec "$repo/e2e/real/journey.sh"
