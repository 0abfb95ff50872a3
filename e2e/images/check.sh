#!/usr/bin/env bash
# Proves the images of build.sh work, on this machine, without a cluster or a registry:
#
#   - builds them (build.sh), then again into a scratch directory: the image ids must match
#     (reproducible tars);
#   - `build.py verify` on each tar (manifest, config and diff_ids agree, sane layer), which
#     also unpacks its file system into the scratch directory;
#   - runs each image's programs in a chroot of that file system, as the image's user, in
#     throwaway namespaces (network: loopback only; /proc and /dev mounted as a runtime
#     would, which matters: busybox behaves differently with /proc, see build.py):
#       signpost   `signpost --help` (the libraries are complete), config = Dockerfile's
#       pause      ignores SIGUSR1, reaps an orphan, exits 0 on SIGTERM as PID 1
#       hostnames  its entrypoint as PID 1: GET / = host name, GET /ready 200, 404 after
#                  `rm /tmp/www/ready`, exits 0 on SIGTERM
#       client     curl, dig and nslookup against a DNS responder and an HTTP server on
#                  loopback, also through `sh -c`; its entrypoint exits 0 on SIGTERM
#   - with containerd and ctr installed (SIGNPOST_CHECK_CTR=0 skips it): `ctr images import`
#     of each tar into a throwaway containerd (own root, state and socket under the scratch
#     directory, CRI plugin off), stopped and removed afterwards.
#
# Usage: e2e/images/check.sh [name...]     (default: all four; needs root for chroot/unshare)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
die() { echo "check.sh: $*" >&2; exit 1; }
ok() { echo "check.sh: ok $*"; }

# The first line of an image config's Entrypoint + Cmd, NUL-separated, for mapfile -d ''.
image_command() { # tar
  python3 - "$1" <<'EOF'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    m = json.load(t.extractfile("manifest.json"))[0]
    c = json.load(t.extractfile(m["Config"]))["config"]
sys.stdout.write("\0".join((c.get("Entrypoint") or []) + (c.get("Cmd") or [])))
EOF
}

# Waits up to 5 s for a child of this shell to end; sets `status` to its exit status, or to
# "timeout". (Not through $(...): a subshell cannot wait for its parent's children.)
wait_exit() { # pid
  local i
  status=timeout
  for i in $(seq 50); do
    if ! kill -0 "$1" 2>/dev/null; then
      status=0
      wait "$1" || status=$?
      return
    fi
    sleep 0.1
  done
}

# The host pid of the process `unshare --fork` started (PID 1 of its new pid namespace).
ns_init() { # unshare pid
  local i child
  for i in $(seq 50); do
    child="$(pgrep -P "$1" | head -1 || true)"
    [[ -n $child ]] && { echo "$child"; return; }
    sleep 0.1
  done
  die "no child of unshare $1"
}

# What a runtime provides in a container: /dev and /proc. Only inside `unshare --mount`.
runtime_mounts() { # rootfs
  mkdir -p "$1/dev" "$1/proc"
  mount --rbind /dev "$1/dev"
  mount -t proc proc "$1/proc"
}

# ---- checks run inside namespaces (check.sh re-runs itself there: `check.sh --in <fn> ...`)

in_pause() { # rootfs
  local rf=$1 u init
  unshare --pid --fork --kill-child chroot --userspec=65535:65535 "$rf" /pause & u=$!
  pids+=("$u")
  init="$(ns_init "$u")"
  sleep 0.2
  kill -USR1 "$init"; sleep 0.2
  kill -0 "$init" 2>/dev/null || die "pause: died of SIGUSR1 (should be blocked)"
  # An orphan in the sandbox's pid namespace is re-parented to pause, which must reap it.
  nsenter --target "$init" --pid -- sh -c 'sleep 0.2 & exit 0'
  sleep 0.6
  if ps -o stat= --ppid "$init" | grep -q Z; then die "pause: left a zombie"; fi
  kill -TERM "$init"
  wait_exit "$u"
  [[ $status == 0 ]] || die "pause: exit status on SIGTERM: $status"
  ok "pause: blocks SIGUSR1, reaps orphans, exits 0 on SIGTERM as PID 1"
}

in_hostnames() { # rootfs tar
  local rf=$1 tar=$2 u init body code cmd
  ip link set lo up
  hostname hostnames-7f9c4
  runtime_mounts "$rf"
  mapfile -d '' -t cmd < <(image_command "$tar")
  unshare --pid --fork --kill-child chroot --userspec=65532:65532 "$rf" "${cmd[@]}" & u=$!
  pids+=("$u")
  init="$(ns_init "$u")"
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:9376/ && break; sleep 0.1; done
  body="$(curl -sS http://127.0.0.1:9376/)"
  [[ $body == hostnames-7f9c4 ]] || die "hostnames: GET / answered '$body', not the host name"
  code="$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9376/ready)"
  [[ $code == 200 ]] || die "hostnames: GET /ready: $code before rm, expected 200"
  chroot --userspec=65532:65532 "$rf" rm /tmp/www/ready # what `kubectl exec <pod> -- rm ...` does
  code="$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9376/ready)"
  [[ $code == 404 ]] || die "hostnames: GET /ready: $code after rm, expected 404"
  kill -TERM "$init"
  wait_exit "$u"
  [[ $status == 0 ]] || die "hostnames: exit status on SIGTERM: $status"
  ok "hostnames: GET / = host name, /ready 200 then 404 after rm, exits 0 on SIGTERM"
}

in_client() { # rootfs tar scratch
  local rf=$1 tar=$2 scratch=$3 u init out cmd
  local run=(chroot --userspec=65532:65532 "$rf")
  ip link set lo up
  runtime_mounts "$rf"
  echo "nameserver 127.0.0.1" >"$rf/etc/resolv.conf" # the kubelet mounts one in a pod
  # A DNS responder answering every A query with 127.0.0.1 (other types: no answer).
  python3 - >/dev/null 2>&1 <<'EOF' &
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True:
    q, peer = s.recvfrom(512)
    qid, flags = struct.unpack("!HH", q[:4])
    i = 12
    while q[i]:
        i += 1 + q[i]
    qtype = struct.unpack("!H", q[i + 1 : i + 3])[0]
    answer = b""
    if qtype == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton("127.0.0.1")
    header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, 1 if answer else 0, 0, 0)
    s.sendto(header + q[12 : i + 5] + answer, peer)
EOF
  pids+=($!)
  mkdir -p "$scratch/www"
  echo "hello from loopback" >"$scratch/www/index.html"
  python3 -m http.server -b 127.0.0.1 -d "$scratch/www" 8080 >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.5

  "${run[@]}" /usr/bin/curl --version >/dev/null || die "client: curl --version"
  "${run[@]}" /usr/bin/dig -v 2>/dev/null || die "client: dig -v"
  "${run[@]}" /usr/bin/nslookup -version >/dev/null 2>&1 || die "client: nslookup -version"
  out="$("${run[@]}" /usr/bin/dig +short +time=2 +tries=1 web.test)"
  [[ $out == 127.0.0.1 ]] || die "client: dig web.test answered '$out'"
  out="$("${run[@]}" /bin/sh -c 'nslookup -timeout=2 web.test')"
  grep -q '^Address: 127.0.0.1' <<<"$out" || die "client: sh -c nslookup web.test: $out"
  "${run[@]}" /bin/sh -c 'nslookup -version' 2>&1 | grep -q '^nslookup 9' ||
    die "client: 'sh -c nslookup' does not run bind's nslookup"
  "${run[@]}" /usr/bin/timeout 5 nslookup -version 2>&1 | grep -q '^nslookup 9' ||
    die "client: 'timeout 5 nslookup' does not run bind's nslookup"
  out="$("${run[@]}" /bin/sh -c 'curl -sS --max-time 5 http://web.test:8080/')"
  [[ $out == "hello from loopback" ]] || die "client: curl http://web.test:8080/ answered '$out'"

  mapfile -d '' -t cmd < <(image_command "$tar")
  unshare --pid --fork --kill-child "${run[@]}" "${cmd[@]}" & u=$!
  pids+=("$u")
  init="$(ns_init "$u")"
  sleep 0.3
  kill -0 "$u" 2>/dev/null || die "client: its entrypoint ended by itself"
  kill -TERM "$init"
  wait_exit "$u"
  [[ $status == 0 ]] || die "client: exit status on SIGTERM: $status"
  ok "client: curl, dig, nslookup (also through sh and timeout) resolve and fetch; exits 0 on SIGTERM"
}

if [[ ${1:-} == --in ]]; then
  # Whatever a check started in the background ends with it (unshare --kill-child takes its
  # child along), also when the check fails half-way.
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
  shift
  fn=$1
  shift
  "$fn" "$@"
  exit
fi

# ---- the checks

[[ $(id -u) == 0 ]] || die "needs root (chroot, unshare, mount)"
for tool in python3 chroot unshare nsenter curl ip pgrep; do
  command -v "$tool" >/dev/null || die "missing tool '$tool'"
done
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(signpost pause hostnames client)

work="$(mktemp -d /tmp/signpost-images-check.XXXXXX)"
ctd_pid=""
cleanup() {
  if [[ -n $ctd_pid ]]; then
    kill "$ctd_pid" 2>/dev/null || true
    wait "$ctd_pid" 2>/dev/null || true
  fi
  # The namespaces' /dev and /proc mounts under $work vanish with them; never rm -rf a
  # directory that still has a mount inside (it could be /dev).
  if grep -qF " $work/" /proc/self/mountinfo; then
    echo "check.sh: mounts remain under $work; left in place" >&2
    return
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$here/build.sh" "${names[@]}" | tee "$work/built"
python3 "$here/build.py" build --out "$work/again" "${names[@]}" >"$work/again.txt"
while read -r name _ _ id; do
  again="$(awk -v n="$name" '$1 == n {print $4}' "$work/again.txt")"
  [[ $again == "$id" ]] || die "$name: not reproducible: $id, then $again"
done <"$work/built"
ok "reproducible: a second build gives the same image ids"

declare -A tar_of
while read -r name _ path _; do
  tar_of[$name]=$path
  python3 "$here/build.py" verify "$path" --rootfs "$work/rootfs/$name" | sed 's/^/check.sh: /'
done <"$work/built"

for name in "${names[@]}"; do
  rf="$work/rootfs/$name"
  case $name in
    signpost)
      python3 - "$repo" "${tar_of[signpost]}" <<'EOF' || die "signpost: the image config differs from the Dockerfile"
import json, sys, tarfile
sys.path.insert(0, sys.argv[1] + "/e2e/images")
import build
stage = build.parse_final_stage(build.REPO / "Dockerfile")
with tarfile.open(sys.argv[2]) as t:
    m = json.load(t.extractfile("manifest.json"))[0]
    c = json.load(t.extractfile(m["Config"]))["config"]
want = {"User": stage.user, "Entrypoint": stage.entrypoint, "Cmd": stage.cmd, "Labels": stage.labels,
        "ExposedPorts": {p: {} for p in stage.exposed_ports}}
bad = {k: (c.get(k), v) for k, v in want.items() if c.get(k) != v}
if bad:
    sys.exit(f"check.sh: signpost config (image, Dockerfile): {bad}")
# The binary's file capabilities: what the Dockerfile's setcap gives the file it copies.
copy = stage.copies[0]
setcap = build.dockerfile_setcap(build.REPO / "Dockerfile", copy.sources[0])
with tarfile.open(sys.argv[2]) as t:
    layer = tarfile.open(fileobj=t.extractfile(m["Layers"][0]))
    info = layer.getmember(copy.dest.lstrip("/"))
raw = info.pax_headers.get("SCHILY.xattr.security.capability")
have = raw.encode("utf-8", "surrogateescape") if raw is not None else None
if have != (build.file_capabilities(setcap) if setcap else None):
    sys.exit(f"check.sh: {copy.dest} file capabilities {have!r}, Dockerfile's setcap {setcap!r}")
EOF
      dest="$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1] + "/e2e/images"); import build
print(build.parse_final_stage(build.REPO / "Dockerfile").copies[0].dest)' "$repo")"
      chroot --userspec=65532:65532 "$rf" "$dest" --help >"$work/help.txt" ||
        die "signpost: '$dest --help' failed in a chroot of the image"
      grep -qi usage "$work/help.txt" || die "signpost: --help printed no usage"
      ok "signpost: config and file capabilities = the Dockerfile's; $dest --help runs in a chroot of the image"
      ;;
    pause) unshare --mount "$0" --in in_pause "$rf" ;;
    hostnames) unshare --net --uts --mount "$0" --in in_hostnames "$rf" "${tar_of[hostnames]}" ;;
    client) unshare --net --mount "$0" --in in_client "$rf" "${tar_of[client]}" "$work" ;;
  esac
done

if [[ ${SIGNPOST_CHECK_CTR:-1} != 0 ]] && command -v containerd >/dev/null && command -v ctr >/dev/null; then
  d="$work/containerd"
  mkdir -p "$d"
  containerd config default | sed \
    -e 's|^disabled_plugins = \[\]|disabled_plugins = ["io.containerd.grpc.v1.cri"]|' \
    -e "s|^root = .*|root = \"$d/root\"|" \
    -e "s|^state = .*|state = \"$d/state\"|" \
    -e "s|\"/run/containerd/containerd.sock\"|\"$d/containerd.sock\"|" \
    -e "s|\"/opt/containerd\"|\"$d/opt\"|" >"$d/config.toml"
  grep -q "^root = \"$d/root\"" "$d/config.toml" && grep -q "\"$d/containerd.sock\"" "$d/config.toml" ||
    die "could not point containerd's config at $d"
  containerd --config "$d/config.toml" >"$d/log" 2>&1 & ctd_pid=$!
  for _ in $(seq 100); do [[ -S $d/containerd.sock ]] && break; sleep 0.1; done
  [[ -S $d/containerd.sock ]] || die "throwaway containerd did not start: $(tail -1 "$d/log")"
  ctr=(ctr --address "$d/containerd.sock" -n k8s.io)
  while read -r name ref path id; do
    "${ctr[@]}" images import "$path" >/dev/null || die "$name: ctr images import $path failed"
    manifest="$("${ctr[@]}" images ls "name==$ref" | awk -v r="$ref" '$1 == r {print $3}')"
    [[ -n $manifest ]] || die "$name: $ref not listed after import"
    config="$("${ctr[@]}" content get "$manifest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')"
    [[ $config == "$id" ]] || die "$name: containerd's config digest $config, build.sh said $id"
    ok "$name: ctr images import: $ref, image id $id"
  done <"$work/built"
  kill "$ctd_pid"
  wait "$ctd_pid" 2>/dev/null || true
  ctd_pid=""
fi
echo "check.sh: all checks passed"
