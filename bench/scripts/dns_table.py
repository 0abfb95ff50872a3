"""Helpers of the DNS benchmark (bench/scripts/dns.sh).

  dns_table.py queries --ns NS --services N --count C [--seed S]    query file for dnsperf
  dns_table.py parse FILE [--key value ...]      dnsperf -v output -> one JSON line
  dns_table.py mem PID [--key value ...]         VmRSS / VmHWM of a process -> one JSON line
  dns_table.py render --results FILE --machine FILE --method FILE [--doc docs/benchmarks.md]

`render` prints the Markdown table and, with --doc, rewrites the "## DNS" section of that file
(and only that section).
"""
import json
import random
import sys


def kv_args(args):
    out = {}
    it = iter(args)
    for key in it:
        value = next(it)
        key = key.lstrip("-").replace("-", "_")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = value
    return out


def cmd_queries(args):
    opts = kv_args(args)
    ns, n, count = opts["ns"], int(opts["services"]), int(opts["count"])
    rng = random.Random(int(opts.get("seed", 12)))
    domain = f"{ns}.svc.cluster.local"
    for _ in range(count):
        roll = rng.random()
        i = rng.randrange(n)
        if roll < 0.90:
            print(f"svc-{i}.{domain} A")
        elif roll < 0.95:
            print(f"_http._tcp.svc-{i}.{domain} SRV")
        else:
            # Names in the bench namespace that no Service has: NXDOMAIN on both servers.
            print(f"missing-{i}.{domain} A")


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def cmd_parse(args):
    path, extra = args[0], kv_args(args[1:])
    lat = []
    rcodes = {}
    stats = {}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                code = parts[1]
                rcodes[code] = rcodes.get(code, 0) + 1
                if code not in ("T", "I") and len(parts) >= 5:
                    lat.append(float(parts[-1]))
            elif ":" in line:
                key, _, value = line.strip().partition(":")
                stats[key.strip()] = value.strip()
    lat.sort()

    def first_number(key):
        value = stats.get(key, "nan").split()
        return float(value[0]) if value else float("nan")

    row = dict(extra)
    row.update(
        qps=first_number("Queries per second"),
        sent=int(first_number("Queries sent")),
        completed=int(first_number("Queries completed")),
        lost=int(first_number("Queries lost")),
        run_s=first_number("Run time (s)"),
        avg_ms=first_number("Average Latency (s)") * 1000,
        p50_ms=percentile(lat, 50) * 1000,
        p99_ms=percentile(lat, 99) * 1000,
        max_ms=(lat[-1] * 1000) if lat else float("nan"),
        rcodes=rcodes,
        latencies=len(lat),
    )
    print(json.dumps(row))


def cmd_mem(args):
    pid, extra = args[0], kv_args(args[1:])
    row = dict(extra)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                row[key.lower() + "_kib"] = int(value.split()[0])
    print(json.dumps(row))


# --- render -------------------------------------------------------------------------------


def fmt_num(x, digits=0):
    if x != x:  # NaN
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def fmt_ms(x):
    if x != x:
        return "n/a"
    if x >= 10:
        return f"{x:,.1f} ms"
    if x >= 1:
        return f"{x:.2f} ms"
    return f"{x:.3f} ms"


def fmt_mib(kib):
    return f"{kib / 1024:.1f} MiB"


def spread(values):
    """Difference between the runs as % of their mean."""
    values = [v for v in values if v == v]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    if mean == 0:
        return 0.0
    return (max(values) - min(values)) / mean * 100


def ratio(s, c):
    if c == 0 or c != c or s != s:
        return "n/a"
    r = s / c
    return f"{r:.3g}"


def render(results, machine, method):
    rows = [json.loads(line) for line in open(results) if line.strip()]

    def pick(**want):
        return [r for r in rows if all(r.get(k) == v for k, v in want.items())]

    sides = [("signpost", "S"), ("coredns", "C")]
    load_sizes = sorted({r["services"] for r in rows if r.get("kind") == "load"})
    mem_sizes = sorted({r["services"] for r in rows if r.get("kind") == "mem"})
    out = [
        "| measure | signpost dns | CoreDNS (kubernetes plugin) | ratio (signpost/CoreDNS) "
        "| run-to-run agreement (S = signpost, C = CoreDNS; spread as % of mean) |",
        "|---|---|---|---|---|",
    ]

    for n in load_sizes:
        for mode in ("saturated", "rate"):
            runs = {side: sorted(pick(kind="load", services=n, mode=mode, side=side), key=lambda r: r["round"]) for side, _ in sides}
            if not all(runs.values()):
                continue
            first = runs["signpost"][0]
            if mode == "saturated":
                what = f"{n:,} Services, closed loop ({first['outstanding']} queries outstanding, {first['seconds']} s)"
                measures = [("queries per second (higher is better)", "qps", fmt_num),
                            ("latency p50", "p50_ms", fmt_ms),
                            ("latency p99", "p99_ms", fmt_ms)]
            else:
                what = f"{n:,} Services, open loop at {first['rate']:,} queries/s ({first['seconds']} s)"
                measures = [("latency p50", "p50_ms", fmt_ms),
                            ("latency p99", "p99_ms", fmt_ms),
                            ("queries per second achieved", "qps", fmt_num)]
            for label, key, fmt in measures:
                means = {}
                cells = {}
                agree = []
                for side, letter in sides:
                    values = [r[key] for r in runs[side]]
                    means[side] = sum(values) / len(values)
                    if len(values) > 1:
                        cells[side] = f"{fmt(means[side])} ({' / '.join(fmt(v) for v in values)})"
                        s = spread(values)
                        agree.append(f"{letter} {s:.0f} %")
                    else:
                        cells[side] = fmt(means[side])
                        agree.append(f"{letter}: one run")
                out.append(
                    f"| {what}: {label} | {cells['signpost']} | {cells['coredns']} | "
                    f"{ratio(means['signpost'], means['coredns'])} | {'; '.join(agree)} |"
                )
            # The answers, so that the two servers are seen to do the same work.
            answers = {}
            for side, _ in sides:
                total = {}
                for r in runs[side]:
                    for code, count in r["rcodes"].items():
                        total[code] = total.get(code, 0) + count
                done = sum(total.values()) or 1
                parts = [f"{code} {count / done * 100:.1f} %" for code, count in sorted(total.items())]
                lost = sum(r["lost"] for r in runs[side])
                answers[side] = ", ".join(parts) + f"; {lost:,} lost"
            out.append(f"| {what}: answers (all runs) | {answers['signpost']} | {answers['coredns']} |  |  |")

    for n in mem_sizes:
        for stage, label in (("ready", "RSS once every name is served, before load"),
                             ("after", "RSS after the load runs"),
                             ("peak", "peak RSS (VmHWM) over start-up and load")):
            key = "vmhwm_kib" if stage == "peak" else "vmrss_kib"
            src = "after" if stage == "peak" else stage
            vals = {side: pick(kind="mem", services=n, stage=src, side=side) for side, _ in sides}
            if not all(vals.values()):
                continue
            s, c = vals["signpost"][0][key], vals["coredns"][0][key]
            out.append(f"| {n:,} Services: {label} | {fmt_mib(s)} | {fmt_mib(c)} | {ratio(s, c)} | one measurement |")
        ready = {side: pick(kind="ready", services=n, side=side) for side, _ in sides}
        if all(ready.values()):
            s, c = ready["signpost"][0]["seconds"], ready["coredns"][0]["seconds"]
            out.append(
                f"| {n:,} Services: start → every probed name answered | {s:.1f} s | {c:.1f} s | {ratio(s, c)} | one measurement |"
            )

    if len(mem_sizes) >= 2:
        small, big = mem_sizes[0], mem_sizes[-1]
        growth = {}
        for side, _ in sides:
            a = pick(kind="mem", services=small, stage="ready", side=side)
            b = pick(kind="mem", services=big, stage="ready", side=side)
            if a and b:
                growth[side] = (b[0]["vmrss_kib"] - a[0]["vmrss_kib"]) * 1024 / (big - small)
        if len(growth) == 2:
            s, c = growth["signpost"], growth["coredns"]
            out.append(
                f"| RSS growth per added Service ({small:,} → {big:,}, RSS once served) | "
                f"{s / 1024:.1f} KiB | {c / 1024:.1f} KiB | {ratio(s, c)} | from the two single measurements |"
            )

    table = "\n".join(out)
    body = (
        "`signpost dns` next to CoreDNS's `kubernetes` plugin, same cluster, same query list, same "
        "machine, same run (issue 12). Written by `bench/scripts/dns.sh`; rerun `just bench-dns` to "
        "refresh this section. A cell with two runs is their mean (run 1 / run 2). Ratio: "
        "signpost ÷ CoreDNS; above 1 is better for queries per second, below 1 for latency and "
        "memory.\n\n"
        + table + "\n\nMachine:\n\n" + open(machine).read().rstrip("\n")
        + "\n\nMethod (`bench/scripts/dns.sh`, run by `just bench-dns` and `just bench`):\n\n"
        + open(method).read().rstrip("\n") + "\n"
    )
    return table, body


def write_section(doc, body):
    section = "## DNS\n\n" + body
    try:
        text = open(doc).read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    start = text.find("\n## DNS\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        start += 1
        end = text.find("\n## ", start)
        rest = text[end + 1:] if end != -1 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    open(doc, "w").write(text)


def cmd_render(args):
    opts = kv_args(args)
    table, body = render(opts["results"], opts["machine"], opts["method"])
    print(table)
    if opts.get("doc"):
        write_section(opts["doc"], body)


if __name__ == "__main__":
    commands = {"queries": cmd_queries, "parse": cmd_parse, "mem": cmd_mem, "render": cmd_render}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])
