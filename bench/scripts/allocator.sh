#!/usr/bin/env bash
# Allocator benchmark (issue 9): Signpost's ClusterIP allocator next to Kubernetes' own
# bitmap ipallocator, on the same machine in the same run, each side in its own process and
# each run twice (interleaved). Prints a Markdown table and writes it, with a description
# of the machine, into docs/benchmarks.md under "## Allocator".
#
# Sides:  bench/src/bin/allocbench.rs                (cargo build --release)
#         e2e/controlplane/k8s/ipallocbench/main.go  (go build, cached per Kubernetes version)
# Env:    BENCH_RUNS (default 2), BENCH_PAIRS (churn pairs, default 200000),
#         BENCH_REPS (repetitions inside a run, fastest reported; default 3),
#         BENCH_WRITE_DOC=0 to only print the table.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
here="$root/e2e/controlplane"
source "$here/lib.sh"

runs="${BENCH_RUNS:-2}"
pairs="${BENCH_PAIRS:-200000}"
reps="${BENCH_REPS:-5}"
write_doc="${BENCH_WRITE_DOC:-1}"
command -v python3 >/dev/null 2>&1 || { echo "allocator.sh: python3 is needed to render the table" >&2; exit 1; }

# Signpost side: a release build of the bench binary.
echo "==> allocbench: cargo build --release" >&2
cargo build --release --quiet -p signpost-bench --bin allocbench
rust_bin="${CARGO_TARGET_DIR:-$root/target}/release/allocbench"

# Kubernetes side: built once per Kubernetes version (the cache directory) and per source
# (the hash), like the control plane's binaries in e2e/controlplane/build.sh.
k8s_version="$(module_version k8s k8s.io/kubernetes)"
src_hash="$(cat "$here/k8s/ipallocbench/main.go" "$here/k8s/go.mod" "$here/k8s/go.sum" | sha256sum | cut -c1-12)"
go_bin="$(bin_dir k8s)/ipallocbench-$src_hash"
if [[ -x "$go_bin" ]]; then
  echo "==> ipallocbench: cached ($go_bin)" >&2
else
  echo "==> ipallocbench: go build against k8s.io/kubernetes $k8s_version (a cold build takes minutes)" >&2
  mkdir -p "$(dirname "$go_bin")"
  (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -o "$go_bin.tmp" ./ipallocbench)
  mv "$go_bin.tmp" "$go_bin"
fi

# Raw results stay next to the build output for inspection.
out="${CARGO_TARGET_DIR:-$root/target}/bench/allocator"
rm -rf "$out"
mkdir -p "$out"
load="$(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  echo "==> run $run/$runs: signpost" >&2
  "$rust_bin" --pairs "$pairs" --reps "$reps" >"$out/signpost-$run.jsonl"
  echo "==> run $run/$runs: kubernetes" >&2
  "$go_bin" -pairs "$pairs" -reps "$reps" >"$out/kubernetes-$run.jsonl"
done

# The machine, for the document.
{
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) ($(nproc) CPUs online)"
  echo "- Memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
  echo "- Kernel: $(uname -sr); load average (1, 5, 15 min) before the runs: $load"
  echo "- $(rustc --version)"
  echo "- $(go version)"
  echo "- Kubernetes ipallocator: k8s.io/kubernetes $k8s_version"
  echo "- Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- core/src/ipam bench/src/bin/allocbench.rs e2e/controlplane/k8s/ipallocbench 2>/dev/null || echo ' (allocator or bench sources modified)')"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$out/machine.md"

doc_args=()
[[ "$write_doc" == 0 ]] || doc_args=(--doc "$root/docs/benchmarks.md")
python3 "$root/bench/scripts/allocator_table.py" --dir "$out" --runs "$runs" --pairs "$pairs" \
  --machine "$out/machine.md" "${doc_args[@]}"
