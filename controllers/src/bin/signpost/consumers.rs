//! `signpost dns` and `signpost proxy`: the reference consumers, started from their flags.

use std::process::ExitCode;

use clap::Args;

use crate::{CommonArgs, block_on, client, hostname, init_logging, shutdown_signal};

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Dummy interface the VIPs are added to (created if missing; the proxy owns its addresses).
    #[arg(
        long,
        value_name = "NAME",
        env = "SIGNPOST_PROXY_INTERFACE",
        default_value = "signpost0"
    )]
    pub interface: String,

    /// Only proxy Services of this namespace (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE", env = "SIGNPOST_NAMESPACE")]
    pub namespace: Option<String>,

    /// Client connections proxied at once, over all VIPs (at least 1); beyond, new ones are
    /// reset on arrival and counted in signpost_proxy_connections_over_limit_total.
    #[arg(
        long,
        value_name = "N",
        env = "SIGNPOST_PROXY_MAX_CONNECTIONS",
        default_value_t = signpost_proxy::server::DEFAULT_MAX_CONNECTIONS as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SIGNPOST_PROXY_METRICS_ADDR",
        default_value = "127.0.0.1:9154"
    )]
    pub metrics_addr: std::net::SocketAddr,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DnsArgs {
    /// UDP and TCP address to answer DNS queries on.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SIGNPOST_DNS_LISTEN",
        default_value = "127.0.0.1:5353"
    )]
    pub listen: std::net::SocketAddr,

    /// The zone answered authoritatively (the cluster's DNS domain).
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "SIGNPOST_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// DNS server (ip:port) to forward names outside the cluster domain to; without it they
    /// are REFUSED.
    #[arg(long, value_name = "ADDR", env = "SIGNPOST_DNS_UPSTREAM")]
    pub upstream: Option<std::net::SocketAddr>,

    /// Only serve DNSRecords of this namespace (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE", env = "SIGNPOST_NAMESPACE")]
    pub namespace: Option<String>,

    /// Largest UDP answer in bytes (512-65535), whatever EDNS buffer the client advertises;
    /// larger answers are truncated (TC) and the client retries over TCP.
    #[arg(
        long,
        value_name = "BYTES",
        env = "SIGNPOST_DNS_MAX_UDP_SIZE",
        default_value_t = signpost_dns::DEFAULT_MAX_UDP_SIZE,
        value_parser = clap::value_parser!(u16).range(512..)
    )]
    pub max_udp_size: u16,

    /// Forwarded queries allowed to wait on --upstream at once (at least 1); beyond, the
    /// client gets SERVFAIL at once, so a slow upstream holds a bounded number of sockets.
    #[arg(
        long,
        value_name = "N",
        env = "SIGNPOST_DNS_MAX_UPSTREAM_IN_FLIGHT",
        default_value_t = signpost_dns::forward::DEFAULT_MAX_IN_FLIGHT as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_upstream_in_flight: u32,

    /// How long names of the cluster domain get SERVFAIL while the first list of DNSRecords is
    /// not in (an NXDOMAIN then could be wrong, and resolvers cache it); after that the server
    /// answers from what it has. `5s`, `500ms`, `1m`.
    #[arg(
        long,
        value_name = "DURATION",
        env = "SIGNPOST_DNS_STARTUP_TIMEOUT",
        default_value = "5s",
        value_parser = parse_startup_timeout
    )]
    pub startup_timeout: std::time::Duration,

    /// A service CIDR (repeatable): reverse names (in-addr.arpa, ip6.arpa) of its addresses
    /// are answered here (PTR, or NXDOMAIN when no DNSRecord has the address).
    #[arg(
        long = "service-cidr",
        value_name = "CIDR",
        env = "SIGNPOST_SERVICE_CIDRS",
        value_delimiter = ','
    )]
    pub service_cidrs: Vec<signpost_dns::reverse::Cidr>,

    /// A pod CIDR (repeatable): reverse names of its addresses are answered here too (PTR of
    /// headless Services' endpoints). Reverse names outside every --service-cidr and
    /// --pod-cidr go to --upstream, or are REFUSED.
    #[arg(
        long = "pod-cidr",
        value_name = "CIDR",
        env = "SIGNPOST_DNS_POD_CIDRS",
        value_delimiter = ','
    )]
    pub pod_cidrs: Vec<signpost_dns::reverse::Cidr>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SIGNPOST_DNS_METRICS_ADDR",
        default_value = "127.0.0.1:9153"
    )]
    pub metrics_addr: std::net::SocketAddr,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn proxy(args: ProxyArgs) -> ExitCode {
    if args.interface.is_empty() || args.interface.len() > 15 || args.interface.contains('/') {
        eprintln!(
            "error: invalid value for '--interface': {:?} is not an interface name (1-15 characters, no '/')",
            args.interface
        );
        return ExitCode::from(2);
    }
    init_logging(&args.common.log_format);
    // Before the runtime starts its threads: they inherit this thread's capabilities.
    match signpost_proxy::privileges::raise() {
        Ok(plan) => {
            if !plan.raise.is_empty() {
                tracing::info!(raised = ?plan.raise, "capabilities put in effect");
            }
            if !plan.unavailable.is_empty() {
                tracing::warn!(unavailable = ?plan.unavailable, "VIP ports below 1024 cannot be served");
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    block_on(serve_proxy(args))
}

async fn serve_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    use signpost_proxy as proxy;
    let client = client(args.common.kubeconfig.as_deref()).await?;
    let mut config = proxy::Config::new();
    config.interface = args.interface;
    config.max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    config.namespace = args.namespace;
    config.metrics_addr = Some(args.metrics_addr);
    let mut running = proxy::start(client, config).await?;
    tokio::select! {
        result = running.block_until_done() => result,
        _ = shutdown_signal() => {
            running.shut_down().await;
            Ok(())
        }
    }
}

pub fn dns(args: DnsArgs) -> ExitCode {
    if let Err(error) =
        signpost_controllers::records::normalize_cluster_domain(&args.cluster_domain)
    {
        eprintln!("error: invalid value for '--cluster-domain': {error}");
        return ExitCode::from(2);
    }
    // hickory logs every query at info: keep that for RUST_LOG=hickory_server=info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,hickory_server=warn")
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.common.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    block_on(serve_dns(args))
}

async fn serve_dns(args: DnsArgs) -> anyhow::Result<()> {
    use signpost_dns as dns;
    let client = client(args.common.kubeconfig.as_deref()).await?;
    let mut config = dns::Config::new();
    config.listen = args.listen;
    config.cluster_domain = args.cluster_domain;
    config.upstream = args.upstream;
    config.namespace = args.namespace;
    config.metrics_addr = Some(args.metrics_addr);
    config.max_udp_size = args.max_udp_size;
    config.max_upstream_in_flight =
        usize::try_from(args.max_upstream_in_flight).unwrap_or(usize::MAX);
    config.startup_timeout = args.startup_timeout;
    config.reverse_cidrs = args
        .service_cidrs
        .into_iter()
        .chain(args.pod_cidrs)
        .collect();
    config.instance = std::env::var("POD_NAME").ok().or_else(hostname);
    let mut running = dns::start(client, config).await?;
    tokio::select! {
        result = running.block_until_done() => result,
        _ = shutdown_signal() => {
            running.shut_down().await;
            Ok(())
        }
    }
}

/// `--startup-timeout`: `<n>ms`, `<n>s` (or a bare number of seconds), `<n>m`; at most an hour.
fn parse_startup_timeout(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 5s or 500ms"))?;
    let duration = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "" | "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?} has an unknown unit (use ms, s or m)")),
    };
    if duration > std::time::Duration::from_secs(3600) {
        return Err(format!("{text:?} is longer than an hour"));
    }
    Ok(duration)
}
