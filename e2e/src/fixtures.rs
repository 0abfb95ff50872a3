//! The seeds' applications as API objects.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

/// The first seed's `hostnames` Deployment: `replicas` pods labelled `app: hostnames`, serving
/// their own name on container port 9376.
pub fn hostnames_deployment(replicas: i32) -> Deployment {
    app_deployment("hostnames", replicas, 9376)
}

/// The first seed's `hostnames` Service: port 80 (named `default`) to target port 9376.
pub fn hostnames_service() -> Service {
    app_service("hostnames", 80, 9376)
}

/// A Deployment of `replicas` pods labelled `app: <name>` with one container port.
pub fn app_deployment(name: &str, replicas: i32, container_port: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": name,
                        "image": "mirrorgooglecontainers/serve_hostname",
                        "ports": [{"containerPort": container_port, "protocol": "TCP"}]
                    }]
                }
            }
        }
    }))
    .expect("static Deployment is valid")
}

/// A ClusterIP Service selecting `app: <name>`, port `port` (named `default`) to `target_port`.
pub fn app_service(name: &str, port: i32, target_port: i32) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "default", "protocol": "TCP", "port": port, "targetPort": target_port}]
        }
    }))
    .expect("static Service is valid")
}
