# Signpost's tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

controlplane := "e2e/controlplane"

# The kubectl built from the same Kubernetes release as the control plane comes first on PATH.
export PATH := `bash -c 'here=e2e/controlplane; source $here/lib.sh; bin_dir k8s'` + ":" + env_var("PATH")

# List the recipes.
default:
    @just --list --unsorted

# Install what is missing on a fresh machine (just, Debian packages).
setup:
    bash e2e/setup.sh

# The first seed's demo, for real inside a network namespace, in ClusterIP mode: the Service's one address in kubectl get svc, its ServiceIP claim and its DNSRecord, dig of its name and curl of it three times (three pods). Needs root.
demo: build
    e2e/with-cluster.sh e2e/demo.sh

# The first seed's journey with real pods: real nodes (kubelet, containerd, kube-proxy in network namespaces), helm install of the chart from the image built here, nslookup and curl from a client pod, a failing readiness probe, a leader failover; the release is left installed on a running cluster. Needs root.
demo-real:
    SIGNPOST_KEEP=1 SIGNPOST_REAL_NODES="${SIGNPOST_REAL_NODES:-2}" e2e/with-cluster.sh e2e/real/run.sh

# The same journey as a test (every step asserts), then ClusterIP mode's (e2e-real-cluster-ip); run by .ci/run after `just test`. Needs root.
e2e-real:
    SIGNPOST_REAL_NODES="${SIGNPOST_REAL_NODES:-2}" e2e/with-cluster.sh e2e/real/run.sh seeds cluster-ip

# ClusterIP mode on real nodes: helm install with clusterIPMode=true; a new Service's CLUSTER-IP is Signpost's address (claim, IPAddress, DNSRecord agree) and kube-proxy routes it to the pods; the webhook follows a leader failover; then Kubernetes' Services specs with pods (e2e/real/conformance.sh). Needs root.
e2e-real-cluster-ip:
    SIGNPOST_REAL_NODES="${SIGNPOST_REAL_NODES:-2}" e2e/with-cluster.sh e2e/real/run.sh cluster-ip

# Build Signpost's image (and the journeys' pause, hostnames and client images) as tars in target/images, and load them into every running real node.
image:
    e2e/images/build.sh
    e2e/nodes/import.sh

# Every test: unit, integration and e2e (starts the local control plane when KUBECONFIG is not set).
test: build
    e2e/with-cluster.sh e2e/test-all.sh

# Unit tests only: pure logic, no cluster.
test-unit:
    cargo test --workspace

# Build the signpost binary.
build:
    cargo build --workspace --bins

# Regenerate the chart's CRDs from the Rust types.
crds:
    cargo run -q -p signpost-crds --bin crdgen

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Build (cached) and start the local control plane; prints the KUBECONFIG to export. SIGNPOST_REAL_NODES=2 adds two real nodes (needs root).
cluster-up:
    {{controlplane}}/up.sh

# Stop the local control plane started by cluster-up and remove its state.
cluster-down:
    {{controlplane}}/down.sh

# Make a pod of the local control plane ready or not ready: just pod-ready demo hostnames-xyz false
pod-ready namespace pod ready:
    {{controlplane}}/pod-ready.sh {{namespace}} {{pod}} {{ready}}

# Check the Helm chart: lint, schema, render (default and dual-stack), server-side dry-run, least-privilege RBAC.
chart-check:
    e2e/with-cluster.sh e2e/chart-check.sh

# Prove the chart's RBAC is enough: helm install, then signpost run with the chart's ServiceAccount token; then the same in ClusterIP mode (ServiceCIDR, IPAddresses, the leader label, the webhook over the chart's certificate).
rbac-check: build
    e2e/with-cluster.sh e2e/rbac-check.sh

# Kubernetes' own e2e specs for Endpoints and EndpointSlices (e2e.test of the same release, API objects only) with Signpost as the endpoint controllers; SIGNPOST_CONFORMANCE_MODE=cluster-ip adds ClusterIP mode's specs; see docs/conformance.md.
conformance: build
    e2e/with-cluster.sh e2e/conformance.sh

# Benchmarks: every part of bench/scripts/run.sh (allocator, controllers, dns, proxy), as Markdown tables also written to docs/benchmarks.md. The proxy part needs root.
bench:
    bench/scripts/run.sh

# Allocator benchmark: Signpost's allocator next to Kubernetes' bitmap ipallocator, same machine, same run.
bench-allocator:
    bench/scripts/run.sh allocator

# The end-to-end suite: the built signpost binary as processes (journeys, faults, bad input, API server restart) against the cluster; starts the local control plane when KUBECONFIG is not set.
e2e: build
    e2e/with-cluster.sh cargo test -p signpost-e2e --all-features -- --nocapture

# Controller benchmark only (100 Services × 10 pods, then 200 × 20): Signpost next to kube-controller-manager's endpoint controllers.
bench-controllers:
    bench/scripts/run.sh controllers

# The large controller benchmark: 1,000 Services × 20 pods (20,000 pods), same workloads, with
# the alternating batches (18 per side, as at the smaller sizes: with 9, kube-controller-manager's
# pooled p99 moved 918 → 380 ms between rounds) and 9 rollouts (over 3, its writes per replaced
# pod moved by a fifth between runs). About 85 minutes here.
bench-large:
    BENCH_SIZES=1000x20 BENCH_ROLLOUTS=9 bench/scripts/run.sh controllers

# DNS benchmark: signpost dns next to CoreDNS's kubernetes plugin (1,000 Services under load, memory at 1,000 and 10,000).
bench-dns:
    bench/scripts/run.sh dns

# Proxy benchmark: the latency signpost proxy adds over a direct connection to the pod (p50, p99) and connections per second, inside a network namespace. Needs root.
bench-proxy:
    bench/scripts/run.sh proxy
