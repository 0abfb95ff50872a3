#!/usr/bin/env bash
# Loads images into every running real node's containerd, as a registry pull would: the
# given docker-archive tars, or every tar under target/images (what e2e/images/build.sh
# writes). Prints one line per node and image. Nothing to do when no real node runs.
# Usage: import.sh [image.tar...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tars=("$@")
[[ ${#tars[@]} -gt 0 ]] || tars=("$repo"/target/images/*.tar)
nodes="$(existing_nodes)"
if [[ -z "$nodes" ]]; then
  echo "==> no real node runs: nothing to import (start them with SIGNPOST_REAL_NODES=2 just cluster-up)"
  exit 0
fi
for i in $nodes; do
  for tar in "${tars[@]}"; do
    [[ -f "$tar" ]] || { echo "import.sh: no image at $tar; build it with 'just image'" >&2; exit 1; }
    ctr_node "$i" images import "$tar" | sed "s/^/==> $(node_name "$i"): /"
  done
done
