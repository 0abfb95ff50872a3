//! Pods made the way a StatefulSet makes them, without the StatefulSet, and the headless
//! Service that governs them: per-pod DNS names (`<hostname>.<service>.<namespace>...`) need
//! both, and a test that writes the pods itself controls their names and readiness.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::PostParams;

use crate::TestNamespace;

/// Creates in `ns` what a StatefulSet `app` of `replicas` pods and its governing Service would
/// make: the pods `<app>-0`, `<app>-1`, … (see [`stateful_pod`]), then the headless Service
/// `app` over them (see [`governing_service`]).
pub async fn create_stateful_app(
    ns: &TestNamespace,
    app: &str,
    replicas: usize,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = ns.api();
    for i in 0..replicas {
        pods.create(
            &PostParams::default(),
            &stateful_pod(&format!("{app}-{i}"), app, app),
        )
        .await?;
    }
    let services: Api<Service> = ns.api();
    services
        .create(&PostParams::default(), &governing_service(app, app))
        .await?;
    Ok(())
}

/// A pod named `name` with `hostname: <name>` and `subdomain: <subdomain>`, labelled
/// `app: <app>`, with one container port named `http` (8080). Pods of one app go to different
/// nodes: each kwok node draws addresses from a range of its own, so the pods' addresses differ
/// even if kwok's pool of one node hands one out twice.
pub fn stateful_pod(name: &str, subdomain: &str, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "hostname": name,
            "subdomain": subdomain,
            "terminationGracePeriodSeconds": 0,
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}},
                 "topologyKey": "kubernetes.io/hostname"}
            ]}},
            "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]
        }
    }))
    .expect("static Pod is valid")
}

/// The headless Service `name` selecting `app: <app>`, port 80 named `http` to the pods' port
/// named `http`: the subdomain of the [`stateful_pod`]s whose `subdomain` is `name`.
pub fn governing_service(name: &str, app: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "selector": {"app": app},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .expect("static Service is valid")
}
