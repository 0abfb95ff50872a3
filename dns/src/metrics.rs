//! Metrics of `signpost dns` and its HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
//!
//! The DNS metrics live in the same registry as the shared [`Metrics`] (under
//! `signpost_dns_`), so Events published through [`signpost_runtime::EventSink`] are counted in
//! `signpost_problems_total{controller="dns"}` like every other controller's.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use signpost_runtime::server::{probe_router, serve_router};
use signpost_runtime::{Metrics, SharedMetrics, Synced};

/// Labels of one answered query. Both values come from small fixed sets, so the series count
/// is bounded whatever clients send.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Query type: `A`, `AAAA`, `SRV`, `CNAME`, `SOA`, `NS`, `PTR`, `TXT`, `MX`, `ANY`, or
    /// `other`.
    pub r#type: String,
    /// Response code: `NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`, `FORMERR`, `NOTIMP`, or
    /// `other`.
    pub rcode: String,
}

/// Labels naming the transport a query came over.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// `udp` or `tcp`.
    pub protocol: String,
}

/// Labels of a forwarding outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `ok`, `timeout`, `error`, or `shed` (the in-flight bound was reached).
    pub result: String,
}

/// Labels of a programming-latency sample.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `cluster_ip`, `headless` or `external_name`.
    pub service_kind: String,
}

/// The metrics `signpost dns` adds to the shared registry.
#[derive(Clone)]
pub struct DnsMetrics {
    /// Queries answered, by type and response code.
    pub queries: Family<QueryLabels, Counter>,
    /// Time from a parsed request to the response handed to the socket, by transport.
    pub duration: Family<ProtocolLabels, Histogram>,
    /// Queries sent to the upstream server, by outcome.
    pub forwarded: Family<UpstreamLabels, Counter>,
    /// DNSRecords in the table (served or rejected).
    pub records: Gauge,
    /// DNSRecords not served because they are malformed.
    pub rejected: Gauge,
    /// Names in the table.
    pub names: Gauge,
    /// Watch events applied to the table.
    pub updates: Counter,
    /// From the change a DNSRecord carries (its `signpost.dev/last-change-trigger-time`) to
    /// the moment its answers are served, by Service kind.
    pub programming: Family<KindLabels, Histogram>,
}

impl DnsMetrics {
    /// Registers the DNS metrics in `metrics`' registry (before it is shared).
    pub fn register(metrics: &mut Metrics) -> Self {
        let dns = Self {
            queries: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
            }),
            forwarded: Family::default(),
            records: Gauge::default(),
            rejected: Gauge::default(),
            names: Gauge::default(),
            updates: Counter::default(),
            // 1 ms to ~9 min, as CoreDNS's dns_programming_duration_seconds spans.
            programming: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 20))
            }),
        };
        metrics
            .registrar("dns")
            .add(
                "queries",
                "DNS queries answered, by type and response code",
                &dns.queries,
            )
            .add(
                "query_duration_seconds",
                "Time to answer one DNS query",
                &dns.duration,
            )
            .add(
                "upstream_queries",
                "Queries outside the cluster domain forwarded to --upstream",
                &dns.forwarded,
            )
            .add("records", "DNSRecords in the lookup table", &dns.records)
            .add(
                "rejected_records",
                "DNSRecords not served because they are malformed",
                &dns.rejected,
            )
            .add("names", "Names in the lookup table", &dns.names)
            .add(
                "table_updates",
                "DNSRecord watch events applied to the lookup table",
                &dns.updates,
            )
            .add(
                "programming_duration_seconds",
                "From the change a DNSRecord carries (Service, pods) to its answers being served",
                &dns.programming,
            );
        dns
    }

    /// Counts one answered query.
    pub fn answered(&self, qtype: &str, rcode: &str, protocol: &str, took: Duration) {
        self.queries
            .get_or_create(&QueryLabels {
                r#type: qtype.to_owned(),
                rcode: rcode.to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&ProtocolLabels {
                protocol: protocol.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one programming latency of a record of `kind`.
    pub fn programmed(&self, kind: &str, took: Duration) {
        self.programming
            .get_or_create(&KindLabels {
                service_kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one forwarded query.
    pub fn forwarded(&self, result: &str) {
        self.forwarded
            .get_or_create(&UpstreamLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

/// Serves `/metrics`, `/healthz` (always 200 while the process runs) and `/readyz` (200 once
/// the first full list of DNSRecords is in the table: before that, NXDOMAIN answers would be
/// lies) on an already bound listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: SharedMetrics,
    synced: Synced,
) -> std::io::Result<()> {
    let app = probe_router(
        metrics,
        || (true, "ok".into()),
        move || {
            if synced.is_synced() {
                (true, "DNSRecords loaded".into())
            } else {
                (false, "loading DNSRecords".into())
            }
        },
    );
    serve_router(listener, app).await
}
