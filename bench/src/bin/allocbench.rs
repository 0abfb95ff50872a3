//! `allocbench`: Signpost's ClusterIP allocator on the workloads of `just bench-allocator`.
//!
//! Prints one JSON line per measurement on stdout. Its Go twin,
//! `e2e/controlplane/k8s/ipallocbench`, runs the same workloads against Kubernetes' bitmap
//! `ipallocator`, and `e2e/bench/allocator.sh` puts the two side by side. The harness is the
//! same on both sides: the same CIDRs, fill levels and SplitMix64 sequence.
//!
//! Figures only: nothing here fails on speed. Build with `--release`.
//!
//! Each timed workload runs `--reps` times (default 3) from an empty allocator and the
//! fastest repetition is reported (the machine is shared; the minimum is the least noisy
//! estimate); all repetitions are in `all_total_ms`.
//!
//! Usage: `allocbench [--pairs N] [--seed S] [--reps R] [--only fill|churn|ipv6]`

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Instant;

use ipnet::IpNet;
use serde_json::{Value, json};
use signpost_bench::args;
use signpost_core::ipam::{AllocError, Allocator, IpFamily};

// The PRNG both benchmark programs use, so the churn workload releases the same sequence of
// held slots on both sides.
use signpost_core::random::SplitMix64;

/// Prints one measurement, tagged with this side.
fn emit(mut value: Value) {
    value["side"] = json!("signpost");
    println!("{value}");
}

fn cidr(s: &str) -> IpNet {
    s.parse().expect("benchmark CIDRs are valid")
}

fn new_allocator(c: &str) -> Allocator {
    Allocator::new([cidr(c)]).expect("benchmark CIDRs are accepted")
}

fn family(c: &str) -> IpFamily {
    match cidr(c) {
        IpNet::V4(_) => IpFamily::V4,
        IpNet::V6(_) => IpFamily::V6,
    }
}

/// Resident set size of this process, in bytes (Linux `/proc/self/status`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Heap held by one allocator in the state of `a`, estimated without a counting global
/// allocator (the workspace forbids `unsafe`): clone it `k` times and divide the growth of
/// the resident set by `k`. Cloning copies every heap structure at its length, so this
/// counts what the allocator really keeps (bitmaps, quarantine, bookkeeping, malloc
/// overhead) and not slack capacity. A first batch of clones (about 64 MiB, not measured)
/// soaks up memory that malloc already holds free from earlier workloads, which would
/// otherwise be reused without growing the resident set. Returns `(bytes per allocator, k)`.
fn heap_estimate(a: &Allocator) -> Option<(u64, usize)> {
    const BATCH_BYTES: u64 = 64 * 1024 * 1024;
    let per = a.bitmap_bytes() as u64 + 1024;
    let k = (BATCH_BYTES / per).clamp(64, 200_000) as usize;
    let mut clones = Vec::with_capacity(2 * k);
    for _ in 0..k {
        clones.push(a.clone());
    }
    let before = rss_bytes()?;
    for _ in 0..k {
        clones.push(a.clone());
    }
    let after = rss_bytes()?;
    black_box(&clones);
    drop(clones);
    Some((after.saturating_sub(before) / k as u64, k))
}

/// Emits the memory of `a` in a named state.
fn memory(state: &str, c: &str, a: &Allocator) {
    let used: u64 = a.usage().iter().map(|u| u.used).sum();
    let (heap, k) = heap_estimate(a).unwrap_or((0, 0));
    emit(json!({
        "workload": "memory",
        "state": state,
        "cidr": c,
        "used": used,
        "bitmap_bytes": a.bitmap_bytes(),
        "heap_bytes": heap,
        "heap_method": format!(
            "RSS growth over {k} clones / {k}, after {k} unmeasured clones (bitmap_bytes() is the roaring serialized size)"
        ),
    }));
}

/// The fastest of `times` (nanoseconds), and all of them for the record.
fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// allocate-next until the range is full, `reps` times from empty; the fastest counts.
fn fill(c: &str, reps: usize) {
    let fam = family(c);
    let mut times = Vec::with_capacity(reps);
    let mut last = None;
    let mut count: u64 = 0;
    for _ in 0..reps {
        let mut a = new_allocator(c);
        count = 0;
        let start = Instant::now();
        loop {
            match a.allocate_next(fam) {
                Ok(got) => {
                    black_box(got);
                    count += 1;
                }
                Err(AllocError::Exhausted { .. }) => break,
                Err(e) => panic!("allocate_next: {e}"),
            }
        }
        times.push(start.elapsed().as_nanos() as f64);
        last = Some(a);
    }
    let ns = best(&times);
    emit(json!({
        "workload": "fill",
        "cidr": c,
        "count": count,
        "reps": reps,
        "total_ms": ns / 1e6,
        "ns_per_op": ns / count as f64,
        "all_total_ms": times.iter().map(|t| t / 1e6).collect::<Vec<_>>(),
    }));
    memory("full", c, &last.expect("at least one repetition"));
}

/// Fills the range to `pct` % with allocate-next, then times pairs of (release a random
/// held address, allocate-next); `reps` times from empty, the fastest counts.
fn churn(c: &str, pct: u64, pairs: usize, seed: u64, reps: usize) {
    let fam = family(c);
    let mut times = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps {
        let mut a = new_allocator(c);
        let capacity = a.usage()[0].capacity;
        let target = (capacity * pct / 100) as usize;
        let mut held: Vec<IpAddr> = Vec::with_capacity(target);
        while held.len() < target {
            held.push(a.allocate_next(fam).expect("range not full yet").address);
        }
        let mut rng = SplitMix64(seed);
        let start = Instant::now();
        for _ in 0..pairs {
            let j = rng.below(held.len());
            assert!(a.release(held[j]), "held address was allocated");
            held[j] = a
                .allocate_next(fam)
                .expect("one address was just freed")
                .address;
        }
        times.push(start.elapsed().as_nanos() as f64);
        drop(held);
        last = Some(a);
    }
    let a = last.expect("at least one repetition");
    let ns = best(&times);
    emit(json!({
        "workload": "churn",
        "cidr": c,
        "fill_pct": pct,
        "used": a.usage()[0].used,
        "pairs": pairs,
        "reps": reps,
        "total_ms": ns / 1e6,
        "ns_per_pair": ns / pairs as f64,
        "all_total_ms": times.iter().map(|t| t / 1e6).collect::<Vec<_>>(),
    }));
    memory(&format!("{pct}% full after churn"), c, &a);
}

/// The sparse IPv6 workload: `sequential` allocate-next in a /64, then `random` requests for
/// specific addresses at random offsets.
fn ipv6(sequential: usize, random: usize, seed: u64) {
    const C: &str = "fd00:10:96::/64";
    let mut a = new_allocator(C);
    let capacity = a.usage()[0].capacity;
    let start = Instant::now();
    let mut handed = 0usize;
    for _ in 0..sequential {
        match a.allocate_next(IpFamily::V6) {
            Ok(got) => {
                black_box(got);
                handed += 1;
            }
            Err(e) => panic!("allocate_next: {e}"),
        }
    }
    let seq_ns = start.elapsed().as_nanos() as f64;
    let network = match cidr(C) {
        IpNet::V6(n) => u128::from(n.network()),
        IpNet::V4(_) => unreachable!("an IPv6 CIDR"),
    };
    let mut rng = SplitMix64(seed);
    let (mut granted, mut refused) = (0usize, 0usize);
    let start = Instant::now();
    for _ in 0..random {
        let offset = rng.next().max(1);
        let addr = IpAddr::V6(Ipv6Addr::from(network | u128::from(offset)));
        match a.allocate(addr) {
            Ok(_) => granted += 1,
            Err(_) => refused += 1,
        }
    }
    let random_ns = start.elapsed().as_nanos() as f64;
    emit(json!({
        "workload": "ipv6",
        "cidr": C,
        "capacity": capacity,
        "sequential_requested": sequential,
        "sequential_handed": handed,
        "ns_per_op": seq_ns / handed.max(1) as f64,
        "random_requested": random,
        "random_granted": granted,
        "random_refused": refused,
        "random_ns_per_op": random_ns / random.max(1) as f64,
    }));
    memory("ipv6 /64 after the sparse workload", C, &a);
}

fn main() -> ExitCode {
    let mut pairs = 200_000usize;
    let mut seed = 0x5167_9057u64;
    let mut reps = 3usize;
    let mut only = String::new();
    let usage = || {
        eprintln!("usage: allocbench [--pairs N] [--seed S] [--reps R] [--only fill|churn|ipv6]");
        ExitCode::from(2)
    };
    let Ok(flags) = args::pairs(std::env::args().skip(1)) else {
        return usage();
    };
    for (flag, value) in flags {
        let parsed = match flag.as_str() {
            "--pairs" => args::parse(&flag, &value).map(|v| pairs = v),
            "--seed" => args::parse(&flag, &value).map(|v| seed = v),
            "--reps" => args::parse::<usize>(&flag, &value).map(|v| reps = v.max(1)),
            "--only" => {
                only = value;
                Ok(())
            }
            _ => return usage(),
        };
        if let Err(e) = parsed {
            eprintln!("allocbench: {e} takes a number");
            return usage();
        }
    }
    emit(json!({
        "workload": "info",
        "allocator": "signpost_core::ipam::Allocator (roaring)",
        "quarantine_per_cidr": signpost_core::ipam::DEFAULT_QUARANTINE_PER_CIDR,
    }));
    if only.is_empty() || only == "fill" {
        fill("10.96.0.0/16", reps);
        fill("10.96.0.0/12", reps);
    }
    if only.is_empty() || only == "churn" {
        for c in ["10.96.0.0/16", "10.96.0.0/12"] {
            for pct in [50, 99] {
                churn(c, pct, pairs, seed, reps);
            }
        }
    }
    if only.is_empty() || only == "ipv6" {
        ipv6(100_000, 1_000, seed);
    }
    ExitCode::SUCCESS
}
