#!/usr/bin/env bash
# Controller benchmark: the same workload (N Services × M pods, then K readiness flips at a fixed
# rate) against Signpost and against kube-controller-manager running only its endpoint
# controllers, one after the other on the same control plane, each twice (s, k, s, k), so the
# ratio and the run-to-run agreement come from one run. Prints a Markdown table and writes it
# into the "## Controllers" section of docs/benchmarks.md.
# Sizes: BENCH_SERVICES, BENCH_PODS, BENCH_FLIPS, BENCH_RATE (default 100 × 10, 300 flips at 50/s).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
services="${BENCH_SERVICES:-100}" pods="${BENCH_PODS:-10}" flips="${BENCH_FLIPS:-300}" rate="${BENCH_RATE:-50}"

run_bench() {
  here=e2e/controlplane
  source "$here/lib.sh"
  source "$here/cluster.sh"
  [[ -f "$STATE/admin.kubeconfig" ]] || { echo "controllers.sh: needs the local control plane (just cluster-up)" >&2; exit 2; }
  echo "==> building release binaries" >&2
  cargo build -q --release -p signpost-controllers --bin signpost -p signpost-e2e --bin endpoints_bench
  out="$(mktemp)"
  for round in 1 2; do
    for side in signpost kcm; do
      echo "==> round $round: $side (${services} Services × ${pods} pods, ${flips} flips at ${rate}/s)" >&2
      ./target/release/endpoints_bench --controller "$side" --services "$services" --pods "$pods" \
        --flips "$flips" --rate "$rate" --signpost-bin target/release/signpost \
        --kcm-bin "$(bin_dir k8s)/kube-controller-manager" --admin-kubeconfig "$STATE/admin.kubeconfig" \
        | tail -n 1 | sed "s/^{/{\"round\":$round,/" >> "$out"
    done
  done
  python3 e2e/bench/controllers_table.py "$out" docs/benchmarks.md
  rm -f "$out"
}

if [[ -n "${KUBECONFIG:-}" ]]; then
  run_bench
else
  # Needs the local control plane's admin kubeconfig to start the peer kube-controller-manager.
  exec e2e/with-cluster.sh "$0" "$@"
fi
