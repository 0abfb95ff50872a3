#!/usr/bin/env bash
# Builds the local control plane's binaries (and helm) from the Go module proxy, once per
# version, into ~/.cache/signpost/<component>-<version>/bin. Prints one line per binary.
# Usage: build.sh [component...]   (default: all; components: etcd k8s node kwok helm e2e-test
# agnhost; node is the real nodes' kubelet and kube-proxy, e2e-test Kubernetes' own e2e suite
# binary `e2e.test` (e2e/conformance.sh), agnhost the binary of the e2e suite's test image
# (e2e/images: the image e2e.test's pods run on real nodes), all kept in k8s's directory)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"

# The ldflags that stamp a Kubernetes binary with its release (unstamped, kubectl refuses the
# server's version).
k8s_ldflags() {
  local ver; ver="$(module_version k8s k8s.io/kubernetes)"
  local minor; minor="$(echo "$ver" | cut -d. -f2)"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$ld"
}

build_k8s_cmds() { # cmd...
  local out ld cmd
  out="$(bin_dir k8s)"
  ld="$(k8s_ldflags)"
  for cmd in "$@"; do
    build_one k8s "$out" "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$ld"
  done
}

build_one() { # module-dir out-dir binary package ldflags [go-command...]
  local mod="$1" out="$2" bin="$3" pkg="$4" ld="$5"
  shift 5
  local gocmd=("$@")
  [[ ${#gocmd[@]} -gt 0 ]] || gocmd=(build)
  if [[ -x "$out/$bin" ]]; then
    echo "==> $bin: cached ($out/$bin)"
    return
  fi
  mkdir -p "$out"
  local start=$SECONDS
  echo "==> $bin: building $pkg (cold builds take minutes)"
  (cd "$here/$mod" && CGO_ENABLED=0 go "${gocmd[@]}" -trimpath -ldflags "$ld" -o "$out/$bin.tmp" "$pkg")
  mv "$out/$bin.tmp" "$out/$bin"
  echo "==> $bin: built in $((SECONDS - start)) s"
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd k8s node kwok helm e2e-test agnhost)
for c in "${components[@]}"; do
  case "$c" in
    k8s) build_k8s_cmds kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
    node) build_k8s_cmds kubelet kube-proxy ;;
    # The e2e suite is the test binary of one package (its test main is e2e_test.go); the
    # modules it needs are in k8s/go.sum through k8s/tools_e2e.go.
    e2e-test) build_one k8s "$(bin_dir k8s)" e2e.test k8s.io/kubernetes/test/e2e "$(k8s_ldflags)" test -c ;;
    # Static (CGO off, as every binary here): the image holds no libraries for it.
    agnhost) build_one k8s "$(bin_dir k8s)" agnhost k8s.io/kubernetes/test/images/agnhost "-s -w" ;;
    etcd) build_one etcd "$(bin_dir etcd)" etcd go.etcd.io/etcd/server/v3 "-s -w" ;;
    kwok) build_one kwok "$(bin_dir kwok)" kwok sigs.k8s.io/kwok/cmd/kwok "-s -w" ;;
    helm) build_one helm "$(bin_dir helm)" helm helm.sh/helm/v4/cmd/helm "-s -w" ;;
    *) echo "build.sh: unknown component '$c' (expected etcd, k8s, node, kwok, helm, e2e-test or agnhost)" >&2; exit 2 ;;
  esac
done
