//! Pods listed and watched as protobuf against the local control plane give the same objects
//! and events as kube's JSON client.
#![cfg(feature = "integration")]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Resource};
use signpost_controllers::endpoints::{PodPhase, SlimPod, decode_slim_pod};
use signpost_controllers::runtime::protobuf_watch::ProtobufWatch;
use signpost_e2e::{TestNamespace, client, pod_is_ready, set_pod_ready, wait_for_count};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(30);

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "hostname": name, "subdomain": "sub",
            "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9000, "protocol": "UDP"}]}]
        }
    }))
    .unwrap()
}

/// The next event, or a failure naming what was awaited.
async fn next(
    events: &mut mpsc::UnboundedReceiver<watcher::Event<SlimPod>>,
    what: &str,
) -> anyhow::Result<watcher::Event<SlimPod>> {
    tokio::time::timeout(TIMEOUT, events.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no event within {TIMEOUT:?} while waiting for {what}"))?
        .ok_or_else(|| anyhow::anyhow!("the watch ended while waiting for {what}"))
}

fn name(pod: &SlimPod) -> &str {
    pod.meta().name.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn pages_and_changes_arrive_as_kube_json_would_give_them() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "protobuf").await?;
    let pods: Api<Pod> = ns.api();
    for i in 0..7 {
        pods.create(&PostParams::default(), &pod(&format!("web-{i}"), "web"))
            .await?;
    }
    pods.create(&PostParams::default(), &pod("other", "other"))
        .await?;
    // Binding a pod sets its node and copies the node's zone label onto it: wait until every
    // pod is bound and ready, so the protobuf list and the JSON list below see the same pods.
    let bound_and_ready =
        |p: &&Pod| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) && pod_is_ready(p);
    wait_for_count(
        "every pod bound and ready",
        TIMEOUT,
        8,
        "of 8 pods bound and ready",
        || async {
            let list = pods
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(list.items.iter().filter(bound_and_ready).count())
        },
    )
    .await?;

    // Pages of 3 (so the list takes three requests), only the pods labelled app=web.
    let slim: Api<SlimPod> = ns.api();
    let config = watcher::Config::default().page_size(3).labels("app=web");
    let (sender, mut events) = mpsc::unbounded_channel();
    let watch = ProtobufWatch::new(&slim, config, decode_slim_pod);
    let task = tokio::spawn(watch.run(move |event| {
        let _ = sender.send(event);
    }));

    assert!(matches!(
        next(&mut events, "Init").await?,
        watcher::Event::Init
    ));
    let mut listed = Vec::new();
    loop {
        match next(&mut events, "the listed pods").await? {
            watcher::Event::InitApply(pod) => listed.push(pod),
            watcher::Event::InitDone => break,
            _ => anyhow::bail!("an event other than InitApply before InitDone"),
        }
    }
    let mut expected = slim
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items;
    expected.sort_by(|a, b| name(a).cmp(name(b)));
    listed.sort_by(|a, b| name(a).cmp(name(b)));
    let names: Vec<&str> = listed.iter().map(name).collect();
    assert_eq!(
        names,
        (0..7).map(|i| format!("web-{i}")).collect::<Vec<_>>()
    );
    // Resource versions may have moved on between the two lists (kwok updates status); the
    // rest must be what the JSON decode gives.
    for (got, want) in listed.iter_mut().zip(&mut expected) {
        for pod in [&mut *got, &mut *want] {
            pod.meta_mut().resource_version = None;
            if let Some(record) = pod.record.as_mut() {
                record.resource_version = "".into();
            }
        }
        if let (Some(a), Some(b)) = (got.record.as_mut(), want.record.as_mut())
            && (&a.ips, a.phase, a.ready) != (&b.ips, b.phase, b.ready)
        {
            // What the status says.
            for record in [a, b] {
                (record.ips, record.phase, record.ready) =
                    (Box::default(), PodPhase::Pending, false);
            }
        }
        assert_eq!(got, want);
    }

    // A readiness change arrives as an Apply with the new condition (kwok may report its own
    // status updates first).
    set_pod_ready(&pods, "web-3", false).await?;
    loop {
        if let watcher::Event::Apply(pod) = next(&mut events, "web-3 not ready").await? {
            let record = pod
                .record
                .clone()
                .expect("a pod from the API server has a record");
            if name(&pod) == "web-3" && !record.ready {
                assert_eq!(record.named_ports.len(), 1, "{record:?}");
                break;
            }
        }
    }

    // A deletion arrives as a Delete; the other label's pod never shows up.
    pods.delete("web-5", &DeleteParams::default().grace_period(0))
        .await?;
    loop {
        match next(&mut events, "web-5 deleted").await? {
            watcher::Event::Delete(pod) => {
                assert_eq!(name(&pod), "web-5");
                break;
            }
            watcher::Event::Apply(pod) => assert_ne!(name(&pod), "other"),
            _ => anyhow::bail!("a relist during a short watch"),
        }
    }
    task.abort();
    ns.delete().await?;
    Ok(())
}
