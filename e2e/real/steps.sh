# Sourced by the real-node journeys (journey.sh, cluster-ip.sh) after they set $repo, $sys_ns and
# $journey (the name their failures start with): helm, and the step helpers every step uses.

helm="$(command -v helm || true)"
if [[ -z "$helm" ]]; then
  here="$repo/e2e/controlplane"
  source "$here/lib.sh"
  helm="$(bin_dir helm)/helm"
  [[ -x "$helm" ]] || "$here/build.sh" helm >/dev/null
fi

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
fail() {
  echo "$journey: $*" >&2
  kubectl get pods -A -o wide >&2 || true
  kubectl -n "$sys_ns" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  exit 1
}
# Waits until a command succeeds; on timeout prints the command's last output.
wait_for() { # what seconds command...
  local what="$1" deadline=$((SECONDS + $2)) out=""; shift 2
  until out="$("$@" 2>&1)"; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what; last output: $out"
    sleep 0.5
  done
}
# Keeps the pods' list and what Signpost's pods logged, in $logs, before the cleanup removes them.
save_pod_logs() {
  kubectl get pods -A -o wide > "$logs/pods.txt" 2>&1 || true
  for pod in $(kubectl -n "$sys_ns" get pods -o name 2>/dev/null); do
    kubectl -n "$sys_ns" logs "$pod" --all-containers > "$logs/${pod#pod/}.log" 2>&1 || true
  done
}
