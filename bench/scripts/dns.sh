#!/usr/bin/env bash
# DNS benchmark (issue 12): `signpost dns` next to CoreDNS's `kubernetes` plugin on the same
# control plane, same Services, same query list, same machine, same run. Queries per second and
# p50/p99 latency with 1,000 Services (each server alone under load, twice, alternating:
# signpost, coredns, signpost, coredns), and memory (VmRSS, VmHWM) at 1,000 and 10,000 Services.
# Prints a Markdown table and writes it into the "## DNS" section of docs/benchmarks.md.
#
# Load: Debian's dnsperf (-v, so every answer's latency is recorded and p50/p99 computed).
# CoreDNS: `go install github.com/coredns/coredns@$COREDNS_VERSION`, cached under
#          $SIGNPOST_CACHE/coredns-<version>/bin (never committed).
# Env:  BENCH_DNS_SERVICES (default 1000), BENCH_DNS_LARGE (default 10000; 0 skips it),
#       BENCH_DNS_SECONDS (default 10), BENCH_DNS_LARGE_SECONDS (default 5; 0 = memory only),
#       BENCH_DNS_RUNS (default 2), BENCH_DNS_OUTSTANDING (default 100),
#       BENCH_DNS_RATE (open-loop rate, default 5000 queries/s), BENCH_WRITE_DOC=0 to only print.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
needs_cluster "$@"

here="$root/e2e/controlplane"
source "$here/lib.sh"
export PATH="$(bin_dir k8s):$PATH"

services="${BENCH_DNS_SERVICES:-1000}"
large="${BENCH_DNS_LARGE:-10000}"
seconds="${BENCH_DNS_SECONDS:-10}"
large_seconds="${BENCH_DNS_LARGE_SECONDS:-5}"
runs="${BENCH_DNS_RUNS:-2}"
outstanding="${BENCH_DNS_OUTSTANDING:-100}"
rate="${BENCH_DNS_RATE:-5000}"
write_doc="${BENCH_WRITE_DOC:-1}"
coredns_version="${COREDNS_VERSION:-v1.15.0}"
tool="$root/bench/scripts/dns_table.py"

for cmd in dnsperf dig python3 kubectl go curl; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "dns.sh: '$cmd' is needed (e2e/setup.sh installs dnsperf)" >&2; exit 2; }
done
kubeconfig="${KUBECONFIG%%:*}"
context="$(kubectl config current-context)"

# --- binaries ---------------------------------------------------------------------------------
echo "==> signpost: cargo build --release" >&2
cargo build --release --quiet -p signpost-controllers --bin signpost
signpost="${CARGO_TARGET_DIR:-$root/target}/release/signpost"

coredns_dir="$SIGNPOST_CACHE/coredns-$coredns_version/bin"
coredns="$coredns_dir/coredns"
if [[ -x "$coredns" ]]; then
  echo "==> coredns: cached ($coredns)" >&2
else
  echo "==> coredns: go install github.com/coredns/coredns@$coredns_version (a cold build takes minutes)" >&2
  rm -rf "$coredns_dir.tmp"
  mkdir -p "$coredns_dir.tmp"
  GOBIN="$coredns_dir.tmp" CGO_ENABLED=0 go install -trimpath "github.com/coredns/coredns@$coredns_version"
  mkdir -p "$coredns_dir"
  mv "$coredns_dir.tmp/coredns" "$coredns"
  rm -rf "$coredns_dir.tmp"
fi

# --- state ------------------------------------------------------------------------------------
out="${CARGO_TARGET_DIR:-$root/target}/bench/dns"
rm -rf "$out"
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"
ns="dnsbench-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Signpost's CRDs, as `signpost run` would install them: a fresh cluster has none yet.
kubectl apply --server-side -f "$root/charts/signpost/crds/" >/dev/null

# A /16 of 10.128.0.0/9 that no ServiceIP uses yet.
used="$(kubectl get serviceips -o name | sed -n 's#.*/10\.\([0-9]*\)\..*#\1#p' | sort -u | tr '\n' ' ')"
octet=""
for _ in $(seq 1 200); do
  candidate=$((128 + RANDOM % 128))
  [[ " $used " == *" $candidate "* ]] || { octet=$candidate; break; }
done
[[ -n "$octet" ]] || { echo "dns.sh: no free /16 in 10.128.0.0/9" >&2; exit 1; }
cidr="10.$octet.0.0/16"

run_pid="" signpost_dns_pid="" coredns_pid=""
stop_pid() { # pid: SIGTERM, then SIGKILL after 10 s
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  set +e
  stop_pid "$signpost_dns_pid"
  stop_pid "$coredns_pid"
  if kubectl get namespace "$ns" >/dev/null 2>&1; then
    echo "==> cleanup: deleting namespace $ns (signpost run releases its ServiceIPs)" >&2
    kubectl delete namespace "$ns" --wait=false >/dev/null
    if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
      for _ in $(seq 1 600); do
        left="$(kubectl get serviceips -l "signpost.dev/service-namespace=$ns" -o name 2>/dev/null | wc -l)"
        [[ "$left" -eq 0 ]] && break
        sleep 1
      done
      [[ "$left" -eq 0 ]] || echo "dns.sh: $left ServiceIPs of $ns remain" >&2
    fi
  fi
  stop_pid "$run_pid"
}
trap cleanup EXIT

# --- the cluster side -------------------------------------------------------------------------
create_services() { # from to (exclusive): concurrently, 100 Services per kubectl create, 12 at a time
  local from="$1" to="$2" chunk=100 i start
  rm -f "$out"/svc-chunk-*.yaml
  for ((start = from; start < to; start += chunk)); do
    for ((i = start; i < start + chunk && i < to; i++)); do
      printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: %s}\nspec:\n  ports:\n  - {name: http, port: 80, protocol: TCP}\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: grpc, port: 9090, protocol: TCP}\n' "$i" "$ns"
    done >"$out/svc-chunk-$start.yaml"
  done
  ls "$out"/svc-chunk-*.yaml | xargs -P 12 -I{} kubectl create -f {} -o name >/dev/null
  rm -f "$out"/svc-chunk-*.yaml
}

wait_records() { # n: until n DNSRecords of the namespace carry an IPv4 address
  local n="$1" have=0 t0=$SECONDS
  while ((SECONDS - t0 < 900)); do
    have="$(kubectl get dnsrecords -n "$ns" -o jsonpath='{range .items[*]}{.spec.ipv4[0]}{"\n"}{end}' | grep -c . || true)"
    ((have >= n)) && { echo "==> $have DNSRecords with addresses after $((SECONDS - t0)) s" >&2; return 0; }
    sleep 2
  done
  echo "dns.sh: only $have of $n DNSRecords have addresses" >&2
  return 1
}

# --- the DNS servers --------------------------------------------------------------------------
start_servers() { # n: start both servers, wait until each answers the probe names
  local n="$1"
  sp_port="$(free_port)" sp_metrics="$(free_port)" cd_port="$(free_port)"
  "$signpost" dns --namespace "$ns" --listen "127.0.0.1:$sp_port" --metrics-addr "127.0.0.1:$sp_metrics" \
    --kubeconfig "$kubeconfig" >"$out/signpost-dns-$n.log" 2>&1 &
  signpost_dns_pid=$!
  wait_answers signpost "$sp_port" "$n" "$signpost_dns_pid"
  cat >"$out/Corefile" <<EOF
cluster.local:$cd_port {
    bind 127.0.0.1
    kubernetes cluster.local {
        kubeconfig $kubeconfig $context
    }
}
EOF
  "$coredns" -conf "$out/Corefile" >"$out/coredns-$n.log" 2>&1 &
  coredns_pid=$!
  wait_answers coredns "$cd_port" "$n" "$coredns_pid"
}

wait_answers() { # side port n pid: until the first, last and a middle Service resolve (A and SRV)
  local side="$1" port="$2" n="$3" pid="$4" t0 ok
  t0="$(date +%s.%N)"
  for _ in $(seq 1 6000); do
    kill -0 "$pid" 2>/dev/null || { echo "dns.sh: $side exited; see $out/$side-*.log" >&2; exit 1; }
    # An answer, not just output: `dig +short` also prints "communications error" lines.
    ok=1
    for i in 0 $((n / 2)) $((n - 1)); do
      dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" "svc-$i.$ns.svc.cluster.local" A 2>/dev/null \
        | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' || { ok=0; break; }
    done
    [[ $ok == 1 ]] && dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" "_http._tcp.svc-$((n - 1)).$ns.svc.cluster.local" SRV 2>/dev/null \
      | grep -Eq "^0 [0-9]+ 80 svc-$((n - 1))\.$ns\.svc\.cluster\.local\.$" && break
    ok=0
    sleep 0.1
  done
  [[ $ok == 1 ]] || { echo "dns.sh: $side never answered for svc-$((n - 1))" >&2; exit 1; }
  python3 -c "import json,sys,time; print(json.dumps({'kind':'ready','side':sys.argv[1],'services':int(sys.argv[2]),'seconds':time.time()-float(sys.argv[3])}))" \
    "$side" "$n" "$t0" >>"$results"
  echo "==> $side answers svc-0 .. svc-$((n - 1)) (A, SRV) on 127.0.0.1:$port; sample: $(dig +short @127.0.0.1 -p "$port" "svc-$((n - 1)).$ns.svc.cluster.local" A)" >&2
}

memory() { # n stage
  python3 "$tool" mem "$signpost_dns_pid" --kind mem --side signpost --services "$1" --stage "$2" >>"$results"
  python3 "$tool" mem "$coredns_pid" --kind mem --side coredns --services "$1" --stage "$2" >>"$results"
}

load() { # side n round mode secs
  local side="$1" n="$2" round="$3" mode="$4" secs="$5" port extra=()
  if [[ $side == signpost ]]; then port=$sp_port; else port=$cd_port; fi
  [[ $mode == rate ]] && extra=(-Q "$rate")
  echo "==> $n Services, run $round: $side, $mode, ${secs} s" >&2
  dnsperf -s 127.0.0.1 -p "$port" -d "$out/queries-$n.txt" -l "$secs" -c 4 -T 1 -q "$outstanding" -t 2 -v "${extra[@]}" \
    >"$out/dnsperf.out" 2>&1
  python3 "$tool" parse "$out/dnsperf.out" --kind load --side "$side" --services "$n" --round "$round" \
    --mode "$mode" --seconds "$secs" --outstanding "$outstanding" --rate "$rate" >>"$results"
  grep -E 'Queries per second|Response codes' "$out/dnsperf.out" | sed 's/^ */    /' >&2
  rm -f "$out/dnsperf.out"
}

phase() { # n secs rounds
  local n="$1" secs="$2" rounds="$3" round side mode
  python3 "$tool" queries --ns "$ns" --services "$n" --count 20000 >"$out/queries-$n.txt"
  start_servers "$n"
  sleep 2
  memory "$n" ready
  if ((secs > 0)); then
    for mode in saturated rate; do
      for round in $(seq 1 "$rounds"); do
        for side in signpost coredns; do load "$side" "$n" "$round" "$mode" "$secs"; done
      done
    done
  fi
  sleep 1
  memory "$n" after
  stop_pid "$signpost_dns_pid"
  stop_pid "$coredns_pid"
  signpost_dns_pid="" coredns_pid=""
}

load_avg="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> namespace $ns, Signpost service CIDR $cidr" >&2
kubectl create namespace "$ns" >/dev/null
run_metrics="$(free_port)"
"$signpost" run --namespace "$ns" --service-cidr "$cidr" --leader-elect=false \
  --metrics-addr "127.0.0.1:$run_metrics" --kubeconfig "$kubeconfig" >"$out/signpost-run.log" 2>&1 &
run_pid=$!

t0=$SECONDS
create_services 0 "$services"
echo "==> created $services Services in $((SECONDS - t0)) s" >&2
wait_records "$services"
phase "$services" "$seconds" "$runs"

if ((large > services)); then
  t0=$SECONDS
  create_services "$services" "$large"
  echo "==> created $((large - services)) more Services in $((SECONDS - t0)) s" >&2
  wait_records "$large"
  phase "$large" "$large_seconds" 1
fi

# --- the document -----------------------------------------------------------------------------
{
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) ($(nproc) CPUs online, shared with other builds and tests)"
  echo "- Memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
  echo "- Kernel: $(uname -sr); load average (1, 5, 15 min) before the runs: $load_avg"
  echo "- $(rustc --version)"
  echo "- $(go version)"
  echo "- CoreDNS $coredns_version (\`go install github.com/coredns/coredns@$coredns_version\`, CGO_ENABLED=0)"
  echo "- $(dnsperf -h 2>&1 | grep -m1 '^Version' | sed 's/^/dnsperf /')"
  echo "- Control plane: local etcd + kube-apiserver $(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' 2>/dev/null || echo '?')"
  echo "- Cluster at measurement: $(kubectl get services -A --no-headers 2>/dev/null | wc -l) Services and $(kubectl get endpointslices -A --no-headers 2>/dev/null | wc -l) EndpointSlices in all namespaces (the bench namespace's included)"
  echo "- Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- dns/src bench/scripts/dns.sh bench/scripts/dns_table.py 2>/dev/null || echo ' (dns or bench sources modified)')"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$out/machine.md"

cat >"$out/method.md" <<EOF
- Setup: a namespace with ${services} (then ${large}) ClusterIP Services, each with three named
  ports (\`http\` 80/TCP, \`dns\` 53/UDP, \`grpc\` 9090/TCP), created concurrently (12
  \`kubectl create\` at a time, 100 Services each). \`signpost run --namespace <ns> --service-cidr <a free /16 of
  10.128.0.0/9> --leader-elect=false\` publishes their DNSRecords; the benchmark waits until every
  record has an address, then starts the two servers on loopback ports:
  \`signpost dns --namespace <ns> --listen 127.0.0.1:<port>\`, and
  \`coredns -conf Corefile\` with
  \`cluster.local:<port> { bind 127.0.0.1; kubernetes cluster.local { kubeconfig <admin kubeconfig> <context> } }\`.
  A server counts as ready when the first, middle and last Service resolve (A) and the last one's
  \`_http._tcp\` SRV does ("start → every probed name answered"). The answers differ in one
  way only: CoreDNS answers with the API server's \`spec.clusterIP\` (10.96.0.0/16), signpost dns
  with Signpost's VIP from its DNSRecord; both are one A record per Service.
- Query list: ${services} Services: 20,000 queries (fixed seed, \`dns_table.py queries\`), 90 % A
  \`svc-<i>.<ns>.svc.cluster.local\`, 5 % SRV \`_http._tcp.svc-<i>.<ns>.svc.cluster.local\`, 5 % A
  for \`missing-<i>.<ns>.svc.cluster.local\` (NXDOMAIN); the same file for both servers; dnsperf
  loops over it. The 10,000-Service list is made the same way over all 10,000.
- Load: \`dnsperf -s 127.0.0.1 -p <port> -d <queries> -l ${seconds} -c 4 -T 1 -q ${outstanding} -t 2 -v\`
  (UDP, no EDNS). Closed loop: ${outstanding} queries outstanding, as fast as the server
  answers, so the latency there is mostly queueing (≈ outstanding ÷ QPS). Open loop: the same
  with \`-Q ${rate}\`, a rate both servers sustain, so its latency is the time to answer.
  p50/p99 are nearest-rank percentiles over every answer's latency as dnsperf's \`-v\` prints it
  (1 µs resolution); lost (timed-out, 2 s) queries are counted, not in the percentiles.
  Each server runs alone under load (the other one idle), ${runs} runs each, alternating
  (signpost, CoreDNS, signpost, CoreDNS), closed loop first, then open loop. dnsperf runs on
  the same 2 CPUs as the server (and its \`-v\` printing costs CPU), so a closed-loop figure is
  what server and load generator reach together on this machine, under the same conditions
  for both servers.
- ${large} Services: the Services are added to the same namespace, both servers are started
  again, memory is read, then one ${large_seconds} s run of each mode and server (one run, no
  agreement figure; \`BENCH_DNS_LARGE_SECONDS=0\` skips it).
- Memory: \`VmRSS\` and \`VmHWM\` from \`/proc/<pid>/status\`: once the server answers every probe
  (plus 2 s), and after the load runs (VmHWM covers start-up, the initial list and load). Both
  processes are fresh for each size. signpost dns watches DNSRecords of the bench namespace only;
  CoreDNS's kubernetes plugin watches Services, EndpointSlices and Namespaces of the whole
  cluster (the Corefile sets no \`namespaces\` filter), so it also holds the other
  namespaces' objects (counted in "Cluster at measurement" above).
- Clean-up: the namespace is deleted while \`signpost run\` still runs, the script waits until no
  ServiceIP has \`signpost.dev/service-namespace=<ns>\`, then stops it.
- Figures only: nothing fails on speed. The machine is shared with other builds, so treat the
  agreement column as the noise floor.
EOF

doc_args=()
[[ "$write_doc" == 0 ]] || doc_args=(--doc "$root/docs/benchmarks.md")
python3 "$tool" render --results "$results" --machine "$out/machine.md" --method "$out/method.md" "${doc_args[@]}"
