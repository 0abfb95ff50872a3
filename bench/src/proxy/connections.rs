//! The clients' side: one connection, latency samples of one path, and the latency and
//! throughput measurements over both paths.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::options::Options;
use super::{CONNECTION_TIMEOUT, REQUEST};

/// One connection: connect, send the request, read the answer to EOF, close. Returns the time
/// all of that took and the backend that answered.
pub(crate) async fn one(addr: SocketAddr) -> Result<(Duration, usize), String> {
    let start = Instant::now();
    let answer = tokio::time::timeout(CONNECTION_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(REQUEST)
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut answer = Vec::with_capacity(128);
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        drop(stream);
        Ok::<_, String>(answer)
    })
    .await
    .map_err(|_| format!("{addr}: no answer within {CONNECTION_TIMEOUT:?}"))??;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let backend = text
        .starts_with("HTTP/1.0 200 OK\r\n")
        .then(|| text.rsplit_once("\r\n\r\nbackend-"))
        .flatten()
        .and_then(|(_, index)| index.trim_end().parse().ok())
        .ok_or_else(|| format!("{addr}: unexpected answer {text:?}"))?;
    Ok((took, backend))
}

/// Latency samples of one path (microseconds), and what went wrong.
#[derive(Default)]
pub(crate) struct Samples {
    micros: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
    per_backend: BTreeMap<usize, usize>,
}

impl Samples {
    fn record(&mut self, result: Result<(Duration, usize), String>) {
        match result {
            Ok((took, backend)) => {
                self.micros.push(took.as_secs_f64() * 1e6);
                *self.per_backend.entry(backend).or_insert(0) += 1;
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (backend, n) in other.per_backend {
            *self.per_backend.entry(backend).or_insert(0) += n;
        }
    }

    fn summary(&mut self) -> serde_json::Value {
        self.micros.sort_by(f64::total_cmp);
        let mean = if self.micros.is_empty() {
            f64::NAN
        } else {
            self.micros.iter().sum::<f64>() / self.micros.len() as f64
        };
        json!({
            "ok": self.micros.len(),
            "errors": self.errors,
            "first_error": self.first_error,
            "p50_us": percentile(&self.micros, 50.0),
            "p90_us": percentile(&self.micros, 90.0),
            "p99_us": percentile(&self.micros, 99.0),
            "mean_us": mean,
            "per_backend": self.per_backend.values().collect::<Vec<_>>(),
        })
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Path {
    Direct,
    Proxied,
}

impl Path {
    /// The path's name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Proxied => "proxied",
        }
    }
}

/// The address of the `i`-th connection of a path: the pods in turn, or the VIP.
pub(crate) fn target(path: Path, i: usize, pods: &[SocketAddr], vip: SocketAddr) -> SocketAddr {
    match path {
        Path::Direct => pods[i % pods.len()],
        Path::Proxied => vip,
    }
}

/// Sequential connections, direct and proxied in alternating blocks.
pub(crate) async fn latency(
    o: &Options,
    pods: &[SocketAddr],
    vip: SocketAddr,
) -> serde_json::Value {
    let mut direct = Samples::default();
    let mut proxied = Samples::default();
    // Warm-up: both paths, not recorded.
    let mut ignored = Samples::default();
    for i in 0..o.warmup {
        ignored.record(one(target(Path::Direct, i, pods, vip)).await);
        ignored.record(one(target(Path::Proxied, i, pods, vip)).await);
    }
    let mut done = [0usize; 2];
    let mut block = 0;
    while done[0] < o.connections || done[1] < o.connections {
        let order = if block % 2 == 0 {
            [Path::Direct, Path::Proxied]
        } else {
            [Path::Proxied, Path::Direct]
        };
        for path in order {
            let slot = usize::from(path == Path::Proxied);
            let n = o.block.min(o.connections - done[slot]);
            for _ in 0..n {
                let result = one(target(path, done[slot], pods, vip)).await;
                match path {
                    Path::Direct => direct.record(result),
                    Path::Proxied => proxied.record(result),
                }
                done[slot] += 1;
            }
        }
        block += 1;
    }
    json!({
        "connections": o.connections,
        "warmup": o.warmup,
        "block": o.block,
        "warmup_errors": ignored.errors,
        "direct": direct.summary(),
        "proxied": proxied.summary(),
    })
}

/// `clients` concurrent clients in a closed loop for `seconds`: connections per second.
pub(crate) async fn throughput(
    o: &Options,
    path: Path,
    pods: &[SocketAddr],
    vip: SocketAddr,
) -> serde_json::Value {
    let pods: Arc<[SocketAddr]> = pods.into();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let mut tasks = Vec::with_capacity(o.clients);
    for client in 0..o.clients {
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut i = client;
            while Instant::now() < deadline {
                samples.record(one(target(path, i, &pods, vip)).await);
                i += 1;
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(samples) = task.await {
            all.merge(samples);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = all.micros.len();
    let mut summary = all.summary();
    summary["seconds"] = json!(elapsed);
    summary["per_second"] = json!(ok as f64 / elapsed);
    summary["clients"] = json!(o.clients);
    summary
}
