//! Waits on the suite's checks: each polls one check of this module's parent until it holds
//! and the scenario's condition accepts what it saw, for at most [`CONVERGE`], and a timeout
//! shows what the check saw last.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::IpAddr;

use ipnet::IpNet;
use kube::Client;
use signpost_e2e::{claims_in_namespace, wait_until};

use super::{CONVERGE, EndpointsSeen, check_claims, endpoints_match_pods};

/// Waits until the slices and Endpoints of Service `service` match its pods (those selected by
/// `selector`, at most 100 endpoints a slice: see [`endpoints_match_pods`]) and `done` accepts
/// what they show. `what` names the wait in a timeout.
pub async fn wait_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    selector: &str,
    what: &str,
    done: impl Fn(&EndpointsSeen) -> bool,
) -> anyhow::Result<EndpointsSeen> {
    let check = || endpoints_match_pods(client, namespace, service, selector, 100);
    wait_accepted(what, check, done).await
}

/// [`wait_endpoints`] for the common case: Service `service` over the pods labelled
/// `app=<service>`, until its slices and Endpoints show `ready` ready endpoints.
pub async fn wait_ready_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    ready: usize,
) -> anyhow::Result<EndpointsSeen> {
    let what = format!("Service {service}: {ready} ready endpoints");
    let selector = format!("app={service}");
    wait_endpoints(client, namespace, service, &selector, &what, |seen| {
        seen.ready == ready
    })
    .await
}

/// Waits until the claims of the namespace are consistent (see [`check_claims`]) and `done`
/// accepts the addresses each Service holds; returns those. `what` names the wait in a
/// timeout.
pub async fn wait_claims(
    client: &Client,
    namespace: &str,
    cidrs: &[IpNet],
    what: &str,
    done: impl Fn(&BTreeMap<String, Vec<IpAddr>>) -> bool,
) -> anyhow::Result<BTreeMap<String, Vec<IpAddr>>> {
    wait_accepted(what, || check_claims(client, namespace, cidrs), done).await
}

/// [`wait_claims`] until Service `service` holds a claim; returns every Service's addresses.
pub async fn wait_claim_of(
    client: &Client,
    namespace: &str,
    cidrs: &[IpNet],
    service: &str,
) -> anyhow::Result<BTreeMap<String, Vec<IpAddr>>> {
    let what = format!("{service} holds a VIP, consistent claims");
    wait_claims(client, namespace, cidrs, &what, |claims| {
        claims.contains_key(service)
    })
    .await
}

/// Waits until Service `service` of the namespace holds a claim, and returns its address; a
/// timeout says how many claims the namespace had. Unlike [`wait_claims`] it does not ask the
/// other claims to be consistent, for scenarios that leave some Services without one on
/// purpose.
pub async fn wait_claimed_address(
    client: &Client,
    namespace: &str,
    service: &str,
    what: &str,
) -> anyhow::Result<String> {
    wait_until(what, CONVERGE, || async {
        let claims = claims_in_namespace(client, namespace)
            .await
            .map_err(|e| e.to_string())?;
        claims
            .iter()
            .find(|c| c.spec.service_ref.name == service)
            .map(|c| c.spec.address.clone())
            .ok_or_else(|| format!("{} claims", claims.len()))
    })
    .await
}

/// Polls `check` until it passes and `done` accepts what it saw; a timeout shows the check's
/// last failure or, when it passed, what `done` did not accept.
async fn wait_accepted<T, Fut>(
    what: &str,
    check: impl Fn() -> Fut,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<T>
where
    T: Debug,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until(what, CONVERGE, || async {
        let seen = check().await?;
        if done(&seen) {
            Ok(seen)
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await
}
