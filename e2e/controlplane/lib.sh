# Shared helpers for the local control plane scripts; sourced, not run.

# Root of the binary cache; every component is keyed by its pinned version.
SIGNPOST_CACHE="${SIGNPOST_CACHE:-$HOME/.cache/signpost}"

# The version a wrapper module pins for a module, read from its go.mod so that go.mod is the
# single place a version is written.
module_version() { # module-dir module-path
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' \
    "$here/$1/go.mod"
}

bin_dir() { # component
  case "$1" in
    k8s) echo "$SIGNPOST_CACHE/k8s-$(module_version k8s k8s.io/kubernetes)/bin" ;;
    etcd) echo "$SIGNPOST_CACHE/etcd-$(module_version etcd go.etcd.io/etcd/server/v3)/bin" ;;
    kwok) echo "$SIGNPOST_CACHE/kwok-$(module_version kwok sigs.k8s.io/kwok)/bin" ;;
    helm) echo "$SIGNPOST_CACHE/helm-$(module_version helm helm.sh/helm/v4)/bin" ;;
  esac
}
