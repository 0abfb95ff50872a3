#!/usr/bin/env bash
# Installs what Signpost's tests, demo and benchmarks need on a fresh machine, from the
# registries our machines reach: `just` from crates.io, Debian packages, and (through the
# Justfile's recipes) the control plane and helm built from the Go module proxy.
# Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
# command:package; the real nodes need containerd, runc, the CNI plugins, nft (kube-proxy) and
# busybox and OpenBSD's nc (the images built in e2e/images).
for pair in curl:curl openssl:openssl ip:iproute2 dig:dnsutils dnsperf:dnsperf \
  containerd:containerd runc:runc nft:nftables busybox:busybox-static gcc:gcc \
  nc.openbsd:netcat-openbsd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || need_apt+=(containernetworking-plugins)
if ((${#need_apt[@]})); then
  echo "==> apt-get install ${need_apt[*]}"
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

for tool in cargo go; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: '$tool' is required but not installed" >&2; exit 1; }
done

if ! command -v just >/dev/null 2>&1; then
  echo "==> cargo install just (once, about a minute)"
  cargo install --locked --quiet just
fi
echo "==> setup done: $(just --version)"
