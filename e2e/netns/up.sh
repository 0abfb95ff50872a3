#!/usr/bin/env bash
# Creates a network namespace for Signpost's demo and tests:
#   - `lo` up (so processes inside can use 127.0.0.1 of their own),
#   - a dummy interface `pods0` for the pod IPs that stand-in servers listen on,
#   - with --api <n>: a veth pair root <-> netns on 10.123.<n>.0/30 (root side .1, netns side .2),
#     a TCP forwarder in the root namespace from 10.123.<n>.1:<api port> to the API server on
#     127.0.0.1, and a kubeconfig for use inside the netns whose server is that address
#     (tls-server-name: localhost, a name on the API server's certificate).
# Nothing else is routed: VIPs and pod IPs live only inside the namespace.
# Usage: up.sh <name> [--api <n>]   (needs root, KUBECONFIG for --api)
# Prints the state directory (holds kubeconfig, forward.pid, forward.log). Undo with down.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"
[[ $# -ge 1 ]] || { echo "usage: $0 <name> [--api <n>]" >&2; exit 2; }
name="$1"; shift
api=""
if [[ "${1:-}" == "--api" ]]; then
  [[ "${2:-}" =~ ^[0-9]+$ && "$2" -le 255 ]] || { echo "--api needs a number 0-255" >&2; exit 2; }
  api="$2"
fi
dir="$(state_dir "$name")"
mkdir -p "$dir"

ip netns add "$name"
ip -n "$name" link set lo up
# Kernels without the dummy driver: a bridge without ports holds local addresses just as well.
ip -n "$name" link add pods0 type dummy 2>/dev/null || ip -n "$name" link add pods0 type bridge
ip -n "$name" link set pods0 up

if [[ -n "$api" ]]; then
  : "${KUBECONFIG:?KUBECONFIG must name the cluster for --api}"
  root_if="$(veth_root "$name")" ns_if="$(veth_ns "$name")"
  root_ip="10.123.$api.1" ns_ip="10.123.$api.2"
  ip link add "$root_if" type veth peer name "$ns_if" netns "$name"
  ip addr add "$root_ip/30" dev "$root_if"
  ip link set "$root_if" up
  ip -n "$name" addr add "$ns_ip/30" dev "$ns_if"
  ip -n "$name" link set "$ns_if" up

  server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  hostport="${server#https://}"; hostport="${hostport%%/*}"
  port="${hostport##*:}"
  python3 "$here/forward.py" "$root_ip:$port" "$hostport" >"$dir/forward.log" 2>&1 &
  echo $! >"$dir/forward.pid"
  kubectl config view --raw --minify --flatten >"$dir/kubeconfig"
  cluster="$(kubectl --kubeconfig "$dir/kubeconfig" config view -o jsonpath='{.clusters[0].name}')"
  kubectl --kubeconfig "$dir/kubeconfig" config set-cluster "$cluster" \
    --server "https://$root_ip:$port" --tls-server-name localhost >/dev/null
  # The forwarder is up once it accepts on the veth address.
  for _ in $(seq 100); do
    if ip netns exec "$name" bash -c "exec 3<>/dev/tcp/$root_ip/$port" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
fi
echo "$dir"
