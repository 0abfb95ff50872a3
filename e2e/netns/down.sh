#!/usr/bin/env bash
# Undoes up.sh: stops every process still running inside the namespace (they were started by
# whoever created it), stops its API forwarder, deletes the namespace (its veth pair and
# dummy interfaces go with it) and its state directory. Safe to run twice.
# Usage: down.sh <name>
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"
[[ $# -eq 1 ]] || { echo "usage: $0 <name>" >&2; exit 2; }
name="$1"
dir="$(state_dir "$name")"
if ip netns list | grep -qw -- "$name"; then
  pids="$(ip netns pids "$name" 2>/dev/null || true)"
  if [[ -n "$pids" ]]; then
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
      alive=""
      for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [[ -z "$alive" ]] && break
      sleep 0.1
    done
    kill -KILL $pids 2>/dev/null || true
  fi
fi
if [[ -f "$dir/forward.pid" ]]; then
  pid="$(cat "$dir/forward.pid")"
  if grep -q forward.py "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
fi
ip link del "$(veth_root "$name")" 2>/dev/null || true
ip netns del "$name" 2>/dev/null || true
rm -rf "$dir"
