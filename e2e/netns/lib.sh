# Shared by up.sh and down.sh.

# Where a namespace's kubeconfig, forwarder pid and logs live.
state_dir() {
  local repo
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  echo "$repo/target/netns/$1"
}

# Interface names are at most 15 characters: a short hash of the namespace name.
veth_root() { echo "spr$(printf '%s' "$1" | cksum | cut -c1-8)"; }
veth_ns() { echo "eth-api"; }
