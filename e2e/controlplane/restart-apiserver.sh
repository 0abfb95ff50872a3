#!/usr/bin/env bash
# Restarts the local control plane's kube-apiserver with the command line it runs with now:
# SIGTERM, wait for it to exit, start it again (setsid, in the background, appending to its
# log and writing its new pid file), then wait for /readyz as up.sh does. etcd and the other
# components keep running, so clients see the API go away and come back with its data intact,
# as in a rolling restart of a real control plane. Used by the e2e test `apiserver_restart`.
#
# kube-apiserver closes its listener at once on SIGTERM but then drains long-running requests
# (watches) for up to a minute; the API is unusable for everyone meanwhile, so after
# SIGNPOST_APISERVER_STOP_TIMEOUT seconds (default 15) the old process gets SIGKILL.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"
source "$here/cluster.sh"

pid="$(pid_of kube-apiserver)"
if ! alive kube-apiserver; then
  echo "!! kube-apiserver is not running (pid file $STATE/pids/kube-apiserver.pid: '${pid}'); start the control plane with up.sh" >&2
  exit 1
fi
# The exact argv, NUL-separated, and the working directory, before the process goes away.
mapfile -d '' -t cmd < "/proc/$pid/cmdline"
cwd="$(readlink "/proc/$pid/cwd")"
if (( ${#cmd[@]} == 0 )); then
  echo "!! could not read the command line of pid $pid" >&2
  exit 1
fi

# Exited means gone or a zombie: the API server's parent (up.sh) is long gone, and whoever
# inherits it may reap it late, so `kill -0` alone would wait for the reaper, not the exit.
running() { # pid
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

start=$SECONDS
echo "==> stopping kube-apiserver (pid $pid)"
kill -TERM "$pid"
stop_timeout="${SIGNPOST_APISERVER_STOP_TIMEOUT:-15}"
deadline=$((SECONDS + stop_timeout))
killed=0
while running "$pid"; do
  if (( SECONDS >= deadline && ! killed )); then
    echo "    still draining after ${stop_timeout} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    killed=1
  fi
  sleep 0.1
done
echo "    stopped after $((SECONDS - start)) s"

echo "==> starting kube-apiserver again"
echo "==> restart at $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$STATE/logs/kube-apiserver.log"
# A plain `setsid cmd &` in this shell, as up.sh's start_component does, so `$!` is the API
# server itself: wrapped in a list or a subshell, bash would fork an extra shell that becomes the
# recorded pid and keeps this script's stdout open for the API server's lifetime.
cd "$cwd"
setsid "${cmd[@]}" >>"$STATE/logs/kube-apiserver.log" 2>&1 < /dev/null &
echo $! > "$STATE/pids/kube-apiserver.pid"
pki="$STATE/pki"
wait_for kube-apiserver 120 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
  "https://127.0.0.1:$APISERVER_PORT/readyz"
echo "kube-apiserver restarted (pid $(pid_of kube-apiserver)) in $((SECONDS - start)) s"
