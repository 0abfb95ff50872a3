//! The controller process under test: started, watched for its ready line, measured, stopped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use signpost_e2e::process::{READY_LINE, free_port};
use signpost_e2e::procfs;

use super::options::Options;

/// The controller process under test.
pub(crate) struct Controller {
    child: Child,
    pid: u32,
    log: String,
    /// When Signpost logged that it is ready (kube-controller-manager has no such moment: its
    /// health endpoints do not wait for its caches, so it has none here).
    ready: Option<ReadyLine>,
}

/// The moment the controller's ready line was read from its log. A thread copies the
/// process's stderr into the log file and notes the line as it passes, so readiness is seen
/// without probing `/readyz`: a probe every millisecond costs both processes CPU on a
/// two-core machine while the caches fill, which is what the restart measures.
#[derive(Clone)]
pub(crate) struct ReadyLine(tokio::sync::watch::Receiver<ReadyState>);

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum ReadyState {
    Waiting,
    Ready(Instant),
    /// The log ended (the process exited) before the ready line.
    Ended,
}

impl ReadyLine {
    /// Copies `stderr` into `log`, noting the ready line.
    fn watch(stderr: std::process::ChildStderr, mut log: std::fs::File) -> Self {
        use std::io::{BufRead, Write};
        let (state, line) = tokio::sync::watch::channel(ReadyState::Waiting);
        // Only the first of Ready and Ended counts.
        let set = move |to: ReadyState| {
            state.send_if_modified(|now| {
                let first = *now == ReadyState::Waiting;
                if first {
                    *now = to;
                }
                first
            });
        };
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut text = String::new();
            while reader.read_line(&mut text).is_ok_and(|n| n > 0) {
                if text.contains(READY_LINE) {
                    set(ReadyState::Ready(Instant::now()));
                }
                let _ = log.write_all(text.as_bytes());
                text.clear();
            }
            set(ReadyState::Ended);
        });
        ReadyLine(line)
    }

    /// Waits until the line was read or the log ended, at most `timeout`.
    async fn wait(mut self, timeout: Duration) -> ReadyState {
        let done = self.0.wait_for(|state| *state != ReadyState::Waiting);
        // On a timeout, or once the thread is gone, the last state it set stands.
        let _ = tokio::time::timeout(timeout, done).await;
        *self.0.borrow()
    }
}

impl Controller {
    /// Starts `which` (`signpost` or `kcm`), logging to `log`.
    pub(crate) fn start(o: &Options, which: &str, cidr: &str, log: &str) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log)?;
        let port = free_port()?.to_string();
        let (child, ready) = match which {
            "signpost" => {
                let mut child = Command::new(&o.signpost_bin)
                    .args(["run", "--service-cidr", cidr, "--leader-elect=false"])
                    // Beside kube-controller-manager's controllers, each keeps to its own slices.
                    .args(["--endpointslice-managed-by", "signpost"])
                    .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
                    .args(["--log-format", "json"])
                    .args(&o.signpost_args)
                    // Warnings and the ready line (a target of its own), nothing else.
                    .env("RUST_LOG", "warn,signpost::ready=info")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("starting {}", o.signpost_bin))?;
                let stderr = child.stderr.take().context("the controller's stderr")?;
                (child, Some(ReadyLine::watch(stderr, log_file)))
            }
            _ => (
                Command::new(&o.kcm_bin)
                    .args(["--kubeconfig", &o.admin_kubeconfig])
                    .args([
                        "--controllers",
                        "endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller",
                    ])
                    // The client-side rate limit (20 requests/s by default) would throttle
                    // 50 flips/s × 2 writes and make it merge flips; Signpost has none, so
                    // the peer gets the same limits as the control plane's own kcm.
                    .args(["--kube-api-qps", "300", "--kube-api-burst", "500"])
                    .args([
                        "--leader-elect=false",
                        "--bind-address",
                        "127.0.0.1",
                        "--secure-port",
                        &port,
                    ])
                    .stdout(Stdio::null())
                    .stderr(log_file)
                    .spawn()
                    .with_context(|| format!("starting {}", o.kcm_bin))?,
                None,
            ),
        };
        Ok(Self {
            pid: child.id(),
            child,
            log: log.to_string(),
            ready,
        })
    }

    pub(crate) fn alive(&self) -> Result<(), String> {
        if std::fs::metadata(format!("/proc/{}", self.pid)).is_err() {
            return Err(format!(
                "controller (pid {}) exited; see {}",
                self.pid, self.log
            ));
        }
        Ok(())
    }

    /// CPU seconds (user + system) and peak RSS in bytes, from /proc.
    pub(crate) fn usage(&self) -> anyhow::Result<(f64, u64)> {
        cpu_and_peak_rss(self.pid)
    }

    /// Waits until the controller logged that it is ready and returns when that line was
    /// read (`None` for a controller without such a line).
    pub(crate) async fn wait_ready(&self) -> anyhow::Result<Option<Instant>> {
        let Some(line) = self.ready.clone() else {
            return Ok(None);
        };
        match line.wait(Duration::from_secs(300)).await {
            ReadyState::Ready(at) => Ok(Some(at)),
            ReadyState::Ended => bail!(
                "controller (pid {}) exited before it was ready; see {}",
                self.pid,
                self.log
            ),
            ReadyState::Waiting => bail!(
                "the controller did not log {READY_LINE:?} within 300 s; see {}",
                self.log
            ),
        }
    }
}

impl Drop for Controller {
    /// Stops the process, also when the benchmark fails half-way, so no controller outlives it.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub(crate) fn cpu_and_peak_rss(pid: u32) -> anyhow::Result<(f64, u64)> {
    let pid = pid.to_string();
    Ok((
        procfs::process_ticks(&pid)? as f64 / procfs::clock_ticks(),
        procfs::peak_rss_bytes(&pid)?,
    ))
}
