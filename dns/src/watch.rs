//! Feeds the lookup table from one watch of DNSRecords, and reports the malformed ones.
//!
//! The informer's handlers apply each change to the table under its write lock at once (a few
//! microseconds per record), so an answer changes as soon as the watch event arrives. Events
//! go through a channel to a task, because handlers must never block on the API server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use signpost_crds::DNSRecord;
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
    informer.on_change(move |change| {
        let mut table = table.write().unwrap_or_else(|p| p.into_inner());
        match change {
            Change::Applied { new, .. } => apply(&mut table, new, &metrics, &reports),
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
            }
        }
        metrics.records.set(gauge(table.records()));
        metrics.rejected.set(gauge(table.rejected_count()));
        metrics.names.set(gauge(table.names()));
    });
    informer
}

fn apply(
    table: &mut Table,
    record: &DNSRecord,
    metrics: &DnsMetrics,
    reports: &mpsc::UnboundedSender<Report>,
) {
    metrics.updates.inc();
    if let Applied::Rejected(reason) = table.apply(record) {
        let _ = reports.send(Report::Rejected {
            reference: Box::new(record.object_ref(&())),
            key: key_of(record),
            version: record.resource_version(),
            reason,
        });
    }
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
