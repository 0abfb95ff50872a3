//! Mirrored slices as they are → the writes that make them what [`Mirror`] says.
//!
//! Minimal churn, as for the endpoints controller: a slice that already says the right thing
//! is never written, a changed group is an update of an existing slice of its address type
//! (never delete + create), and only what is left over is created or deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::model::Mirror;
use crate::endpoints::slices::SlicePlan;
pub use crate::labels::MIRRORING_MANAGED_BY;
use crate::labels::{
    ANNOTATION_LAST_APPLIED, ANNOTATION_LAST_CHANGE_TRIGGER_TIME, ANNOTATION_OVER_CAPACITY,
    LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};

/// Annotations of an Endpoints object that describe the Endpoints object itself and are not
/// carried over to its slices.
const NOT_MIRRORED_ANNOTATIONS: &[&str] = &[
    ANNOTATION_LAST_APPLIED,
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME,
    ANNOTATION_OVER_CAPACITY,
];

/// What every mirrored slice of one Endpoints object carries besides its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTemplate {
    /// Namespace of the Service and its Endpoints.
    pub namespace: String,
    /// Name of both.
    pub service_name: String,
    /// UID of the Service, for the owner reference.
    pub service_uid: String,
    /// The Endpoints' labels plus the service-name and managed-by labels.
    pub labels: BTreeMap<String, String>,
    /// The Endpoints' annotations, less those about the Endpoints object itself.
    pub annotations: BTreeMap<String, String>,
}

impl MirrorTemplate {
    /// The template for `endpoints` of the Service with `service_uid`, its slices labelled as
    /// `manager`'s.
    pub fn new(endpoints: &Endpoints, service_uid: &str, manager: &str) -> Self {
        let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
        labels.insert(
            LABEL_SERVICE_NAME.into(),
            endpoints.metadata.name.clone().unwrap_or_default(),
        );
        labels.insert(LABEL_MANAGED_BY.into(), manager.into());
        let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
        annotations.retain(|k, _| !NOT_MIRRORED_ANNOTATIONS.contains(&k.as_str()));
        Self {
            namespace: endpoints.metadata.namespace.clone().unwrap_or_default(),
            service_name: endpoints.metadata.name.clone().unwrap_or_default(),
            service_uid: service_uid.into(),
            labels,
            annotations,
        }
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: self.service_name.clone(),
            uid: self.service_uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn says(&self, slice: &EndpointSlice) -> bool {
        slice.metadata.labels.clone().unwrap_or_default() == self.labels
            && slice.metadata.annotations.clone().unwrap_or_default() == self.annotations
            && slice.metadata.owner_references.as_deref() == Some(&[self.owner_reference()][..])
    }

    fn apply(&self, slice: &mut EndpointSlice) {
        slice.metadata.labels = Some(self.labels.clone());
        slice.metadata.annotations =
            (!self.annotations.is_empty()).then(|| self.annotations.clone());
        slice.metadata.owner_references = Some(vec![self.owner_reference()]);
    }
}

struct Wanted<'a> {
    address_type: &'static str,
    ports: &'a [EndpointPort],
    endpoints: &'a [Endpoint],
}

fn sorted_endpoints(slice: &EndpointSlice) -> Vec<Endpoint> {
    let mut endpoints = slice.endpoints.clone().unwrap_or_default();
    endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    endpoints
}

fn sorted_ports(slice: &EndpointSlice) -> Vec<EndpointPort> {
    let mut ports = slice.ports.clone().unwrap_or_default();
    ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
    ports
}

/// The writes that turn `existing` (the mirrored slices of one Endpoints object) into what
/// `mirror` says, at most `max_per_slice` endpoints per slice.
pub fn plan_mirror(
    existing: &[EndpointSlice],
    mirror: &Mirror,
    max_per_slice: usize,
    template: &MirrorTemplate,
) -> SlicePlan {
    let max = max_per_slice.max(1);
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    for group in &mirror.groups {
        for chunk in group.endpoints.chunks(max) {
            wanted.push(Wanted {
                address_type: group.address_type.as_str(),
                ports: &group.ports,
                endpoints: chunk,
            });
        }
    }
    let mut unused: Vec<Option<&EndpointSlice>> = existing.iter().map(Some).collect();
    let mut pending: Vec<&Wanted<'_>> = Vec::new();
    // Slices that already say exactly what a chunk says stay as they are.
    for want in &wanted {
        let exact = unused.iter_mut().find(|slot| {
            slot.is_some_and(|s| {
                s.address_type == want.address_type
                    && sorted_ports(s) == want.ports
                    && sorted_endpoints(s) == want.endpoints
                    && template.says(s)
            })
        });
        match exact {
            Some(slot) => *slot = None,
            None => pending.push(want),
        }
    }
    let mut plan = SlicePlan::default();
    for want in pending {
        // Prefer a leftover slice of the same address type and ports, then any of the type
        // (the address type of a slice cannot change).
        let pick = unused
            .iter()
            .position(|s| {
                s.is_some_and(|s| {
                    s.address_type == want.address_type && sorted_ports(s) == want.ports
                })
            })
            .or_else(|| {
                unused
                    .iter()
                    .position(|s| s.is_some_and(|s| s.address_type == want.address_type))
            });
        let mut slice = match pick {
            Some(i) => unused[i].take().cloned().unwrap_or_default(),
            None => EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{}-", template.service_name)),
                    namespace: Some(template.namespace.clone()),
                    ..Default::default()
                },
                address_type: want.address_type.into(),
                ..Default::default()
            },
        };
        template.apply(&mut slice);
        slice.ports = Some(want.ports.to_vec());
        slice.endpoints = Some(want.endpoints.to_vec());
        if pick.is_some() {
            plan.updates.push(slice);
        } else {
            plan.creates.push(slice);
        }
    }
    plan.deletes = unused
        .into_iter()
        .flatten()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirroring::model::mirror;

    fn endpoints(ips: &[&str]) -> Endpoints {
        let addresses: Vec<serde_json::Value> =
            ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "demo", "labels": {"team": "data"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"}},
            "subsets": [{"addresses": addresses, "ports": [{"port": 5432}]}]
        }))
        .unwrap()
    }

    /// Applies a plan the way the API server would, naming created slices.
    fn apply(existing: &[EndpointSlice], plan: &SlicePlan) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = existing
            .iter()
            .filter(|s| !plan.deletes.contains(s.metadata.name.as_ref().unwrap()))
            .map(|s| {
                plan.updates
                    .iter()
                    .find(|u| u.metadata.name == s.metadata.name)
                    .cloned()
                    .unwrap_or_else(|| s.clone())
            })
            .collect();
        for (i, created) in plan.creates.iter().enumerate() {
            let mut created = created.clone();
            created.metadata.name = Some(format!("db-new{i}-{}", out.len()));
            out.push(created);
        }
        out
    }

    fn plan_for(existing: &[EndpointSlice], ep: &Endpoints, max: usize) -> SlicePlan {
        plan_mirror(
            existing,
            &mirror(ep),
            max,
            &MirrorTemplate::new(ep, "svc-uid", MIRRORING_MANAGED_BY),
        )
    }

    #[test]
    fn a_new_endpoints_creates_one_labelled_owned_slice() {
        let ep = endpoints(&["10.0.0.1", "10.0.0.2"]);
        let plan = plan_for(&[], &ep, 100);
        assert_eq!(
            (plan.creates.len(), plan.updates.len(), plan.deletes.len()),
            (1, 0, 0)
        );
        let slice = &plan.creates[0];
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "db");
        assert_eq!(labels[LABEL_MANAGED_BY], MIRRORING_MANAGED_BY);
        assert_eq!(labels["team"], "data");
        let annotations = slice.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.len(),
            1,
            "last-applied is not carried: {annotations:?}"
        );
        assert_eq!(
            slice.metadata.owner_references.as_ref().unwrap()[0].uid,
            "svc-uid"
        );
        assert_eq!(slice.endpoints.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn unchanged_input_writes_nothing_and_an_edit_is_one_update() {
        let ep = endpoints(&["10.0.0.1", "10.0.0.2"]);
        let slices = apply(&[], &plan_for(&[], &ep, 100));
        assert_eq!(plan_for(&slices, &ep, 100).write_count(), 0);
        let edited = endpoints(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        let plan = plan_for(&slices, &edited, 100);
        assert_eq!(
            (plan.creates.len(), plan.updates.len(), plan.deletes.len()),
            (0, 1, 0)
        );
        assert_eq!(
            plan.updates[0].metadata.name, slices[0].metadata.name,
            "updated in place"
        );
    }

    #[test]
    fn large_sets_are_split_and_emptied_endpoints_delete_the_slices() {
        let ips: Vec<String> = (1..=250)
            .map(|i| format!("10.0.{}.{}", i / 200, i % 200 + 1))
            .collect();
        let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        let ep = endpoints(&ip_refs);
        let slices = apply(&[], &plan_for(&[], &ep, 100));
        assert_eq!(slices.len(), 3);
        assert!(
            slices
                .iter()
                .all(|s| s.endpoints.as_ref().unwrap().len() <= 100)
        );
        let emptied = endpoints(&[]);
        let plan = plan_for(&slices, &emptied, 100);
        assert_eq!(plan.deletes.len(), 3);
    }
}
