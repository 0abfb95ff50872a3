//! CPU and memory figures of processes and of the machine, read from `/proc`, for the
//! benchmarks. Kept apart from the benchmarks so every one of them reads them the same way.

use std::time::Duration;

use anyhow::Context;

/// Clock ticks per second of `/proc` CPU times.
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU ticks of a process (`self` or a pid), from `/proc/<pid>/stat`.
pub fn process_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the comm field.
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat line")?.parse()?)
    };
    Ok(field(11)? + field(12)?)
}

/// Peak resident set size of a process in bytes (`VmHWM` of `/proc/<pid>/status`).
pub fn peak_rss_bytes(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM line")?;
    Ok(kb * 1024)
}

/// CPU ticks of the whole machine (every CPU), from `/proc/stat`: user + nice + system (what
/// processes ran), irq + softirq (kernel work charged to no process, the loopback traffic's
/// included), steal (time the hypervisor gave to someone else).
pub fn machine_ticks() -> anyhow::Result<[u64; 3]> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok([at(0) + at(1) + at(2), at(5) + at(6), at(7)])
}

/// Cores the whole machine kept busy over `window` (processes and interrupts).
pub async fn machine_busy_cores(window: Duration) -> anyhow::Result<f64> {
    let busy = || -> anyhow::Result<u64> { Ok(machine_ticks()?.iter().take(2).sum()) };
    let before = busy()?;
    tokio::time::sleep(window).await;
    let after = busy()?;
    Ok(after.saturating_sub(before) as f64 / clock_ticks() / window.as_secs_f64())
}

/// Waits until the machine keeps fewer than `cores` busy over one second, for at most
/// `deadline`, and returns the last figure seen. A workload measured right after a burst
/// (a controller still digesting 20,000 pods, the API server compacting) would measure that
/// burst; starting from a settled machine makes two runs comparable. The deadline is a cap,
/// not an error: a machine shared with other work may never settle.
pub async fn wait_machine_settled(cores: f64, deadline: Duration) -> anyhow::Result<f64> {
    let start = std::time::Instant::now();
    loop {
        let busy = machine_busy_cores(Duration::from_secs(1)).await?;
        if busy < cores || start.elapsed() >= deadline {
            return Ok(busy);
        }
    }
}
