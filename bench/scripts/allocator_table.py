#!/usr/bin/env python3
"""Renders the allocator benchmark's JSON lines as a Markdown table.

Reads <dir>/signpost-<run>.jsonl and <dir>/kubernetes-<run>.jsonl (one JSON object per
measurement, written by bench/src/bin/allocbench.rs and
e2e/controlplane/k8s/ipallocbench), prints the table on stdout and, with --doc, replaces the
"## Allocator" section of docs/benchmarks.md (creating the file if needed) with the table,
the machine description and the method. Called by bench/scripts/allocator.sh.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_doc import markdown_table, write_section

SIDES = ("signpost", "kubernetes")
TARGET_NEXT_NS = 250.0  # issue 14: allocate-next <= 0.25 us per address on a /12
TARGET_V6_BYTES = 1_000_000  # issue 14: IPv6 /64, 100,000 + 1,000 random, under 1 MB
EXPECTED_COUNT = {"10.96.0.0/16": 65_534, "10.96.0.0/12": 1_048_574}


def load(directory, runs):
    """results[side][run] = list of measurements."""
    results = {}
    for side in SIDES:
        results[side] = []
        for run in range(1, runs + 1):
            path = Path(directory) / f"{side}-{run}.jsonl"
            lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
            results[side].append(lines)
    return results


def find(lines, **want):
    for m in lines:
        if all(m.get(k) == v for k, v in want.items()):
            return m
    raise KeyError(f"no measurement {want}")


def values(results, side, field, **want):
    return [find(lines, **want)[field] for lines in results[side]]


def fmt_ns(v):
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def fmt_bytes(v):
    return f"{v:,.0f} B"


def spread(vs):
    """Largest difference between runs, as % of their mean."""
    mean = statistics.mean(vs)
    if mean == 0:
        return 0.0
    return (max(vs) - min(vs)) / mean * 100


def agreement(results, field, fmt, **want):
    parts = []
    for side, label in (("signpost", "S"), ("kubernetes", "K")):
        vs = values(results, side, field, **want)
        runs = " vs ".join(fmt(v) for v in vs)
        parts.append(f"{label} {runs} ({spread(vs):.0f} %)")
    return "; ".join(parts)


def ratio(s, k):
    if k == 0:
        return "n/a"
    r = s / k
    return f"{r:.3g}"


def table(results):
    rows = []
    mean = statistics.mean

    # allocate-next until full.
    fills = {}
    for cidr, label in (("10.96.0.0/16", "/16"), ("10.96.0.0/12", "/12")):
        cells = []
        for side in SIDES:
            ns = mean(values(results, side, "ns_per_op", workload="fill", cidr=cidr))
            ms = mean(values(results, side, "total_ms", workload="fill", cidr=cidr))
            counts = set(values(results, side, "count", workload="fill", cidr=cidr))
            count = counts.pop() if len(counts) == 1 else None
            ok = count == EXPECTED_COUNT[cidr]
            check = "" if ok else f" **expected {EXPECTED_COUNT[cidr]:,}, runs gave {sorted(counts | {count})}**"
            cells.append(f"{fmt_ns(ns)} ns/address; {ms:,.1f} ms for {count:,}{check}" if count else f"{fmt_ns(ns)} ns/address{check}")
            fills[(cidr, side)] = ns
        rows.append((
            f"allocate-next until full, IPv4 {label} ({EXPECTED_COUNT[cidr]:,} addresses)",
            cells[0],
            cells[1],
            ratio(fills[(cidr, "signpost")], fills[(cidr, "kubernetes")]),
            agreement(results, "ns_per_op", fmt_ns, workload="fill", cidr=cidr),
        ))
    s12, k12 = fills[("10.96.0.0/12", "signpost")], fills[("10.96.0.0/12", "kubernetes")]

    def met(ns):
        return f"{'**met**' if ns <= TARGET_NEXT_NS else '**not met**'} ({fmt_ns(ns)} ns)"

    rows.append((
        "target (issue 14): allocate-next ≤ 0.25 µs per address on a /12",
        met(s12),
        met(k12),
        "",
        "",
    ))

    # churn.
    pairs = None
    for cidr, label in (("10.96.0.0/16", "/16"), ("10.96.0.0/12", "/12")):
        for pct in (50, 99):
            want = dict(workload="churn", cidr=cidr, fill_pct=pct)
            s = mean(values(results, "signpost", "ns_per_pair", **want))
            k = mean(values(results, "kubernetes", "ns_per_pair", **want))
            pairs = find(results["signpost"][0], **want)["pairs"]
            rows.append((
                f"churn at {pct} % full, IPv4 {label}: release a random address + allocate-next",
                f"{fmt_ns(s)} ns/pair",
                f"{fmt_ns(k)} ns/pair",
                ratio(s, k),
                agreement(results, "ns_per_pair", fmt_ns, **want),
            ))

    # memory.
    states = [
        ("full", "10.96.0.0/16", "memory, IPv4 /16 full"),
        ("full", "10.96.0.0/12", "memory, IPv4 /12 full"),
        ("50% full after churn", "10.96.0.0/16", "memory, IPv4 /16 50 % full after churn"),
        ("99% full after churn", "10.96.0.0/16", "memory, IPv4 /16 99 % full after churn"),
        ("50% full after churn", "10.96.0.0/12", "memory, IPv4 /12 50 % full after churn"),
        ("99% full after churn", "10.96.0.0/12", "memory, IPv4 /12 99 % full after churn"),
    ]
    for state, cidr, label in states:
        want = dict(workload="memory", state=state, cidr=cidr)
        sh = mean(values(results, "signpost", "heap_bytes", **want))
        sb = mean(values(results, "signpost", "bitmap_bytes", **want))
        kh = mean(values(results, "kubernetes", "heap_bytes", **want))
        kb = mean(values(results, "kubernetes", "bitmap_bytes", **want))
        rows.append((
            label,
            f"heap ≈ {fmt_bytes(sh)} (serialized bitmap {fmt_bytes(sb)})",
            f"heap {fmt_bytes(kh)} (bitmap {fmt_bytes(kb)})",
            ratio(sh, kh),
            agreement(results, "heap_bytes", fmt_bytes, **want),
        ))

    # sparse IPv6.
    sv = [find(lines, workload="ipv6") for lines in results["signpost"]]
    kv = [find(lines, workload="ipv6") for lines in results["kubernetes"]]
    smem = [find(lines, workload="memory", cidr=sv[0]["cidr"]) for lines in results["signpost"]]
    kmem = [find(lines, workload="memory", cidr=kv[0]["cidr"]) for lines in results["kubernetes"]]
    s_next = mean(m["ns_per_op"] for m in sv)
    s_rand = mean(m["random_ns_per_op"] for m in sv)
    s_heap = mean(m["heap_bytes"] for m in smem)
    s_bits = mean(m["bitmap_bytes"] for m in smem)
    k0 = kv[0]
    rows.append((
        f"IPv6 /64: {sv[0]['sequential_requested']:,} allocate-next + "
        f"{sv[0]['random_requested']:,} requests at random offsets",
        f"{sv[0]['sequential_handed']:,} handed out ({fmt_ns(s_next)} ns each), "
        f"{sv[0]['random_granted']:,}/{sv[0]['random_requested']:,} random granted "
        f"({fmt_ns(s_rand)} ns each); heap ≈ {fmt_bytes(s_heap)} "
        f"(serialized bitmap {fmt_bytes(s_bits)})",
        f"cannot hold a /64: `NewInMemory` caps an IPv6 range at 65,536 addresses "
        f"(bitmap.go `New`: `if max > 65536 {{ max = 65536 }}`, then one less for the "
        f"network address), so {k0['capacity']:,} usable. Measured: "
        f"{k0['sequential_handed']:,} handed out, then \"{k0['sequential_error']}\"; "
        f"{k0['random_granted']:,}/{k0['random_requested']:,} random requests granted "
        f"({k0['random_not_in_range']:,} not in range); bitmap {fmt_bytes(kmem[0]['bitmap_bytes'])}, heap {fmt_bytes(mean(m['heap_bytes'] for m in kmem))}",
        "n/a",
        agreement(results, "heap_bytes", fmt_bytes, workload="memory", cidr=sv[0]["cidr"]),
    ))
    rows.append((
        "target (issue 14): that IPv6 /64 workload in under 1 MB",
        f"{'**met**' if max(s_heap, s_bits) < TARGET_V6_BYTES else '**not met**'} "
        f"(heap ≈ {fmt_bytes(s_heap)})",
        "n/a (cannot hold it)",
        "",
        "",
    ))

    header = (
        "| workload | Signpost | Kubernetes ipallocator | ratio (Signpost/Kubernetes; < 1 is better) "
        "| run 1 vs run 2 agreement (S = Signpost, K = Kubernetes; spread as % of mean) |"
    )
    reps = find(results["signpost"][0], workload="fill")["reps"]
    return markdown_table(header, rows), pairs, reps


METHOD = """\
Method (`bench/scripts/allocator.sh`, run by `just bench-allocator` and `just bench`):

- Both sides run in their own process on the same machine in the same run, interleaved
  (Signpost run 1, Kubernetes run 1, Signpost run 2, ...). Inside a run each timed
  allocate-next and churn workload is repeated {reps} times from an empty allocator and the
  fastest repetition counts (the machine is shared; the minimum is the least noisy
  estimate); cells are the mean of the runs, and the last column compares the runs.
  Signpost: `bench/src/bin/allocbench.rs`, `cargo build --release`, calling
  `signpost_controllers::ipam::Allocator` (default quarantine of 1,024 per CIDR).
  Kubernetes: `e2e/controlplane/k8s/ipallocbench/main.go`, `go build`, calling
  `ipallocator.NewInMemory` (`k8s.io/kubernetes/pkg/registry/core/service/ipallocator`, the
  `big.Int` bitmap with a random-start linear scan) through its public `Range` API
  (`AllocateNext`, `Allocate`, `Release`), which returns a fresh `net.IP` per call.
- allocate-next until full: from an empty range until the allocator reports it full;
  the count handed out must be 65,534 (/16) and 1,048,574 (/12).
- churn: allocate-next to 50 % / 99 % of the usable addresses, then {pairs:,} pairs of
  (release a held address chosen by SplitMix64 with a fixed seed, allocate-next); the
  same harness and seed on both sides. The time per pair includes the harness (one random
  number, one slice store).
- memory: Kubernetes: `runtime.MemStats.HeapAlloc` after GC minus the same before the
  allocator was created, with the harness's address list dropped (so: the `Range`, its
  `big.Int` bitmap and bookkeeping); "bitmap" is the allocator's snapshot size. Signpost:
  the workspace forbids `unsafe`, so no counting global allocator: heap ≈ growth of the
  resident set over K clones of the allocator / K (clones copy every heap structure at its
  length; K is chosen so the clones take about 64 MiB, and a first, unmeasured batch of K
  clones uses up memory malloc already holds free), so it includes malloc overhead;
  "serialized bitmap" is `Allocator::bitmap_bytes()` (roaring serialized size, plus 16
  bytes per quarantined address). After churn Signpost also holds the quarantine of the
  last 1,024 released addresses; the Kubernetes bitmap has none.
- IPv6: `fd00:10:96::/64`, 100,000 allocate-next then 1,000 `allocate` at random offsets
  (SplitMix64) of the /64. The Kubernetes side runs the same calls and reports what happens.
- Context: in v1.37 kube-apiserver no longer uses this bitmap for ClusterIPs:
  `MultiCIDRServiceAllocator` (GA in v1.33) and `DisableAllocatorDualWrite` (locked on since
  v1.35) make it allocate through `IPAddress` objects in the API
  (`pkg/registry/core/rest/storage_core.go`). The bitmap `Range` is the allocator those
  releases replaced (when it was used, every change was also written to etcd, which this
  in-memory benchmark leaves out); the same `allocator.AllocationBitmap` still backs the
  NodePort allocator. With the bitmap allocator kube-apiserver also refused a
  `--service-cluster-ip-range` with more than 20 host bits (IPv6 shorter than /108,
  `cmd/kube-apiserver/app/options/validation.go`).
- Figures only: nothing fails on speed. The machine is shared with other builds, so treat
  the spread column as the noise floor.
"""


def section(table_md, machine, pairs, reps):
    return (
        "## Allocator\n\n"
        "Signpost's ClusterIP allocator next to Kubernetes' own bitmap `ipallocator`, same "
        "machine, same run (issue 9). Written by `bench/scripts/allocator.sh`; rerun "
        "`just bench-allocator` to refresh this section.\n\n"
        + table_md
        + "\n\nMachine:\n\n"
        + machine.strip()
        + "\n\n"
        + METHOD.format(pairs=pairs, reps=reps)
    )


DOC_HEADER = """\
# Benchmarks

`just bench` runs every part below (`bench/scripts/run.sh`); each part rewrites only its own
section of this file. Figures are indicative: they come from whatever machine ran the
benchmark, described in each section.

"""


def write_doc(path, body):
    write_section(path, "## Allocator", body, DOC_HEADER)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dir", required=True)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--pairs", type=int, default=200_000)
    p.add_argument("--machine", required=True)
    p.add_argument("--doc")
    a = p.parse_args()
    results = load(a.dir, a.runs)
    table_md, pairs, reps = table(results)
    machine = Path(a.machine).read_text()
    print(table_md)
    print()
    print(machine.strip())
    if a.doc:
        write_doc(a.doc, section(table_md, machine, pairs or a.pairs, reps))
        print(f"\n(written to {a.doc}, section \"## Allocator\")", file=sys.stderr)


if __name__ == "__main__":
    main()
