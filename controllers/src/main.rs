//! `signpost`: the controllers and the reference consumers in one binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use signpost_controllers::app::{self, Settings};
use signpost_controllers::runtime::Metrics;

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
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A service CIDR Signpost allocates virtual IPs from; repeat for several (IPv4 and/or IPv6,
    /// IPv6 no wider than /64).
    #[arg(
        long = "service-cidr",
        value_name = "CIDR",
        env = "SIGNPOST_SERVICE_CIDRS",
        value_delimiter = ',',
        required = true
    )]
    service_cidrs: Vec<IpNet>,

    /// The cluster's DNS domain.
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "SIGNPOST_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,

    /// At most this many endpoints per EndpointSlice.
    #[arg(long, value_name = "N", env = "SIGNPOST_MAX_ENDPOINTS_PER_SLICE", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    max_endpoints_per_slice: u16,

    /// How often the IPAM repair pass runs (e.g. 60s, 5m).
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_REPAIR_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    repair_interval: Duration,

    /// Only manage Services in this namespace (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE", env = "SIGNPOST_NAMESPACE")]
    namespace: Option<String>,

    /// Kubeconfig file (default: KUBECONFIG, then in-cluster configuration).
    #[arg(long, value_name = "PATH", env = "SIGNPOST_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,

    /// Log format.
    #[arg(long, value_name = "FORMAT", env = "SIGNPOST_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 5m"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?} has an unknown unit (use s, m or h)")),
    };
    if seconds == 0 {
        return Err("must be longer than 0s".into());
    }
    Ok(Duration::from_secs(seconds))
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
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    if let Err(error) =
        signpost_controllers::ipam::Allocator::new(args.service_cidrs.iter().copied())
    {
        eprintln!("error: invalid value for '--service-cidr': {error}");
        return ExitCode::from(2);
    }
    init_logging(&args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_controllers(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_controllers(args: RunArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let mut settings = Settings::new(args.service_cidrs);
    settings.cluster_domain = args.cluster_domain;
    settings.max_endpoints_per_slice = usize::from(args.max_endpoints_per_slice);
    settings.repair_interval = args.repair_interval;
    settings.namespace = args.namespace;
    settings.instance = std::env::var("POD_NAME").ok().or_else(hostname);
    let metrics = Arc::new(Metrics::new());
    tracing::info!(cidrs = ?settings.service_cidrs, "starting signpost");
    app::run_until(client, settings, metrics, shutdown_signal()).await
}

async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
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
    kube::Client::try_from(config).context("building the Kubernetes client")
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

fn init_logging(format: &str) {
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

async fn shutdown_signal() {
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
