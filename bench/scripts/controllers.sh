#!/usr/bin/env bash
# Controller benchmark: the same workloads (N Services × M pods; isolated readiness flips at a
# fixed rate; the same flips on pods drawn at random over all Services; a restart with nothing changed; a 100-pod Deployment rollout) against Signpost and
# against kube-controller-manager running only its endpoint controllers, one after the other on
# the same control plane, each twice (s, k, s, k), so the ratios and the run-to-run agreement
# come from one run. Then, per round, the flips once more with the two taking turns batch by
# batch on one workload (`--controller alternating`; each batch isolated flips, then random
# flips in the separate runs' orders), so both are measured under the same load: the p99
# targets of both kinds of flips are judged there. For each size, prints a Markdown table and writes it into its own
# "## Controllers: ..." section of docs/benchmarks.md.
# Sizes: BENCH_SIZES (default "100x10 200x20": 1,000 and 4,000 pods; `just bench-large` sets
# "1000x20"), BENCH_FLIPS, BENCH_BATCHES, BENCH_RATE (default 300 flips, 9 batches, 50/s),
# BENCH_RANDOM_FLIPS (default: BENCH_FLIPS; flips per batch on pods drawn at random over all
# Services, same rate and batches as the isolated flips; 0 skips them), BENCH_ROLLOUT (default 100 pods), BENCH_ROLLOUTS (default 3 restarts of that Deployment),
# BENCH_ALTERNATING_BATCHES (default 18 per side: the pooled p99 of 9 batches moved by up to a
# quarter between rounds, batch-to-batch load moving it; see docs/performance.md, "Reading the
# figures"),
# BENCH_ALTERNATING_MAX_PODS (default 20000: larger sizes skip the alternating flips; at 20,000
# pods a turn, start and catch-up included, takes about a minute).
# BENCH_SIDES (e.g. "alternating"): measure only those sides again, keeping the other sides'
# lines from the size's last run (each line carries when and at which commit it was measured,
# and the table's machine line gives the span).
# A control plane this script starts keeps etcd's data in memory (SIGNPOST_ETCD_TMPFS=1); a
# running one is used as it is, and the table says where its etcd keeps its data.
set -Eeuo pipefail
# A failing command stops the benchmark; say which, rather than exit with no word.
trap 'echo "controllers.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
sizes="${BENCH_SIZES:-100x10 200x20}"
flips="${BENCH_FLIPS:-300}" random_flips="${BENCH_RANDOM_FLIPS:-${BENCH_FLIPS:-300}}" batches="${BENCH_BATCHES:-9}" rate="${BENCH_RATE:-50}"
rollout="${BENCH_ROLLOUT:-100}" rollouts="${BENCH_ROLLOUTS:-3}"
alternating_max_pods="${BENCH_ALTERNATING_MAX_PODS:-20000}"
alternating_batches="${BENCH_ALTERNATING_BATCHES:-18}"

# JSON members noted beside each measured line (the text after its "{"): the round, and what the
# table's machine line says, as it was when the line was measured.
line_facts() { # round
  printf '"round":%s,"commit":"%s","measured_at":"%s","load_average":"%s","etcd_storage":"%s",' \
    "$1" "$(git rev-parse --short HEAD)" "$(date -u '+%Y-%m-%d %H:%M')" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(etcd_storage)"
}

run_bench() {
  here=e2e/controlplane
  source "$here/lib.sh"
  source "$here/cluster.sh"
  [[ -f "$STATE/admin.kubeconfig" ]] || { echo "controllers.sh: needs the local control plane (just cluster-up)" >&2; exit 2; }
  echo "==> building release binaries" >&2
  cargo build -q --release -p signpost-controllers --bin signpost -p signpost-bench --bin endpoints_bench
  for size in $sizes; do
    services="${size%x*}" pods="${size#*x}"
    [[ "$services" =~ ^[0-9]+$ && "$pods" =~ ^[0-9]+$ ]] || { echo "controllers.sh: bad size '$size' (want NxM)" >&2; exit 2; }
    # Kept, so the table can be rendered again: python3 bench/scripts/controllers_table.py <file> ...
    out="target/bench/controllers-${size}.jsonl"
    mkdir -p target/bench
    sides="signpost kcm"
    (( services * pods <= alternating_max_pods )) && sides+=" alternating"
    if [[ -n "${BENCH_SIDES:-}" ]]; then
      [[ -s "$out" ]] || { echo "controllers.sh: BENCH_SIDES needs the kept lines of a full run ($out)" >&2; exit 2; }
      sides="$BENCH_SIDES"
      # Drop the kept lines of the sides measured again.
      python3 -c 'import json, sys
sides = sys.argv[2].split()
lines = [l for l in open(sys.argv[1]) if json.loads(l)["controller"] not in sides]
open(sys.argv[1], "w").writelines(lines)' "$out" "$sides"
    else
      : > "$out"
    fi
    for round in 1 2; do
      for side in $sides; do
        echo "==> ${services} Services × ${pods} pods, round $round: $side" >&2
        side_batches="$batches"
        [[ "$side" == alternating ]] && side_batches="$alternating_batches"
        line="$(./target/release/endpoints_bench --controller "$side" --services "$services" --pods "$pods" \
          --flips "$flips" --random-flips "$random_flips" --batches "$side_batches" --rate "$rate" --rollout "$rollout" --rollouts "$rollouts" \
          --signpost-bin target/release/signpost \
          --kcm-bin "$(bin_dir k8s)/kube-controller-manager" --admin-kubeconfig "$STATE/admin.kubeconfig" \
          | tail -n 1)"
        printf '%s\n' "$line" | sed "s/^{/{$(line_facts "$round")/" >> "$out"
      done
    done
    total=$((services * pods))
    python3 bench/scripts/controllers_table.py "$out" docs/benchmarks.md \
      "## Controllers: ${services} Services × ${pods} pods (${total} pods)"
  done
}

if [[ -n "${KUBECONFIG:-}" ]]; then
  run_bench
else
  # Needs the local control plane's admin kubeconfig to start the peer kube-controller-manager.
  SIGNPOST_ETCD_TMPFS=1 exec e2e/with-cluster.sh "$0" "$@"
fi
