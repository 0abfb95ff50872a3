#!/usr/bin/env python3
"""Renders the proxy benchmark's JSON lines as a Markdown table.

Reads the lines bench/src/bin/proxy_bench.rs printed (a "setup" line, then one "round" line per
round), prints the table and the machine description on stdout and, with --doc, replaces the
"## Proxy" section of docs/benchmarks.md (the section runs to the next level-2 heading; it is
appended if missing) with the table, the machine and the method. Called by bench/scripts/proxy.sh.

Usage: proxy_table.py --results FILE --machine FILE --method FILE [--doc docs/benchmarks.md]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_doc import markdown_table, write_section


def load(path):
    setup, rounds = None, []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if obj.get("kind") == "setup":
            setup = obj
        elif obj.get("kind") == "round":
            rounds.append(obj)
    if setup is None or not rounds:
        sys.exit(f"proxy_table.py: no setup or round lines in {path}")
    return setup, sorted(rounds, key=lambda r: r["round"])


def spread(values):
    """Largest difference between rounds, as % of their mean."""
    mean = statistics.mean(values)
    if len(values) < 2 or mean == 0:
        return 0.0
    return (max(values) - min(values)) / abs(mean) * 100


def fmt_us(v):
    if abs(v) >= 1000:
        return f"{v / 1000:,.2f} ms"
    return f"{v:,.0f} µs"


def fmt_rate(v):
    return f"{v:,.0f}"


def cell(values, fmt, sign=False):
    """Mean of the rounds, then each round: `mean (r1 / r2)`."""
    f = (lambda v: ("+" if v >= 0 else "−") + fmt(abs(v))) if sign else fmt
    mean = statistics.mean(values)
    if len(values) == 1:
        return f(mean)
    return f"{f(mean)} ({' / '.join(f(v) for v in values)})"


def table(setup, rounds):
    lat = [r["latency"] for r in rounds]
    thr = [r["throughput"] for r in rounds]
    n = lat[0]["connections"]
    clients, seconds = thr[0]["clients"], thr[0]["seconds"]
    rows = []
    for p in ("p50", "p99"):
        d = [l["direct"][f"{p}_us"] for l in lat]
        x = [l["proxied"][f"{p}_us"] for l in lat]
        added = [b - a for a, b in zip(d, x)]
        rows.append((
            f"latency {p}, one connection at a time (connect + request + whole answer + close; "
            f"{n:,} per path per round)",
            cell(d, fmt_us),
            cell(x, fmt_us),
            f"{cell(added, fmt_us, sign=True)} added",
            f"D {spread(d):.0f} %; P {spread(x):.0f} %; added {spread(added):.0f} %",
        ))
    d = [t["direct"]["per_second"] for t in thr]
    x = [t["proxied"]["per_second"] for t in thr]
    ratios = [b / a if a else float("nan") for a, b in zip(d, x)]
    rows.append((
        f"connections per second, {clients} concurrent clients in a closed loop "
        f"({seconds:g} s per path per round; higher is better)",
        cell(d, fmt_rate),
        cell(x, fmt_rate),
        f"{statistics.mean(ratios):.2f} × direct ({' / '.join(f'{r:.2f}' for r in ratios)})",
        f"D {spread(d):.0f} %; P {spread(x):.0f} %",
    ))
    for p in ("p50", "p99"):
        d = [t["direct"][f"{p}_us"] for t in thr]
        x = [t["proxied"][f"{p}_us"] for t in thr]
        added = [b - a for a, b in zip(d, x)]
        rows.append((
            f"latency {p} under that load ({clients} clients)",
            cell(d, fmt_us),
            cell(x, fmt_us),
            f"{cell(added, fmt_us, sign=True)} added",
            f"D {spread(d):.0f} %; P {spread(x):.0f} %",
        ))

    per_conn = []
    for r in rounds:
        proxy_cpu = r.get("cpu", {}).get("processes", {}).get("signpost proxy")
        l, t = r["latency"], r["throughput"]
        passed = (
            l["warmup"]
            + l["proxied"]["ok"] + l["proxied"]["errors"]
            + t["proxied"]["ok"] + t["proxied"]["errors"]
        )
        if proxy_cpu is not None and passed:
            per_conn.append(proxy_cpu / passed * 1e6)
    if len(per_conn) == len(rounds):
        rows.append((
            "`signpost proxy` CPU time per proxied connection (user + system over a round ÷ "
            "connections it passed)",
            "",
            cell(per_conn, lambda v: f"{v:,.1f} µs"),
            "",
            f"P {spread(per_conn):.0f} %",
        ))

    def errors(path):
        total = sum(l[path]["errors"] for l in lat) + sum(t[path]["errors"] for t in thr)
        ok = sum(l[path]["ok"] for l in lat) + sum(t[path]["ok"] for t in thr)
        first = next(
            (s[path]["first_error"] for s in lat + thr if s[path].get("first_error")), None
        )
        text = f"{total:,} of {ok + total:,}"
        return text + (f" (first: `{first}`)" if first else "")

    rows.append(("failed connections (all rounds)", errors("direct"), errors("proxied"), "", ""))
    per_backend = [0] * max(len(l["proxied"]["per_backend"]) for l in lat)
    for l in lat:
        for i, c in enumerate(l["proxied"]["per_backend"]):
            per_backend[i] += c
    rows.append((
        "proxied connections per pod (latency runs, all rounds; round robin)",
        "",
        " / ".join(f"{c:,}" for c in per_backend),
        "",
        "",
    ))

    header = (
        "| measure | direct to a pod IP | through `signpost proxy` (VIP) | what the proxy adds "
        "| round-to-round agreement (D = direct, P = proxied; spread as % of mean) |"
    )
    return markdown_table(header, rows)


def cpu_lines(rounds):
    """What each round's processes and the rest of the machine used, for the Machine list."""
    parts = []
    for r in rounds:
        cpu = r.get("cpu")
        if not cpu:
            return ""
        procs = cpu["processes"]
        used = ", ".join(
            f"{name.replace('_', ' ')} {procs[name]:.1f}" for name in sorted(procs)
        )
        # The machine's busy time (user + system + irq + softirq, /proc/stat) minus the
        # benchmark's processes (whose own times include the softirq work done while they ran).
        other = max(
            0.0,
            cpu["machine_process_seconds"] + cpu["irq_softirq_seconds"] - sum(procs.values()),
        )
        share = other / (cpu["wall_seconds"] * cpu["cpus"]) * 100
        parts.append(
            f"round {r['round']} ({cpu['wall_seconds']:.0f} s × {cpu['cpus']} CPUs): {used}; "
            f"**everything else {other:.1f}** ({share:.0f} % of the machine); "
            f"hypervisor steal {cpu['steal_seconds']:.1f}"
        )
    return (
        "- CPU seconds used during each round (from /proc; \"everything else\" = the machine's "
        "busy time minus the benchmark's processes, i.e. other load on the machine): "
        + "; ".join(parts)
        + "\n"
    )


def section(table_md, machine, method, rounds):
    return (
        "## Proxy\n\n"
        "`signpost proxy` next to a direct connection to the pod: the latency it adds to one "
        "TCP connection and the connections per second it passes, on addresses local to a "
        "network namespace the benchmark creates. Written by `bench/scripts/proxy.sh`; rerun "
        "`just bench-proxy` to refresh this section. A cell is the mean of "
        f"{len(rounds)} rounds (round 1 / round 2).\n\n"
        + table_md
        + "\n\nMachine:\n\n"
        + machine.strip()
        + "\n\nMethod (`bench/scripts/proxy.sh`, run by `just bench-proxy` and `just bench`):\n\n"
        + method.strip()
        + "\n"
    )


def write_doc(path, body):
    write_section(path, "## Proxy", body, "# Benchmarks\n\n")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--doc")
    a = p.parse_args()
    setup, rounds = load(a.results)
    table_md = table(setup, rounds)
    machine = Path(a.machine).read_text().rstrip("\n") + "\n" + cpu_lines(rounds)
    method = Path(a.method).read_text()
    print(table_md)
    print()
    print(machine.strip())
    if a.doc:
        write_doc(a.doc, section(table_md, machine, method, rounds))
        print(f"\n(written to {a.doc}, section \"## Proxy\")", file=sys.stderr)


if __name__ == "__main__":
    main()
