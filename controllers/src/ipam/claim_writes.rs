//! How the IPAM controller writes and removes `ServiceIP` claims: one address per family per
//! Service, a requested (or, in ClusterIP mode, the Service's own) address or the next free
//! one, every create arbitrated by the API server through the claim's name.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use signpost_crds::{ServiceIP, ServiceIPSpec, ServiceRef, claim_name};

use super::AllocError;
use super::book::{Claim, ServiceKey};
use super::controller::{
    CONTROLLER, FIELD_MANAGER, Ipam, MAX_CREATE_ATTEMPTS, SERVICE_NAME_LABEL,
    SERVICE_NAMESPACE_LABEL,
};
use super::request::FamilyRequest;
use crate::runtime::SyncError;

impl Ipam {
    /// Of the claims a Service holds in one family, keeps the requested address if held, else
    /// the lowest, and releases any other; returns the problems to report.
    pub(super) async fn keep_one_claim(
        &self,
        want: &FamilyRequest,
        mut held: Vec<Claim>,
    ) -> Result<Vec<(&'static str, String)>, SyncError> {
        let mut problems = Vec::new();
        held.sort_by_key(|c| (Some(c.address) != want.requested, c.address));
        let kept = held.remove(0);
        for extra in held {
            problems.push((
                "DuplicateClusterIP",
                format!(
                    "released {} because the Service also holds {}",
                    extra.address, kept.address
                ),
            ));
            self.delete_claim(&extra).await?;
        }
        if let Some(requested) = want.requested.filter(|r| *r != kept.address) {
            problems.push((
                "ClusterIPImmutable",
                format!(
                    "the Service holds {} and keeps it; requested {requested} is ignored (recreate the Service to change its address)",
                    kept.address
                ),
            ));
        }
        Ok(problems)
    }

    pub(super) async fn release_all_of_gone_service(
        &self,
        key: &ServiceKey,
        existing: Vec<Claim>,
    ) -> Result<(), SyncError> {
        if existing.is_empty() {
            self.reported
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            return Ok(());
        }
        // The cache may lag behind a Service created a moment ago (for example by the
        // previous leader's claim): confirm with a live read before releasing anything.
        let live_uid = self.live_uid(key).await?;
        for claim in existing {
            if live_uid.as_deref() != Some(claim.service_uid.as_str()) {
                self.delete_claim(&claim).await?;
            }
        }
        self.publish_usage();
        Ok(())
    }

    /// The UID of the Service as the API server has it now (`None`: there is none).
    pub(super) async fn live_uid(&self, key: &ServiceKey) -> Result<Option<String>, SyncError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let live = api
            .get_opt(&key.name)
            .await
            .map_err(SyncError::api(format!("reading Service {key}")))?;
        Ok(live.and_then(|s| s.uid()))
    }

    /// Allocates and claims one address; returns a problem to report instead of an address
    /// when there is none to be had.
    pub(super) async fn allocate(
        &self,
        key: &ServiceKey,
        uid: &str,
        want: FamilyRequest,
    ) -> Result<Option<(&'static str, String)>, SyncError> {
        if let Some(requested) = want.requested {
            let reserved = {
                let mut index = self.lock();
                // Held by the webhook for the Service being created, or given to it by the API
                // server while Signpost was down: its bit is set already.
                match index.take_for(requested, key) {
                    true => index
                        .book
                        .allocator()
                        .cidr_of(requested)
                        .ok_or(AllocError::OutOfRange { address: requested }),
                    false => index.book.reserve(requested),
                }
            };
            let taken = || {
                // Tried again whenever an address is freed: the holder may let it go.
                self.lock().wait_for_a_freed_address(key);
                self.failure("taken");
                Some((
                    "ClusterIPTaken",
                    format!("requested address {requested} is already allocated"),
                ))
            };
            return match reserved {
                Ok(cidr) => match self.create_claim(key, uid, requested, cidr).await? {
                    true => Ok(None),
                    false => Ok(taken()),
                },
                Err(AllocError::AlreadyAllocated { .. }) => Ok(taken()),
                Err(error) => {
                    self.failure("invalid");
                    Ok(Some((
                        "ClusterIPInvalid",
                        format!("requested address cannot be used: {error}"),
                    )))
                }
            };
        }
        for _ in 0..MAX_CREATE_ATTEMPTS {
            let next = self.lock().book.reserve_next(want.family);
            match next {
                Ok(allocation) => {
                    if self
                        .create_claim(key, uid, allocation.address, allocation.cidr)
                        .await?
                    {
                        return Ok(None);
                    }
                    // Someone holds it already: it stays marked, try the next one.
                }
                Err(error @ AllocError::Exhausted { .. }) => {
                    self.lock().wait_for_a_freed_address(key);
                    self.failure("exhausted");
                    return Ok(Some(("ClusterIPExhausted", error.to_string())));
                }
                Err(error) => {
                    self.failure("invalid");
                    return Ok(Some(("ClusterIPInvalid", error.to_string())));
                }
            }
        }
        Err(SyncError::Api {
            action: format!("claiming a {} address for {key}", want.family),
            source: kube::Error::Service(
                format!("{MAX_CREATE_ATTEMPTS} addresses in a row were already claimed").into(),
            ),
        })
    }

    /// Creates the claim for `address`; `false` when another claim of that address exists.
    pub(super) async fn create_claim(
        &self,
        key: &ServiceKey,
        uid: &str,
        address: IpAddr,
        cidr: ipnet::IpNet,
    ) -> Result<bool, SyncError> {
        let claim = ServiceIP {
            metadata: ObjectMeta {
                name: Some(claim_name(address)),
                labels: Some(
                    [
                        (SERVICE_NAMESPACE_LABEL.to_string(), key.namespace.clone()),
                        (SERVICE_NAME_LABEL.to_string(), key.name.clone()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: ServiceIPSpec {
                address: address.to_string(),
                cidr: cidr.to_string(),
                service_ref: ServiceRef {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    uid: uid.to_string(),
                },
            },
        };
        let api: Api<ServiceIP> = Api::all(self.client.clone());
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.metrics.wrote(CONTROLLER);
        match api.create(&params, &claim).await {
            Ok(created) => {
                if let Some(claim) = Claim::of(&created) {
                    self.lock().book.observe(claim);
                }
                tracing::info!(service = %key, %address, "claimed address");
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => {
                self.lock().book.unreserve(address);
                Err(SyncError::api(format!(
                    "creating ServiceIP {address} for {key}"
                ))(error))
            }
        }
    }

    pub(super) async fn delete_claim(&self, claim: &Claim) -> Result<(), SyncError> {
        let api: Api<ServiceIP> = Api::all(self.client.clone());
        let params = DeleteParams {
            preconditions: claim.claim_uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.metrics.wrote(CONTROLLER);
        match api.delete(&claim_name(claim.address), &params).await {
            Ok(_) => {}
            // Already gone, or replaced by a newer claim: nothing of ours to delete.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => {
                return Err(SyncError::api(format!(
                    "deleting ServiceIP {}",
                    claim.address
                ))(error));
            }
        }
        tracing::info!(service = %claim.service, address = %claim.address, "released address");
        let mut index = self.lock();
        if index
            .book
            .claim_at(claim.address)
            .is_some_and(|c| c.claim_uid == claim.claim_uid)
        {
            index.forget_claim(claim.address);
        }
        drop(index);
        self.address_freed();
        Ok(())
    }
}
