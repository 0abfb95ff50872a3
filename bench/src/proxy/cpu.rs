//! CPU seconds of a round: the load generator's, the named processes' and the machine's.

use std::time::Duration;

use serde_json::json;
use signpost_e2e::procfs::{clock_ticks, machine_ticks, process_ticks};

use super::options::Options;

/// CPU ticks at one moment: the machine's, this process's and each `--cpu-of` process's.
pub(crate) struct CpuSnapshot {
    machine: [u64; 3],
    this: u64,
    others: Vec<u64>,
}

pub(crate) fn cpu_snapshot(o: &Options) -> anyhow::Result<CpuSnapshot> {
    let others = o
        .pids
        .iter()
        .map(|(_, pid)| process_ticks(&pid.to_string()))
        .collect::<anyhow::Result<_>>()?;
    Ok(CpuSnapshot {
        machine: machine_ticks()?,
        this: process_ticks("self")?,
        others,
    })
}

/// CPU seconds between two snapshots, and what the rest of the machine used.
pub(crate) fn cpu_report(
    o: &Options,
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    wall: Duration,
) -> serde_json::Value {
    let hz = clock_ticks();
    let seconds = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
    let [all_processes, interrupts, steal] =
        [0, 1, 2].map(|i| seconds(before.machine[i], after.machine[i]));
    let bench = seconds(before.this, after.this);
    let mut processes = serde_json::Map::new();
    let mut accounted = bench;
    for (i, (name, _)) in o.pids.iter().enumerate() {
        let used = seconds(before.others[i], after.others[i]);
        accounted += used;
        processes.insert(name.clone(), json!(used));
    }
    processes.insert("load_generator".into(), json!(bench));
    json!({
        "wall_seconds": wall.as_secs_f64(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "machine_process_seconds": all_processes,
        "irq_softirq_seconds": interrupts,
        "steal_seconds": steal,
        "processes": processes,
        // A process's own time includes the interrupt work done while it ran (the loopback
        // traffic's softirqs), which /proc/stat counts under irq + softirq instead.
        "other_seconds": (all_processes + interrupts - accounted).max(0.0),
    })
}
