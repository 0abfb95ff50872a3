//! ClusterIP mode's API side (issue 30): the mutating admission webhook that writes Signpost's
//! addresses into Services as they are created, and the `ServiceCIDR` that makes the API
//! server accept addresses from Signpost's CIDRs.
//!
//! The webhook answers on every replica; only the leader's [`Ipam`] chooses addresses (its
//! book is the one that knows them all), a standby lets the Service through unchanged and the
//! API server allocates, as it does while no replica runs: the leader then adopts the
//! address (`ServiceIP` claims follow `spec.clusterIPs` in this mode).

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::routing::post;
use base64::Engine;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ipam;
use super::admission::Admission;
use super::request::wants_virtual_ip;

/// Path the webhook answers on.
pub const WEBHOOK_PATH: &str = "/mutate-services";

/// The replica's [`Ipam`] while it leads, `None` while it stands by.
#[derive(Clone, Default)]
pub struct Leader(Arc<RwLock<Option<Arc<Ipam>>>>);

impl Leader {
    /// This replica leads with `ipam`, or (`None`) no longer does.
    pub fn set(&self, ipam: Option<Arc<Ipam>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = ipam;
    }

    fn get(&self) -> Option<Arc<Ipam>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The webhook's routes: `POST /mutate-services` with an `admission.k8s.io/v1`
/// `AdmissionReview`.
pub fn webhook_router(leader: Leader) -> Router {
    Router::new().route(
        WEBHOOK_PATH,
        post(move |body: Bytes| {
            let leader = leader.clone();
            async move {
                let (code, answer) = match serde_json::from_slice::<Review>(&body) {
                    Ok(review) => (StatusCode::OK, answer(&review, leader.get().as_deref())),
                    Err(error) => (
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("not an AdmissionReview: {error}")}),
                    ),
                };
                (
                    code,
                    [(header::CONTENT_TYPE, "application/json")],
                    answer.to_string(),
                )
            }
        }),
    )
}

/// An `AdmissionReview` request, the parts the webhook reads.
#[derive(Debug, Deserialize)]
pub struct Review {
    request: Option<ReviewRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    uid: String,
    operation: String,
    #[serde(default)]
    dry_run: bool,
    object: Option<Service>,
    old_object: Option<Service>,
}

/// Whether the webhook chooses addresses for this request: a create of a Service that has a
/// cluster IP, or an update that gives one to a Service that had none (an ExternalName Service
/// turned into a ClusterIP one). Not on a dry run: the API server checks a dry run's address
/// against one of its ServiceCIDRs picked at random (Kubernetes 1.37's `MetaAllocator.DryRun`),
/// so an address of Signpost's CIDR fails a dry run as often as another ServiceCIDR is picked
/// (`kubectl diff`, `apply --dry-run=server`), where the API server's own choice never does.
fn allocates(operation: &str, dry_run: bool, service: &Service, old: Option<&Service>) -> bool {
    if dry_run {
        return false;
    }
    match operation {
        "CREATE" => wants_virtual_ip(service),
        "UPDATE" => wants_virtual_ip(service) && !old.is_some_and(wants_virtual_ip),
        _ => false,
    }
}

/// The `AdmissionReview` answering `review`, choosing addresses through `ipam` (`None`: a
/// standby, which lets every Service through unchanged).
pub fn answer(review: &Review, ipam: Option<&Ipam>) -> Value {
    let Some(request) = review.request.as_ref() else {
        return json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    };
    let mut response = json!({"uid": request.uid, "allowed": true});
    let chosen = match (ipam, request.object.as_ref()) {
        (Some(ipam), Some(service))
            if allocates(
                &request.operation,
                request.dry_run,
                service,
                request.old_object.as_ref(),
            ) =>
        {
            ipam.admit(service)
        }
        _ => Ok(Admission::default()),
    };
    match chosen {
        Ok(Admission {
            cluster_ips: Some(addresses),
            ..
        }) => {
            let texts: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            let patch = json!([
                {"op": "add", "path": "/spec/clusterIP", "value": texts[0]},
                {"op": "add", "path": "/spec/clusterIPs", "value": texts},
            ]);
            response["patchType"] = json!("JSONPatch");
            response["patch"] =
                json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        }
        Ok(_) => {}
        Err(refused) => {
            response["allowed"] = json!(false);
            response["status"] = json!({
                "status": "Failure",
                "code": 422,
                "reason": "Invalid",
                "message": refused.to_string(),
            });
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// Makes sure a `ServiceCIDR` named `name` covers `cidrs`, so the API server accepts Services
/// with addresses from them (and records each as an `IPAddress`). An existing one is left as
/// it is (its CIDRs are immutable): a difference is logged.
pub async fn publish_service_cidr(
    client: &Client,
    name: &str,
    cidrs: &[IpNet],
) -> Result<(), kube::Error> {
    let api: Api<ServiceCIDR> = Api::all(client.clone());
    let want: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    if let Some(existing) = api.get_opt(name).await? {
        let have = existing.spec.and_then(|s| s.cidrs).unwrap_or_default();
        if have != want {
            tracing::warn!(
                name,
                ?have,
                ?want,
                "ServiceCIDR differs from the configured CIDRs; left as it is"
            );
        }
        return Ok(());
    }
    let object = ServiceCIDR {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                [(
                    signpost_core::labels::LABEL_APP_MANAGED_BY.to_string(),
                    signpost_core::labels::MANAGED_BY_SIGNPOST.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(ServiceCIDRSpec { cidrs: Some(want) }),
        status: None,
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            tracing::info!(name, "published ServiceCIDR");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(operation: &str, object: Value, old: Option<Value>) -> Review {
        serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "operation": operation,
                "dryRun": false,
                "object": object,
                "oldObject": old,
            }
        }))
        .unwrap()
    }

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "demo"}, "spec": spec})
    }

    #[test]
    fn a_standby_lets_every_service_through_unchanged() {
        let answered = answer(&review("CREATE", service(json!({})), None), None);
        assert_eq!(answered["response"]["uid"], "u-1");
        assert_eq!(answered["response"]["allowed"], true);
        assert!(answered["response"].get("patch").is_none());
    }

    /// A ClusterIP Service and an ExternalName one.
    fn plain_and_external() -> (Service, Service) {
        let plain = serde_json::from_value(service(json!({}))).unwrap();
        let external = serde_json::from_value(service(
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ))
        .unwrap();
        (plain, external)
    }

    #[test]
    fn only_creates_and_updates_that_give_an_address_allocate() {
        let (plain, external) = plain_and_external();
        assert!(allocates("CREATE", false, &plain, None));
        assert!(!allocates("CREATE", false, &external, None));
        assert!(allocates("UPDATE", false, &plain, Some(&external)));
        assert!(!allocates("UPDATE", false, &plain, Some(&plain)));
        assert!(!allocates("DELETE", false, &plain, None));
    }

    #[test]
    fn dry_runs_are_left_to_the_api_server() {
        let (plain, external) = plain_and_external();
        assert!(!allocates("CREATE", true, &plain, None));
        assert!(!allocates("UPDATE", true, &plain, Some(&external)));
    }
}
