"""Turns endpoints_bench JSON lines (two rounds × {signpost, kcm}) into the Markdown table of
docs/benchmarks.md's "## Controllers" section, and prints it."""
import json
import platform
import subprocess
import sys
import datetime

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
doc = sys.argv[2]
by = {(r["round"], r["controller"]): r for r in rows}

METRICS = [
    ("Convergence from an empty controller (s)", "converge_s", "{:.2f}"),
    ("Floor: patch → pod watch p50 (ms)", "floor_p50_ms", "{:.1f}"),
    ("Floor: patch → pod watch p99 (ms)", "floor_p99_ms", "{:.1f}"),
    ("pod-ready → EndpointSlice p50 (ms)", "latency_p50_ms", "{:.1f}"),
    ("pod-ready → EndpointSlice p99 (ms)", "latency_p99_ms", "{:.1f}"),
    ("EndpointSlice writes per flip", "slice_writes_per_flip", "{:.2f}"),
    ("Endpoints writes per flip", "endpoints_writes_per_flip", "{:.2f}"),
    ("CPU seconds, start-up + convergence", "cpu_s_startup", "{:.2f}"),
    ("CPU seconds, flips", "cpu_s_flips", "{:.2f}"),
    ("Peak RSS (MB)", "peak_rss_mb", "{:.1f}"),
]


def cell(fmt, r1, r2):
    return f"{fmt.format(r1)} / {fmt.format(r2)}"


def agree(a, b):
    if a == b:
        return "0%"
    base = max(abs(a), abs(b))
    return f"{abs(a - b) / base * 100:.0f}%" if base else "0%"


s1, s2 = by.get((1, "signpost")), by.get((2, "signpost"))
k1, k2 = by.get((1, "kcm")), by.get((2, "kcm"))
if not all([s1, s2, k1, k2]):
    sys.exit("controllers_table.py: need two rounds of both controllers")
lines = [
    f"Workload: {s1['services']} Services × {s1['pods_per_service']} pods, {s1['flips']} readiness flips "
    f"at {s1['rate_per_s']:.0f}/s. Each cell: run 1 / run 2. Ratio = Signpost ÷ kube-controller-manager "
    "(mean of both runs; below 1 is better). Agreement = run-to-run difference of each side.",
    "",
    "| measure | Signpost | kube-controller-manager | ratio | agreement (Signpost, kcm) |",
    "| --- | --- | --- | --- | --- |",
]
for label, key, fmt in METRICS:
    s_mean = (s1[key] + s2[key]) / 2
    k_mean = (k1[key] + k2[key]) / 2
    ratio = f"{s_mean / k_mean:.2f}" if k_mean else "n/a"
    lines.append(
        f"| {label} | {cell(fmt, s1[key], s2[key])} | {cell(fmt, k1[key], k2[key])} | {ratio} | "
        f"{agree(s1[key], s2[key])}, {agree(k1[key], k2[key])} |"
    )
floor_p99 = max(s1["floor_p99_ms"], s2["floor_p99_ms"])
lines += [
    "",
    f"Target check (issue 14): Signpost p99 ≤ 1.1 × (2 × floor p99) = {2.2 * floor_p99:.1f} ms: "
    f"{'met' if max(s1['latency_p99_ms'], s2['latency_p99_ms']) <= 2.2 * floor_p99 else 'not met'}; "
    f"p99 ≤ kube-controller-manager's: "
    f"{'met' if (s1['latency_p99_ms'] + s2['latency_p99_ms']) <= (k1['latency_p99_ms'] + k2['latency_p99_ms']) else 'not met'}.",
]
table = "\n".join(lines)
print(table)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
memory = sh("free -h | awk '/Mem:/ {print $2}'")
machine = (
    f"Machine: {sh('nproc')} cores ({cpu}), {memory} RAM, "
    f"{platform.system()} {platform.release()}; measured {datetime.date.today()} with "
    "`just bench` (`e2e/bench/controllers.sh`), on the local control plane (etcd, kube-apiserver "
    "v1.37.2, kwok pods)."
)
section = f"## Controllers\n\n{machine}\n\n{table}\n"
try:
    text = open(doc).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
start = text.find("## Controllers")
if start == -1:
    text = text.rstrip("\n") + "\n\n" + section
else:
    end = text.find("\n## ", start + 1)
    text = text[:start] + section + (text[end + 1:] if end != -1 else "")
open(doc, "w").write(text)
