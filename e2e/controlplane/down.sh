#!/usr/bin/env bash
# Stops exactly the processes up.sh started (by pid), dependents first, then removes the state.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"
source "$here/cluster.sh"

# Real nodes first: their pods and kubelets while the API server still answers.
"$repo/e2e/nodes/down.sh"

for c in "${COMPONENTS_STOP_ORDER[@]}"; do
  pid="$(pid_of "$c")"
  [[ -n "$pid" ]] || continue
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "==> $c (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "==> stopped $c (pid $pid)"
  fi
  rm -f "$STATE/pids/$c.pid"
done
remove_state
rm -f "$KUBECONFIG_OUT"
echo "control plane stopped"
