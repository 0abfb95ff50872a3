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

/// The third seed's `my-app-svc` / `your-app-svc` shape: a ClusterIP Service named `name`
/// that selects `app: <app>`, so the Service's name differs from its pods' label as in the
/// seed (port 80, named `default`, to `target_port`).
pub fn service_selecting(name: &str, app: &str, target_port: i32) -> Service {
    service_with_spec(
        name,
        serde_json::json!({
            "selector": {"app": app},
            "ports": [{"name": "default", "protocol": "TCP", "port": 80, "targetPort": target_port}]
        }),
    )
}

/// A headless Service (`clusterIP: None`) selecting `app: <app>`: no VIP, its DNS name
/// resolves to the ready pods themselves.
pub fn headless_service(name: &str, app: &str, target_port: i32) -> Service {
    service_with_spec(
        name,
        serde_json::json!({
            "clusterIP": "None",
            "selector": {"app": app},
            "ports": [{"name": "default", "protocol": "TCP", "port": 80, "targetPort": target_port}]
        }),
    )
}

/// An ExternalName Service: no VIP and no endpoints, only a CNAME to `external_name`.
pub fn external_name_service(name: &str, external_name: &str) -> Service {
    service_with_spec(
        name,
        serde_json::json!({"type": "ExternalName", "externalName": external_name}),
    )
}

/// A `RequireDualStack` Service (IPv4 first) selecting `app: <app>`: one VIP per family.
pub fn dual_stack_service(name: &str, app: &str, target_port: i32) -> Service {
    service_with_spec(
        name,
        serde_json::json!({
            "ipFamilyPolicy": "RequireDualStack",
            "ipFamilies": ["IPv4", "IPv6"],
            "selector": {"app": app},
            "ports": [{"name": "default", "protocol": "TCP", "port": 80, "targetPort": target_port}]
        }),
    )
}

/// A Service with the given name and `spec` (JSON), for shapes the other fixtures lack.
pub fn service_with_spec(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
        .expect("Service spec is valid")
}

/// `service` with the annotation `signpost.dev/cluster-ip: <value>` (a requested address).
pub fn requesting_address(mut service: Service, value: &str) -> Service {
    service
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("signpost.dev/cluster-ip".into(), value.into());
    service
}
