//! `signpost`: the controllers and the reference consumers in one binary.
//!
//! - [`run`]: `signpost run`, the controllers (flags, start-up checks, leader election).
//! - [`consumers`]: `signpost dns` and `signpost proxy`.
//! - here: the command line, and what every subcommand shares (client, logs, signals).

mod consumers;
mod run;
mod webhook;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// Signpost: ClusterIP allocation, Endpoints/EndpointSlices and DNSRecords for Kubernetes
/// Services.
#[derive(Parser, Debug)]
#[command(name = "signpost", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (IPAM, endpoints, DNS records) against the cluster.
    Run(run::RunArgs),
    /// Serve DNS for the cluster domain from DNSRecords (authoritative; see docs/dns.md).
    Dns(consumers::DnsArgs),
    /// Proxy TCP connections to every Signpost VIP over its ready endpoints (round robin;
    /// needs NET_ADMIN; see docs/proxy.md).
    Proxy(consumers::ProxyArgs),
}

/// Flags every subcommand takes.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Kubeconfig file (default: KUBECONFIG, then in-cluster configuration).
    #[arg(long, value_name = "PATH", env = "SIGNPOST_KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Log format.
    #[arg(long, value_name = "FORMAT", env = "SIGNPOST_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            // One line naming the flag and the problem.
            let rendered = error.render().to_string();
            eprintln!(
                "{}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Dns(args) => consumers::dns(args),
        Command::Proxy(args) => consumers::proxy(args),
    }
}

/// Runs `work` to its end on a new multi-threaded runtime: 0 when it succeeds, 1 with one
/// line on stderr when it fails or the runtime cannot start.
pub fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig or in-cluster configuration")?,
    };
    signpost_client::build(config).context("building the Kubernetes client")
}

pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
    }
}
