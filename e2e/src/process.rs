//! The built `signpost` binary as a separate process, for the end-to-end suite.
//!
//! E2E tests exercise what users run: the binary, its flags, its signal handling, its HTTP
//! endpoints and its leader election, not the library wired up inside the test. Each process
//! is scoped to one test (its namespace, a CIDR no other test uses, its own Lease and metrics
//! port), so many run side by side against one cluster. Its output goes to
//! `target/e2e-logs/<name>.log`, and a failed start prints the tail of that log, because a
//! child's stderr is otherwise lost when a test fails.
//!
//! Signals are sent with the `kill` command: the workspace forbids `unsafe` and has no libc or
//! nix dependency, and `kill` is on every machine that runs the tests.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Short leader-election timings for tests that restart or kill the leader: a standby takes
/// over a dead leader's lease within about `lease_duration + retry_period` (7 s instead of the
/// default 17 s), which keeps failover tests fast while the renew deadline stays shorter than
/// the lease, as the election's safety needs.
pub const FAST_LEASE: LeaseFlags = LeaseFlags {
    lease_duration: Duration::from_secs(6),
    renew_deadline: Duration::from_secs(4),
    retry_period: Duration::from_secs(1),
};

/// The three leader-election timing flags of `signpost run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseFlags {
    /// `--leader-election-lease-duration`.
    pub lease_duration: Duration,
    /// `--leader-election-renew-deadline`.
    pub renew_deadline: Duration,
    /// `--leader-election-retry-period`.
    pub retry_period: Duration,
}

/// The line `signpost run` logs once every controller is ready (target `signpost::ready`).
pub const READY_LINE: &str = "ready: every controller's caches are synced";

/// How to start one `signpost run` process.
#[derive(Clone, Debug)]
pub struct SignpostOptions {
    /// Names the log file (`target/e2e-logs/<name>.log`); restarts append to the same file.
    pub name: String,
    /// The only namespace the process manages (`--namespace`); also where its Lease lives.
    pub namespace: String,
    /// Its service CIDRs (`--service-cidr`, repeated): claims are cluster-wide, so each test
    /// needs ranges of its own (see [`crate::unique_cidr`]).
    pub service_cidrs: Vec<String>,
    /// `--leader-election-name`: processes that share it compete for one Lease.
    pub lease_name: String,
    /// Leader-election timings; `None` keeps the binary's defaults.
    pub lease_timing: Option<LeaseFlags>,
    /// Further flags, passed as they are.
    pub extra_args: Vec<String>,
    /// How long [`Signpost::start`] waits for `/readyz` to answer 200.
    pub ready_timeout: Duration,
}

impl SignpostOptions {
    /// A process for the test namespace `namespace` over `service_cidrs`, with a Lease name
    /// derived from `name`.
    pub fn new(name: &str, namespace: &str, service_cidrs: &[String]) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            service_cidrs: service_cidrs.to_vec(),
            lease_name: format!("signpost-{name}"),
            lease_timing: None,
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
        }
    }

    /// Uses the given leader-election timings.
    pub fn lease_timing(mut self, timing: LeaseFlags) -> Self {
        self.lease_timing = Some(timing);
        self
    }

    /// Competes for the Lease `name` (share it to run replicas of one deployment).
    pub fn lease_name(mut self, name: &str) -> Self {
        self.lease_name = name.to_string();
        self
    }

    /// Adds a flag (or a flag's value) to the command line.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// The command-line arguments after `signpost`, metrics address excluded.
    fn args(&self) -> Vec<String> {
        let mut args = vec!["run".to_string()];
        for cidr in &self.service_cidrs {
            args.push("--service-cidr".into());
            args.push(cidr.clone());
        }
        args.extend([
            "--namespace".into(),
            self.namespace.clone(),
            "--leader-election-namespace".into(),
            self.namespace.clone(),
            "--leader-election-name".into(),
            self.lease_name.clone(),
        ]);
        if let Some(t) = self.lease_timing {
            args.extend([
                "--leader-election-lease-duration".into(),
                format!("{}s", t.lease_duration.as_secs()),
                "--leader-election-renew-deadline".into(),
                format!("{}s", t.renew_deadline.as_secs()),
                "--leader-election-retry-period".into(),
                format!("{}s", t.retry_period.as_secs()),
            ]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The binary under test: `SIGNPOST_BIN`, else `<target dir>/debug/signpost` (built by
/// `just build`, which `just test` and `just e2e` run first).
pub fn signpost_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIGNPOST_BIN") {
        return PathBuf::from(bin);
    }
    target_dir().join("debug").join("signpost")
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .join("target"),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the port, release it.
/// Another process could take it in between; the start-up check then fails loudly with the
/// process's log rather than silently talking to someone else's server.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One running `signpost run` process. Dropping it SIGKILLs the process, so a failing test
/// (a panic or an early `?` return) never leaves a controller running against the cluster.
pub struct Signpost {
    child: Child,
    exited: Option<ExitStatus>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// The log file (stdout and stderr).
    pub log_path: PathBuf,
    /// Where this start's output begins in the log (restarts append to the same file).
    log_start: u64,
    /// How it was started, so a test can start it again the same way.
    pub options: SignpostOptions,
}

impl Signpost {
    /// Spawns the process and waits until `/readyz` answers 200 (leading with synced caches,
    /// or standing by behind another replica). On timeout or early exit, fails with the tail
    /// of its log.
    pub async fn start(options: SignpostOptions) -> anyhow::Result<Self> {
        let mut process = Self::spawn(options)?;
        let timeout = process.options.ready_timeout;
        process.wait_ready(timeout).await?;
        Ok(process)
    }

    /// Spawns the process without waiting for it to be ready.
    pub fn spawn(options: SignpostOptions) -> anyhow::Result<Self> {
        let bin = signpost_bin();
        if !bin.exists() {
            bail!(
                "{} does not exist: build it first (`just build` or `cargo build --bins`), or set SIGNPOST_BIN",
                bin.display()
            );
        }
        let port = free_port()?;
        let metrics_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log_dir = target_dir().join("e2e-logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let log_path = log_dir.join(format!("{}.log", options.name));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut args = options.args();
        args.extend(["--metrics-addr".into(), metrics_addr.to_string()]);
        writeln!(log, "==> {} {}", bin.display(), args.join(" "))?;
        let log_start = log.metadata()?.len();
        let mut command = Command::new(&bin);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The binary reads its flags from SIGNPOST_* variables too; a developer's shell (or the
        // control-plane scripts' SIGNPOST_KUBECONFIG) must not change what the test asked for.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SIGNPOST_") {
                command.env_remove(&key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,kube=warn");
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            exited: None,
            log_start,
            metrics_addr,
            log_path,
            options,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (reaping it), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits until `/readyz` answers 200. Fails at once, with the log tail, if the process
    /// exits, and after `timeout` with the last answer seen and the log tail.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_readyz("/readyz 200", timeout, |code, _| code == 200)
            .await
    }

    /// Waits until this process leads and its controllers have synced (`/readyz` 200 with a
    /// body starting with `leading`).
    pub async fn wait_leading(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_readyz("leading with synced caches", timeout, |code, body| {
            code == 200 && body.starts_with("leading")
        })
        .await
    }

    async fn wait_readyz(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(u16, &str) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                bail!(
                    "signpost {} exited ({status}) while waiting for {what}; last lines of {}:\n{}",
                    self.options.name,
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            let seen = match self.get("/readyz").await {
                Ok((code, body)) if done(code, &body) => return Ok(()),
                Ok((code, body)) => format!("{code} {body:?}"),
                Err(error) => format!("{error:#}"),
            };
            if start.elapsed() >= timeout {
                bail!(
                    "signpost {} not {what} after {timeout:?} (last /readyz: {seen}); last lines of {}:\n{}",
                    self.options.name,
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether this process leads: `/readyz` answers with a body starting with `leading`
    /// (whether or not its caches have synced yet). `false` when it does not answer.
    pub async fn is_leading(&self) -> bool {
        matches!(self.get("/readyz").await, Ok((_, body)) if body.starts_with("leading"))
    }

    /// The `/readyz` answer: status code and body.
    pub async fn readyz(&self) -> anyhow::Result<(u16, String)> {
        self.get("/readyz").await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (code, body) = self.get("/metrics").await?;
        if code != 200 {
            bail!("/metrics answered {code}: {body}");
        }
        Ok(body)
    }

    /// One HTTP/1.0 GET to the process's metrics server. HTTP/1.0 so the server closes the
    /// connection and sends a plain body: the suite needs no HTTP client library for this.
    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.metrics_addr).await?;
            stream
                .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            anyhow::Ok(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .with_context(|| format!("GET {path}: no answer within 5 s"))?
            .with_context(|| format!("GET http://{}{path}", self.metrics_addr))?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("GET {path}: malformed response {text:?}"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("GET {path}: no status code in {head:?}"))?;
        Ok((code, body.to_string()))
    }

    /// Sends SIGTERM and returns at once (to measure what happens while it shuts down).
    pub fn signal_term(&self) -> anyhow::Result<()> {
        send_signal(self.pid(), "TERM")
    }

    /// Graceful stop: SIGTERM, then waits up to 20 s for the process to exit (its shutdown
    /// lets reconciles in flight finish, up to 10 s), then SIGKILL. Returns how it exited.
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.signal_term()?;
        match self.wait_exit(Duration::from_secs(20)).await {
            Some(status) => Ok(status),
            None => {
                let status = self.kill9().await?;
                bail!(
                    "signpost {} ignored SIGTERM for 20 s and was killed ({status}); last lines of {}:\n{}",
                    self.options.name,
                    self.log_path.display(),
                    self.log_tail(40)
                )
            }
        }
    }

    /// SIGKILL, as a crash or an OOM kill would: no shutdown, no lease release. Waits for the
    /// process to be gone.
    pub async fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        send_signal(self.pid(), "KILL")?;
        self.wait_exit(Duration::from_secs(10))
            .await
            .with_context(|| format!("pid {} still alive 10 s after SIGKILL", self.pid()))
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `lines` lines of the log file.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// What this start of the process has logged so far (not earlier starts').
    pub fn log_since_start(&self) -> String {
        let text = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(self.log_start).map_or(text.len(), |s| s.min(text.len()));
        String::from_utf8_lossy(&text[start..]).into_owned()
    }
}

impl Drop for Signpost {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP relay between a Signpost process and the API server, as a separate process
/// (`e2e/netns/forward.py`) that a test can freeze with SIGSTOP: the relay's sockets stay open
/// and the kernel still accepts bytes into them, but nothing is answered, which is how a hung
/// API server or a half-open connection looks to the client (a closed port would fail fast).
pub struct Relay {
    child: Child,
    /// Where the relay listens (loopback).
    pub addr: SocketAddr,
}

impl Relay {
    /// Starts a relay on a free loopback port to `target` and waits until it accepts.
    pub async fn start(target: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("netns/forward.py");
        let child = Command::new("python3")
            .arg(&script)
            .arg(addr.to_string())
            .arg(target)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting python3 {}", script.display()))?;
        let relay = Self { child, addr };
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the relay on {addr} did not accept within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(relay)
    }

    /// A relay to the API server of the tests' kubeconfig (`KUBECONFIG`).
    pub async fn to_api_server() -> anyhow::Result<Self> {
        let server = kube::config::Kubeconfig::read()
            .context("reading the tests' kubeconfig")?
            .clusters
            .iter()
            .find_map(|c| c.cluster.as_ref()?.server.clone())
            .context("no server in the tests' kubeconfig")?;
        Self::start(server.trim_start_matches("https://")).await
    }

    /// Stops the relay process (SIGSTOP): its connections hang, open.
    pub fn freeze(&self) -> anyhow::Result<()> {
        send_signal(self.child.id(), "STOP")
    }

    /// Lets a frozen relay run again (SIGCONT): what was sent to it meanwhile goes through.
    pub fn thaw(&self) -> anyhow::Result<()> {
        send_signal(self.child.id(), "CONT")
    }

    /// A kubeconfig like the one the tests use (`KUBECONFIG`), whose server is this relay;
    /// written to `target/e2e-logs/<name>.kubeconfig`. The API server's certificate names
    /// 127.0.0.1, so TLS is checked end to end through the relay.
    pub fn kubeconfig(&self, name: &str) -> anyhow::Result<PathBuf> {
        let mut config =
            kube::config::Kubeconfig::read().context("reading the tests' kubeconfig")?;
        for cluster in &mut config.clusters {
            if let Some(cluster) = cluster.cluster.as_mut() {
                cluster.server = Some(format!("https://{}", self.addr));
            }
        }
        let dir = target_dir().join("e2e-logs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.kubeconfig"));
        // JSON is YAML: any kubeconfig reader takes it.
        std::fs::write(&path, serde_json::to_vec(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = send_signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed ({status})");
    }
    Ok(())
}

/// The last `lines` lines of a text file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The sum of every sample of metric `name` (all label sets) in Prometheus text, so a test can
/// print totals such as `signpost_api_writes_total` without parsing labels.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            if series.split('{').next()? != name {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_every_label_set_of_one_metric_only() {
        let text = "# HELP signpost_api_writes Writes\n\
                    signpost_api_writes_total{controller=\"ipam\"} 3\n\
                    signpost_api_writes_total{controller=\"endpoints\"} 4\n\
                    signpost_api_writes_total_other 100\n\
                    signpost_reconciles_total{controller=\"ipam\"} 9\n";
        assert_eq!(metric_sum(text, "signpost_api_writes_total"), 7.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }

    #[test]
    fn args_scope_the_process_to_its_namespace_cidrs_and_lease() {
        let opts = SignpostOptions::new("t", "ns1", &["10.1.2.0/24".into(), "fd00::/64".into()])
            .lease_timing(FAST_LEASE)
            .arg("--log-format")
            .arg("json");
        let args = opts.args().join(" ");
        assert_eq!(
            args,
            "run --service-cidr 10.1.2.0/24 --service-cidr fd00::/64 --namespace ns1 \
             --leader-election-namespace ns1 --leader-election-name signpost-t \
             --leader-election-lease-duration 6s --leader-election-renew-deadline 4s \
             --leader-election-retry-period 1s --log-format json"
        );
    }
}
