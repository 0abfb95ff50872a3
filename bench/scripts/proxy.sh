#!/usr/bin/env bash
# Proxy benchmark: what `signpost proxy` adds to a TCP connection. Latency (p50, p99) of one
# connection at a time and connections per second under concurrent clients, through the VIP
# and direct to the pod, in the same run, two rounds. Prints a Markdown table and writes it
# into the "## Proxy" section of docs/benchmarks.md.
#
# Everything that carries VIP or pod traffic runs inside ONE network namespace this script
# creates (e2e/netns/up.sh, API index 251; the demo uses 0, the proxy e2e test 1-250) and
# deletes on exit: `signpost run` and `signpost proxy` scoped to a namespace of their own (own
# service CIDR), and the load generator bench/src/bin/proxy_bench.rs, which serves the pod IPs
# on `pods0` and is the client. Nothing is sent to a VIP or pod address from the machine's own
# namespace. Needs root.
#
# Env: BENCH_PROXY_ROUNDS (2), BENCH_PROXY_CONNECTIONS (latency, per path per round; 10000),
#      BENCH_PROXY_WARMUP (500), BENCH_PROXY_BLOCK (100), BENCH_PROXY_CLIENTS (16),
#      BENCH_PROXY_SECONDS (throughput, per path per round; 5), BENCH_PROXY_NETNS
#      (sp-bench-proxy), BENCH_PROXY_API_INDEX (251), BENCH_WRITE_DOC=0 to only print.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
needs_cluster "$@"
if [[ "$(id -u)" != 0 ]]; then
  echo "proxy.sh: needs root (it creates a network namespace); try: sudo -E just bench-proxy" >&2
  exit 2
fi

here="$root/e2e/controlplane"
source "$here/lib.sh"
export PATH="$(bin_dir k8s):$PATH"

rounds="${BENCH_PROXY_ROUNDS:-2}"
connections="${BENCH_PROXY_CONNECTIONS:-10000}"
warmup="${BENCH_PROXY_WARMUP:-500}"
block="${BENCH_PROXY_BLOCK:-100}"
clients="${BENCH_PROXY_CLIENTS:-16}"
seconds="${BENCH_PROXY_SECONDS:-5}"
netns="${BENCH_PROXY_NETNS:-sp-bench-proxy}"
api_index="${BENCH_PROXY_API_INDEX:-251}"
write_doc="${BENCH_WRITE_DOC:-1}"

for cmd in kubectl python3 curl ip; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "proxy.sh: '$cmd' is needed" >&2; exit 2; }
done

echo "==> signpost, proxy_bench: cargo build --release" >&2
cargo build --release --quiet -p signpost-controllers --bin signpost -p signpost-bench --bin proxy_bench
target="${CARGO_TARGET_DIR:-$root/target}/release"
signpost="$target/signpost"
bench="$target/proxy_bench"

out="${CARGO_TARGET_DIR:-$root/target}/bench/proxy"
rm -rf "$out"
mkdir -p "$out"
ns="proxybench-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
label="signpost.dev/service-namespace=$ns"

inside() { ip netns exec "$netns" "$@"; }
wait_for() { # what seconds command...: polls a condition until it holds or the deadline passes
  local what="$1" deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "proxy.sh: timed out waiting for $what" >&2
      for f in "$out"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2 || true; done
      return 1
    fi
    sleep 0.2
  done
}

run_pid=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  echo "==> cleanup: namespace $ns, its ServiceIPs, netns $netns and its processes" >&2
  if kubectl get namespace "$ns" >/dev/null 2>&1; then
    kubectl delete namespace "$ns" --wait=false >/dev/null
    # signpost run (still running inside the netns) releases the namespace's ServiceIPs.
    if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
      local left=1 deadline=$((SECONDS + 120))
      while ((SECONDS < deadline)); do
        left="$(kubectl get serviceips -l "$label" -o name 2>/dev/null | wc -l)"
        ((left == 0)) && break
        sleep 0.5
      done
    fi
  fi
  # Stops every process in the netns (signpost run, signpost proxy, proxy_bench) and the API
  # forwarder, deletes the netns (its veth pair and interfaces go with it).
  "$root/e2e/netns/down.sh" "$netns"
  if [[ -n "$(kubectl get serviceips -l "$label" -o name 2>/dev/null)" ]]; then
    echo "proxy.sh: ServiceIPs of $ns were not released by signpost run; deleting them" >&2
    kubectl delete serviceips -l "$label" --wait=true --timeout=60s >/dev/null
  fi
  kubectl wait --for=delete "namespace/$ns" --timeout=120s >/dev/null 2>&1
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kubectl apply --server-side -f "$root/charts/signpost/crds/" >/dev/null
kubectl wait --for condition=established --timeout=30s crd/dnsrecords.signpost.dev crd/serviceips.signpost.dev >/dev/null

# A /24 of 10.128.0.0/9 no ServiceIP uses yet, below 10.240.0.0 (the kwok pods are 10.244.0.0/16,
# and VIPs and pod IPs are local addresses of the same netns).
used="$(kubectl get serviceips -o name 2>/dev/null | sed -n 's#.*/10\.\([0-9]*\)\.\([0-9]*\)\..*#\1.\2#p' | sort -u | tr '\n' ' ')"
cidr=""
for _ in $(seq 1 200); do
  candidate="$((128 + RANDOM % 112)).$((RANDOM % 256))"
  [[ " $used " == *" $candidate "* ]] || { cidr="10.$candidate.0/24"; break; }
done
[[ -n "$cidr" ]] || { echo "proxy.sh: no free /24 in 10.128.0.0/9" >&2; exit 1; }

# A leftover of an interrupted run would make `ip netns add` fail.
"$root/e2e/netns/down.sh" "$netns"
state="$("$root/e2e/netns/up.sh" "$netns" --api "$api_index")"
kc="$state/kubeconfig"
echo "==> netns $netns (API through 10.123.$api_index.1), namespace $ns, service CIDR $cidr" >&2

load_avg="$(cut -d' ' -f1-3 /proc/loadavg)"
kubectl create namespace "$ns" >/dev/null
# Inside the netns, metrics on the netns's own 127.0.0.1: no clash with anything outside.
# `ip netns exec` execs the command, so $! is signpost's own pid (for its CPU time).
ip netns exec "$netns" "$signpost" run --kubeconfig "$kc" --namespace "$ns" --service-cidr "$cidr" \
  --leader-elect=false --metrics-addr 127.0.0.1:18080 >"$out/run.log" 2>&1 &
run_pid=$!
ip netns exec "$netns" "$signpost" proxy --kubeconfig "$kc" --namespace "$ns" --interface signpost0 \
  --metrics-addr 127.0.0.1:9154 >"$out/proxy.log" 2>&1 &
proxy_pid=$!
wait_for "signpost run to be ready" 60 inside curl -fsS http://127.0.0.1:18080/readyz
wait_for "signpost proxy to be ready" 60 inside curl -fsS http://127.0.0.1:9154/readyz
for pid in "$run_pid" "$proxy_pid"; do
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == signpost ]] || { echo "proxy.sh: pid $pid is not signpost" >&2; exit 1; }
done

echo "==> proxy_bench: $rounds rounds; latency $connections connections per path (after $warmup), throughput $clients clients × ${seconds} s per path" >&2
KUBECONFIG="$kc" RUST_LOG=warn inside "$bench" --namespace "$ns" --rounds "$rounds" \
  --connections "$connections" --warmup "$warmup" --block "$block" --clients "$clients" \
  --seconds "$seconds" --cpu-of "signpost proxy=$proxy_pid" --cpu-of "signpost run=$run_pid" \
  >"$out/results.jsonl"
inside curl -fsS http://127.0.0.1:9154/metrics >"$out/proxy-metrics.txt" || true

# --- the document -----------------------------------------------------------------------------
link_kind() { ip -n "$netns" -d link show "$1" 2>/dev/null | grep -Eo '\b(dummy|bridge)\b' | head -n 1; }
{
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) ($(nproc) CPUs online, shared with other builds and tests)"
  echo "- Memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
  echo "- Kernel: $(uname -sr); load average (1, 5, 15 min) before the runs: $load_avg"
  echo "- $(rustc --version)"
  echo "- Interfaces in the netns: VIPs on \`signpost0\` ($(link_kind signpost0)), pod IPs on \`pods0\` ($(link_kind pods0))"
  echo "- Control plane: local etcd + kube-apiserver $(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' 2>/dev/null || echo '?') (kwok pods)"
  echo "- Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- proxy/src bench/src bench/scripts/proxy.sh bench/scripts/proxy_table.py 2>/dev/null || echo ' (proxy or bench sources modified)')"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$out/machine.md"

cat >"$out/method.md" <<EOF
- Layout: one network namespace made by \`e2e/netns/up.sh\` (deleted afterwards) holds
  \`signpost run --namespace <ns> --service-cidr <a free /24 of 10.128.0.0/9> --leader-elect=false\`
  and \`signpost proxy --namespace <ns>\` (both reach the API server through the netns's veth and
  forwarder) and the load generator \`bench/src/bin/proxy_bench.rs\` (\`cargo build --release\`).
  The generator creates a Deployment of 3 kwok pods and a ClusterIP Service (port 80 → 9376),
  adds each pod's IP to \`pods0\` and serves it itself: every connection gets a fixed 68-byte
  HTTP/1.0 answer and is closed by the server. The VIP is on \`signpost0\`, put there by the
  proxy. So pod IPs and VIP are local addresses of the netns and every packet goes through its
  loopback: the figures are the proxy's userspace work (accept, pick a backend, connect to it,
  copy both ways, close both sides) with no network in the way, which is where a userspace
  proxy's cost shows most. Clients and pod servers are one process with two tokio runtimes
  (2 threads each; a direct connection crosses threads as a proxied one does), on the same 2
  CPUs as the proxy (a tokio runtime with a thread per CPU).
- Measurement starts once \`/readyz\` of both is 200, the DNSRecord has the VIP, the pods are
  ready, and 3 consecutive connections through the VIP reached 3 different pods (the proxy's
  pool is complete); every wait polls a condition with a deadline.
- Latency: one connection at a time, each new: connect, send \`GET / HTTP/1.0\` (36 bytes), read
  the answer to EOF, close; the time of all of it. ${warmup} connections per path first, not
  counted; then ${connections} per path, in blocks of ${block} alternating between direct (the
  3 pod IPs in turn, port 9376) and proxied (VIP:80; the proxy picks the pod, round robin), the
  order swapped every block, so both paths see the same machine. p50/p99 are nearest-rank over
  every connection of the round. "Added" = proxied − direct of that percentile, per round.
- Throughput: ${clients} clients, each doing the same connections back to back (closed loop) for
  ${seconds} s; completed connections ÷ elapsed time. Direct (clients spread over the 3 pods)
  and proxied one after the other, the order swapped in the second round. The load generator,
  the servers and the proxy share the 2 CPUs, so this is what they reach together here; the
  ratio is the fair part of it. Latency under that load is mostly waiting for a CPU
  (≈ clients ÷ connections per second), so it follows the throughput.
- Proxy CPU per connection: the CPU time (user + system, \`/proc/<pid>/stat\`) \`signpost proxy\`
  used during a round ÷ the connections it passed in that round (warm-up, latency and
  throughput). The machine's CPU use per round comes from \`/proc/stat\`; what the benchmark's
  own processes did not use is listed under Machine as other load.
- ${rounds} rounds in one run; a cell is their mean, the last column their spread.
  A connection that fails or takes over 2 s counts as failed and is left out of the figures.
- Clean-up (also on failure): the namespace is deleted while \`signpost run\` still runs, the
  script waits until no ServiceIP has \`signpost.dev/service-namespace=<ns>\`, then
  \`e2e/netns/down.sh\` stops every process in the netns and deletes it.
- Figures only: nothing fails on speed. The machine is shared with other builds, so treat the
  agreement column as the noise floor.
EOF

doc_args=()
[[ "$write_doc" == 0 ]] || doc_args=(--doc "$root/docs/benchmarks.md")
python3 "$root/bench/scripts/proxy_table.py" --results "$out/results.jsonl" --machine "$out/machine.md" \
  --method "$out/method.md" "${doc_args[@]}"
