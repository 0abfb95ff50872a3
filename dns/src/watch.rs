//! Feeds the lookup table from one watch of DNSRecords, and reports the malformed ones.
//!
//! The informer's handlers apply each change to the table under its write lock at once (a few
//! microseconds per record), so an answer changes as soon as the watch event arrives. Events
//! go through a channel to a task, because handlers must never block on the API server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use signpost_core::records::trigger::ANNOTATION_TRIGGER_TIME;
use signpost_crds::{DNSRecord, RecordType};
use tokio::sync::mpsc;

use super::metrics::DnsMetrics;
use super::table::{Applied, RecordKey, Table};
use signpost_runtime::{Change, EventSink, Informer, strip_metadata};

/// Reason of the Warning Event on a DNSRecord that cannot be served.
pub const INVALID_RECORD: &str = "InvalidDNSRecord";

/// What the handlers tell the reporting task.
#[derive(Debug)]
pub enum Report {
    /// A record was rejected by the table.
    Rejected {
        /// The record, for the Event's `regarding`.
        reference: Box<ObjectReference>,
        /// Its namespace and name.
        key: RecordKey,
        /// The resourceVersion that was rejected.
        version: Option<String>,
        /// Why.
        reason: String,
    },
    /// A record is gone: forget what was reported about it.
    Forget(RecordKey),
}

/// An informer over DNSRecords (all namespaces, or `namespace`) whose handlers keep `table`
/// current and send rejections to `reports`.
pub fn informer(
    client: &Client,
    namespace: Option<&str>,
    table: Arc<RwLock<Table>>,
    metrics: DnsMetrics,
    reports: mpsc::UnboundedSender<Report>,
) -> Informer<DNSRecord> {
    let api: Api<DNSRecord> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut informer = Informer::new(api, watcher::Config::default(), strip_metadata);
    let store = informer.store();
    // Latency is measured for changes seen after the first list: what the list brings was
    // changed before this server ran.
    let listed = AtomicBool::new(false);
    informer.on_change(move |change| {
        let mut table = table.write().unwrap_or_else(|p| p.into_inner());
        match change {
            Change::Applied { old, new } => {
                let served = apply(&mut table, new, &metrics, &reports);
                if served && listed.load(Ordering::Relaxed) {
                    observe_programming(&metrics, old.as_deref(), new);
                }
            }
            Change::Deleted(record) => {
                metrics.updates.inc();
                let key = key_of(record);
                table.delete(&key.0, &key.1);
                let _ = reports.send(Report::Forget(key));
            }
            Change::Relisting => {}
            Change::Resynced { removed } => {
                // The cache holds exactly what was listed: drop what vanished while the watch
                // was down, then apply the rest (unchanged resourceVersions cost nothing).
                for record in removed {
                    let key = key_of(record);
                    table.delete(&key.0, &key.1);
                    let _ = reports.send(Report::Forget(key));
                }
                for record in store.state() {
                    apply(&mut table, &record, &metrics, &reports);
                }
                listed.store(true, Ordering::Relaxed);
            }
        }
        metrics.records.set(gauge(table.records()));
        metrics.rejected.set(gauge(table.rejected_count()));
        metrics.names.set(gauge(table.names()));
    });
    informer
}

/// Applies `record` to the table; returns whether its answers are served now (a new version,
/// not rejected).
fn apply(
    table: &mut Table,
    record: &DNSRecord,
    metrics: &DnsMetrics,
    reports: &mpsc::UnboundedSender<Report>,
) -> bool {
    metrics.updates.inc();
    match table.apply(record) {
        Applied::Served => true,
        Applied::Unchanged => false,
        Applied::Rejected(reason) => {
            let _ = reports.send(Report::Rejected {
                reference: Box::new(record.object_ref(&())),
                key: key_of(record),
                version: record.resource_version(),
                reason,
            });
            false
        }
    }
}

/// The record's trigger time, when it has a readable one.
fn trigger_time(record: &DNSRecord) -> Option<&str> {
    record
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_TRIGGER_TIME)
        .map(String::as_str)
}

/// The `service_kind` label of a record (CoreDNS's spelling).
pub fn service_kind(record_type: RecordType) -> &'static str {
    match record_type {
        RecordType::ClusterIP => "cluster_ip",
        RecordType::Headless => "headless",
        RecordType::ExternalName => "external_name",
    }
}

/// Records the programming latency of `new`, just served: from its trigger time to now. Only
/// when the trigger time changed (a status write keeps it, and is not a new change).
fn observe_programming(metrics: &DnsMetrics, old: Option<&DNSRecord>, new: &DNSRecord) {
    let Some(trigger) = trigger_time(new) else {
        return;
    };
    if old.and_then(trigger_time) == Some(trigger) {
        return;
    }
    if let Some(took) = latency_since(trigger, k8s_openapi::jiff::Timestamp::now()) {
        metrics.programmed(service_kind(new.spec.record_type), took);
    }
}

/// `now - trigger` (an RFC 3339 time); zero when the clocks disagree the other way, `None`
/// when `trigger` does not parse.
pub fn latency_since(trigger: &str, now: k8s_openapi::jiff::Timestamp) -> Option<Duration> {
    let trigger: k8s_openapi::jiff::Timestamp = trigger.parse().ok()?;
    let took = now.duration_since(trigger);
    Some(Duration::try_from(took).unwrap_or(Duration::ZERO))
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn key_of(record: &DNSRecord) -> RecordKey {
    (record.namespace().unwrap_or_default(), record.name_any())
}

/// Publishes one Warning Event (and counts it in `signpost_problems_total`) per rejected
/// resourceVersion of a record, however often the watch replays it.
pub async fn report(mut reports: mpsc::UnboundedReceiver<Report>, events: EventSink) {
    let mut reported: HashMap<RecordKey, Option<String>> = HashMap::new();
    while let Some(report) = reports.recv().await {
        match report {
            Report::Rejected {
                reference,
                key,
                version,
                reason,
            } => {
                if reported.get(&key) == Some(&version) {
                    continue;
                }
                tracing::warn!(namespace = %key.0, name = %key.1, %reason, "DNSRecord not served");
                reported.insert(key, version);
                events
                    .warn(
                        &reference,
                        INVALID_RECORD,
                        "ServeDNS",
                        format!("not served by signpost dns: {reason}"),
                    )
                    .await;
            }
            Report::Forget(key) => {
                reported.remove(&key);
            }
        }
    }
}
