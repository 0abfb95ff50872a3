#!/usr/bin/env bash
# Builds the e2e container images as docker-archive tars under target/images, without Docker
# or a registry (see build.py for the format and what each image holds):
#
#   signpost   signpost.local/signpost:dev    the release Dockerfile's final stage + target/release/signpost
#   pause      signpost.local/pause:3.10      pod sandbox, pause.c compiled static
#   hostnames  signpost.local/hostnames:1     busybox httpd on 9376 answering the pod's host name
#   client     signpost.local/client:1        busybox + curl, dig, nslookup
#   agnhost    registry.k8s.io/e2e-test-images/agnhost:<the version e2e.test asks for>
#                                             Kubernetes' e2e test image: agnhost built from the
#                                             control plane's release, + the client's tools and nc
#   glibc-dns-testing  registry.k8s.io/e2e-test-images/glibc-dns-testing:<version>
#                                             the DNS specs' glibc querier: getent, dig, a shell
#
# Usage: e2e/images/build.sh [name...]      (default: all six)
# Prints one line per image: <name> <reference> <path> <image id>. Load one into containerd
# with `ctr -n k8s.io images import target/images/<name>.tar`; check them with check.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

die() { echo "build.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "missing tool 'python3'"

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(signpost pause hostnames client agnhost glibc-dns-testing)
controlplane="$repo/e2e/controlplane"

for name in "${names[@]}"; do
  if [[ $name == signpost ]]; then
    # The image's binary; cargo does nothing when it is up to date. Its output goes to
    # stderr so that stdout stays one line per image.
    command -v cargo >/dev/null || die "missing tool 'cargo' (rustup, see e2e/setup.sh)"
    (cd "$repo" && cargo build --release -p signpost-controllers --bin signpost) >&2 ||
      die "cargo build --release -p signpost-controllers --bin signpost failed"
  fi
  if [[ $name == agnhost ]]; then
    # agnhost from the Go module proxy (cached).
    "$controlplane/build.sh" agnhost >&2 || die "e2e/controlplane/build.sh agnhost failed"
    k8s_bin="$(here="$controlplane" && source "$controlplane/lib.sh" && bin_dir k8s)"
    export SIGNPOST_AGNHOST_BIN="$k8s_bin/agnhost"
  fi
  if [[ $name == agnhost || $name == glibc-dns-testing ]] && [[ -z ${SIGNPOST_KUBERNETES_SOURCE:-} ]]; then
    # The source e2e.test is built from: its image manifest names the reference the specs'
    # pods ask for.
    SIGNPOST_KUBERNETES_SOURCE="$(cd "$controlplane/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)" ||
      die "cannot find the k8s.io/kubernetes module's source (cd e2e/controlplane/k8s && go mod download)"
    export SIGNPOST_KUBERNETES_SOURCE
  fi
done

exec python3 "$here/build.py" build "${names[@]}"
