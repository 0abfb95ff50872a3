//! Writes the API server refuses, against the local control plane: the user sees a Warning on
//! the Service once per failure streak, with kube-controller-manager's reasons, while the
//! controller keeps retrying.
#![cfg(feature = "integration")]

mod common;

use common::{TIMEOUT, finish, start_scoped};
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use signpost_controllers::runtime::Metrics;
use signpost_e2e::{TestNamespace, events_about, fixtures, wait_until};

/// A quota that lets no EndpointSlice and no Endpoints be created in the namespace, once the
/// quota controller has counted what is there (until then the API server refuses every create
/// it covers anyway).
async fn refuse_creates(ns: &TestNamespace) -> anyhow::Result<Api<ResourceQuota>> {
    let quotas: Api<ResourceQuota> = ns.api();
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "no-writes"},
        "spec": {"hard": {
            "count/endpointslices.discovery.k8s.io": "0",
            "count/endpoints": "0",
        }},
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    wait_until("the quota is counted", TIMEOUT, || async {
        let quota = quotas.get("no-writes").await.map_err(|e| e.to_string())?;
        match quota.status.and_then(|s| s.hard) {
            Some(hard) if !hard.is_empty() => Ok(()),
            _ => Err("no status yet".to_string()),
        }
    })
    .await?;
    Ok(quotas)
}

/// How many times the Warning `reason` about `service` was published: Events repeated by
/// the same controller are one object with a series count.
async fn occurrences(
    client: &Client,
    ns: &TestNamespace,
    service: &str,
    reason: &str,
) -> anyhow::Result<i32> {
    let events = events_about(client, &ns.name, service, reason).await?;
    Ok(events
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum())
}

/// The endpoints controller's failed reconciles so far.
fn failed_syncs(metrics: &Metrics) -> u64 {
    let series = "signpost_reconcile_errors_total{controller=\"endpoints\"";
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn refused_writes_are_reported_once_per_failure_streak() -> anyhow::Result<()> {
    let (client, ns, running, metrics) = start_scoped("write-failures").await?;
    let quotas = refuse_creates(&ns).await?;

    // A selector Service gets a slice and an Endpoints object even with no pods: both are
    // refused by the quota.
    ns.create_object(&fixtures::service_selecting("web", "web", 8080))
        .await?;
    for reason in ["FailedToUpdateEndpointSlices", "FailedToUpdateEndpoint"] {
        wait_until(&format!("a {reason} Warning"), TIMEOUT, || async {
            match occurrences(&client, &ns, "web", reason).await {
                Ok(0) => Err("none yet".to_string()),
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
    }

    // The controller keeps retrying (with backoff) without saying it again.
    let reported_at = failed_syncs(&metrics);
    wait_until("three more failed syncs", TIMEOUT, || async {
        let now = failed_syncs(&metrics);
        if now >= reported_at + 3 {
            Ok(())
        } else {
            Err(format!("{now} failed syncs, {reported_at} when reported"))
        }
    })
    .await?;
    for reason in ["FailedToUpdateEndpointSlices", "FailedToUpdateEndpoint"] {
        assert_eq!(
            occurrences(&client, &ns, "web", reason).await?,
            1,
            "{reason}: once per streak, not per retry"
        );
    }

    // The quota goes: the writes succeed and the streak ends. A new streak (the quota back,
    // our slice deleted, so recreating it is refused) is reported again.
    quotas.delete("no-writes", &DeleteParams::default()).await?;
    let slices: Api<EndpointSlice> = ns.api();
    let ours = ListParams::default().labels("kubernetes.io/service-name=web");
    wait_until("the slice is written", TIMEOUT, || async {
        let list = slices.list(&ours).await.map_err(|e| e.to_string())?;
        if list.items.len() == 1 {
            Ok(())
        } else {
            Err(format!("{} slices", list.items.len()))
        }
    })
    .await?;
    refuse_creates(&ns).await?;
    slices
        .delete_collection(&DeleteParams::default(), &ours)
        .await?;
    wait_until("a second FailedToUpdateEndpointSlices", TIMEOUT, || async {
        match occurrences(&client, &ns, "web", "FailedToUpdateEndpointSlices").await {
            Ok(2) => Ok(()),
            Ok(n) => Err(format!("{n} occurrences")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;

    quotas.delete("no-writes", &DeleteParams::default()).await?;
    finish(&client, ns, running).await
}
