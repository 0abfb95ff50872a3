//! The pure decisions of the records reconciler: whose a stored DNSRecord is, and what its
//! status should say.
//!
//! Kept apart from the I/O so "an unchanged input writes nothing" can be tested without a
//! cluster: [`desired_status`] keeps `lastTransitionTime` when the condition's status did not
//! change, so a second pass over the same inputs yields a status equal to the stored one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use signpost_crds::{DNSRecord, DNSRecordStatus};

use super::Rendered;

use crate::labels::has_label;
pub use crate::labels::{LABEL_APP_MANAGED_BY as LABEL_MANAGED_BY, MANAGED_BY_SIGNPOST};
/// Type of the one condition the reconciler maintains.
pub const CONDITION_READY: &str = "Ready";

/// How a stored DNSRecord relates to the Service of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Ours, for this very Service: keep it up to date.
    Ours,
    /// Ours, but made for an earlier Service of the same name (deleted and recreated): garbage
    /// collection will remove it; deleting it now lets the new Service's record appear sooner.
    OursForAnotherService,
    /// Not written by Signpost (no managed-by label, or no controlling Service owner): left
    /// alone and reported, never fought over.
    Foreign,
}

/// Whose `record` is, given the UID of the Service it is named after (`None` when that Service
/// is gone).
pub fn ownership(record: &DNSRecord, service_uid: Option<&str>) -> Ownership {
    let meta = &record.metadata;
    let labelled = has_label(meta.labels.as_ref(), LABEL_MANAGED_BY, MANAGED_BY_SIGNPOST);
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "Service" && o.api_version == "v1");
    match owner {
        Some(owner) if labelled => {
            if Some(owner.uid.as_str()) == service_uid {
                Ownership::Ours
            } else {
                Ownership::OursForAnotherService
            }
        }
        _ => Ownership::Foreign,
    }
}

/// The status a record of spec generation `generation` should carry for `rendered`.
///
/// Conditions other than `Ready` are kept as they are (someone else's). The `Ready`
/// condition's `lastTransitionTime` is carried over from `current` while its status
/// (True/False) stays the same, and is `now` when it flips, as Kubernetes' condition
/// conventions ask; reason and message changes alone are not transitions.
pub fn desired_status(
    current: Option<&DNSRecordStatus>,
    generation: i64,
    rendered: &Rendered,
    now: Time,
) -> DNSRecordStatus {
    let status = if rendered.is_ready() { "True" } else { "False" };
    let previous = current
        .into_iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == CONDITION_READY);
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => now,
    };
    let ready = Condition {
        type_: CONDITION_READY.to_owned(),
        status: status.to_owned(),
        reason: rendered.reason().to_owned(),
        message: rendered.message(),
        observed_generation: Some(generation),
        last_transition_time,
    };
    let mut conditions: Vec<Condition> = current
        .into_iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.type_ != CONDITION_READY)
        .cloned()
        .collect();
    conditions.insert(0, ready);
    DNSRecordStatus {
        observed_generation: Some(generation),
        conditions,
        address_summary: Some(rendered.address_summary.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{RecordState, render};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn service(cluster_ip: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "demo", "uid": "uid-1"},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap()
    }

    fn rendered(vips: &[&str]) -> Rendered {
        let vips: Vec<std::net::IpAddr> = vips.iter().map(|v| v.parse().unwrap()).collect();
        render(&service("10.0.0.1"), &vips, &[], "cluster.local", 5).unwrap()
    }

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn pending_then_ready_is_one_transition_and_then_stable() {
        let pending = rendered(&[]);
        assert_eq!(
            pending.state,
            RecordState::AddressPending { have: 0, want: 1 }
        );
        let first = desired_status(None, 1, &pending, at(100));
        let ready = &first.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "AddressPending")
        );
        assert_eq!(first.address_summary.as_deref(), Some("<pending>"));

        let complete = rendered(&["10.96.0.7"]);
        let second = desired_status(Some(&first), 1, &complete, at(200));
        let ready = &second.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Rendered")
        );
        assert_eq!(ready.last_transition_time, at(200));
        assert_eq!(second.address_summary.as_deref(), Some("10.96.0.7"));

        let third = desired_status(Some(&second), 1, &complete, at(300));
        assert_eq!(third, second, "same inputs, same status: nothing to write");
    }

    #[test]
    fn a_new_generation_changes_observed_generation_but_not_the_transition_time() {
        let complete = rendered(&["10.96.0.7"]);
        let first = desired_status(None, 1, &complete, at(100));
        let second = desired_status(Some(&first), 2, &complete, at(200));
        assert_eq!(second.observed_generation, Some(2));
        assert_eq!(second.conditions[0].observed_generation, Some(2));
        assert_eq!(second.conditions[0].last_transition_time, at(100));
    }

    #[test]
    fn other_conditions_are_kept() {
        let complete = rendered(&["10.96.0.7"]);
        let mut current = desired_status(None, 1, &complete, at(100));
        current.conditions.push(Condition {
            type_: "Served".into(),
            status: "True".into(),
            reason: "Loaded".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(50),
        });
        let next = desired_status(Some(&current), 1, &complete, at(200));
        assert_eq!(next, current);
    }

    fn record(labelled: bool, owner_uid: Option<&str>) -> DNSRecord {
        let mut record = DNSRecord::new("web", rendered(&["10.96.0.7"]).spec);
        if labelled {
            record
                .metadata
                .labels
                .get_or_insert_default()
                .insert(LABEL_MANAGED_BY.into(), MANAGED_BY_SIGNPOST.into());
        }
        if let Some(uid) = owner_uid {
            let owners = record.metadata.owner_references.get_or_insert_default();
            owners.push(OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: "web".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        }
        record
    }

    #[test]
    fn ownership_needs_both_the_label_and_the_controlling_service() {
        assert_eq!(
            ownership(&record(true, Some("uid-1")), Some("uid-1")),
            Ownership::Ours
        );
        assert_eq!(
            ownership(&record(true, Some("uid-0")), Some("uid-1")),
            Ownership::OursForAnotherService
        );
        assert_eq!(
            ownership(&record(true, Some("uid-1")), None),
            Ownership::OursForAnotherService
        );
        assert_eq!(
            ownership(&record(false, Some("uid-1")), Some("uid-1")),
            Ownership::Foreign
        );
        assert_eq!(
            ownership(&record(true, None), Some("uid-1")),
            Ownership::Foreign
        );
    }
}
