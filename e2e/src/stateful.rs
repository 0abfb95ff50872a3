//! Pods made the way a StatefulSet makes them, without the StatefulSet, and the headless
//! Service that governs them: per-pod DNS names (`<hostname>.<service>.<namespace>...`) need
//! both, and a test that writes the pods itself controls their names and readiness.

use k8s_openapi::api::core::v1::{Pod, Service};

/// A pod named `name` with `hostname: <name>` and `subdomain: <subdomain>`, labelled
/// `app: <app>`, with one container port named `http` (8080).
pub fn stateful_pod(name: &str, subdomain: &str, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "hostname": name,
            "subdomain": subdomain,
            "terminationGracePeriodSeconds": 0,
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
