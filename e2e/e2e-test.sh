# shellcheck shell=bash
# Sourced by the scripts that run Kubernetes' own e2e specs against Signpost (e2e/conformance.sh
# on the local control plane, e2e/real/conformance.sh on real nodes): building e2e.test, running
# it, a line per spec from its JUnit report, and the check that every Service address the API
# server recorded during a run is one of Signpost's. Expects $root (the repository) and the
# control plane's lib.sh (bin_dir) to be loaded.

# Builds e2e.test once per Kubernetes release (cached) and sets $e2e_test to it.
e2e_test_build() {
  "$root/e2e/controlplane/build.sh" e2e-test
  e2e_test="$(bin_dir k8s)/e2e.test"
}

# Runs e2e.test against $KUBECONFIG with its output in $report (e2e.log, junit_01.xml) and on
# stdout; returns e2e.test's status. Usage: e2e_test_run <report> <e2e.test flags...>.
e2e_test_run() {
  local report="$1"; shift
  local status
  set +e
  "$e2e_test" --kubeconfig "$KUBECONFIG" --provider skeleton \
    --ginkgo.no-color --ginkgo.silence-skips --ginkgo.timeout=1h \
    --report-dir "$report" --e2e-output-dir "$report" "$@" \
    2>&1 | tee "$report/e2e.log"
  status="${PIPESTATUS[0]}"
  set -e
  return "$status"
}

# One line per spec that ran, PASS or FAIL and its name (suite set-up nodes left out).
e2e_test_summary() { # report
  [[ -f "$1/junit_01.xml" ]] || { echo "    (no JUnit report in $1)"; return 0; }
  awk '
    /<testcase / {
      match($0, /name="[^"]*"/); name = substr($0, RSTART + 6, RLENGTH - 7)
      state = "PASS"; open = ($0 !~ /\/>/)
    }
    open && /<skipped/ { state = "SKIP" }
    open && /<failure/ { state = "FAIL" }
    /<\/testcase>/ || (/<testcase / && !open) {
      if (name ~ /^\[It\] / && state != "SKIP") print "    " state "  " substr(name, 6)
      name = ""; open = 0
    }' "$1/junit_01.xml"
}

# addresses_outside, probe_service_address
source "$root/e2e/addresses.sh"

# Records every IPAddress the API server creates from now on in $1/ipaddresses.txt (deletions
# of an earlier run's addresses may show up too; ipaddresses_check leaves them out). Sets
# $ipaddress_watch_pid; ipaddresses_check stops it.
ipaddresses_watch() { # report
  kubectl get ipaddresses --watch-only --output-watch-events \
    -o jsonpath='{.type} {.object.metadata.name} {.object.spec.parentRef.resource}/{.object.spec.parentRef.namespace}/{.object.spec.parentRef.name}{"\n"}' \
    >"$1/ipaddresses.txt" 2>"$1/ipaddresses.err" &
  ipaddress_watch_pid=$!
}

# Stops the watch and fails (status 1, the strays on stderr) when a Service got an address
# outside Signpost's CIDRs during the run, that is, an address the webhook did not choose.
ipaddresses_check() { # report "cidr..."
  local report="$1" cidrs="$2" addresses strays
  kill -TERM "$ipaddress_watch_pid" 2>/dev/null || true
  wait "$ipaddress_watch_pid" 2>/dev/null || true
  ipaddress_watch_pid=
  mapfile -t addresses < <(awk '$1 == "ADDED" && $3 ~ /^services\// { print $2 }' \
    "$report/ipaddresses.txt" | sort -u)
  mapfile -t strays < <(addresses_outside "$cidrs" "${addresses[@]}")
  echo "    ClusterIPs given to the run's Services: ${#addresses[@]}, outside $cidrs: ${#strays[@]}"
  if ((${#strays[@]} > 0)); then
    echo "FAIL: Services got addresses Signpost did not choose (was the webhook called?):" >&2
    grep -Fw -f <(printf '%s\n' "${strays[@]}") "$report/ipaddresses.txt" | sort -u | head -n 20 >&2
    return 1
  fi
}
