//! Slice packing: existing EndpointSlices + desired endpoints → slices to create, update and
//! delete.
//!
//! Modelled on Kubernetes' endpointslice reconciler (`reconcileByAddressType`,
//! `reconcileByPortMapping`, `finalize`), with the same aims — few writes, stable placement —
//! but deterministic (no map iteration order) and without allocating per endpoint compared.
//!
//! Ownership: [`plan`] treats every slice it is given as this Service's. The caller passes only
//! slices labelled `kubernetes.io/service-name: <svc>` *and* managed by Signpost
//! ([`is_managed_by`]); slices of another manager (say, the mirroring controller or a
//! user) must be filtered out before, or they would be deleted. Among the slices given, those
//! whose owner reference is not this Service (a previous Service of the same name) or whose
//! address type is no longer wanted are deleted, never reused.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::{AddressType, DesiredEndpoints, EndpointGroup, ResolvedPort};
use super::{Error, is_headless, name_and_namespace, uid};

use crate::labels::has_label;
pub use crate::labels::{LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY};

/// Default of `--max-endpoints-per-slice`, as in Kubernetes.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Whether a slice is managed by `manager` (its [`LABEL_MANAGED_BY`] value; see
/// [`crate::labels::SliceManager`]). The reconciler keeps only its own before calling [`plan`].
pub fn is_managed_by(slice: &EndpointSlice, manager: &str) -> bool {
    has_label(slice.metadata.labels.as_ref(), LABEL_MANAGED_BY, manager)
}

/// What every slice of one Service carries besides its endpoints: namespace, owner reference
/// and labels. Computed once per sync from the Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceTemplate {
    /// The Service's name (the `generateName` prefix and the service-name label).
    pub service_name: String,
    /// The Service's namespace, which its slices live in.
    pub namespace: String,
    /// The Service's uid, for the controller owner reference that garbage-collects the slices
    /// with the Service.
    pub service_uid: String,
    /// The complete label set of every slice: the Service's labels (minus the reserved keys),
    /// [`LABEL_HEADLESS`] for headless Services, [`LABEL_SERVICE_NAME`] and
    /// [`LABEL_MANAGED_BY`] (the manager's value).
    pub labels: BTreeMap<String, String>,
}

impl SliceTemplate {
    /// Builds the template from parts. Service labels with a reserved key are dropped, as
    /// Kubernetes does, so a Service cannot relabel its slices out of our hands.
    pub fn new(
        service_name: &str,
        namespace: &str,
        service_uid: &str,
        service_labels: &BTreeMap<String, String>,
        headless: bool,
        manager: &str,
    ) -> Self {
        let reserved = [LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS];
        let mut labels: BTreeMap<String, String> = service_labels
            .iter()
            .filter(|(k, _)| !reserved.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if headless {
            labels.insert(LABEL_HEADLESS.to_string(), String::new());
        }
        labels.insert(LABEL_SERVICE_NAME.to_string(), service_name.to_string());
        labels.insert(LABEL_MANAGED_BY.to_string(), manager.to_string());
        Self {
            service_name: service_name.to_string(),
            namespace: namespace.to_string(),
            service_uid: service_uid.to_string(),
            labels,
        }
    }

    /// Builds the template of `manager`'s slices from a Service; headless means `clusterIP` is
    /// `None` or unset.
    pub fn for_service(service: &Service, manager: &str) -> Result<Self, Error> {
        let meta = &service.metadata;
        let (name, namespace) = name_and_namespace(meta)?;
        let uid = uid(meta)?;
        let empty = BTreeMap::new();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        Ok(Self::new(
            name,
            namespace,
            uid,
            labels,
            is_headless(service),
            manager,
        ))
    }

    /// The controller owner reference every slice carries (and only this one).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".to_string(),
            kind: "Service".to_string(),
            name: self.service_name.clone(),
            uid: self.service_uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Whether the slice is owned by this incarnation of the Service (same uid), as
    /// Kubernetes' `ownedBy` checks. Slices of a deleted-and-recreated Service are not, and
    /// are deleted rather than reused.
    pub fn owns(&self, slice: &EndpointSlice) -> bool {
        slice
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == self.service_uid && o.kind == "Service" && o.api_version == "v1")
    }

    /// Whether a slice's labels and owner references are exactly what they should be.
    fn metadata_current(&self, slice: &EndpointSlice) -> bool {
        let labels_ok = match &slice.metadata.labels {
            Some(labels) => *labels == self.labels,
            None => self.labels.is_empty(),
        };
        let owners = slice.metadata.owner_references.as_deref().unwrap_or(&[]);
        labels_ok && owners.len() == 1 && owners[0] == self.owner_reference()
    }

    /// A slice to create: `generateName: <svc>-`, no name.
    fn new_slice(&self, address_type: AddressType) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", self.service_name)),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels.clone()),
                owner_references: Some(vec![self.owner_reference()]),
                ..ObjectMeta::default()
            },
            address_type: address_type.as_str().to_string(),
            endpoints: Some(Vec::new()),
            ports: Some(Vec::new()),
        }
    }
}

/// The writes that bring a Service's slices to the desired state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// Slices to create (`generateName` set, no name).
    pub creates: Vec<EndpointSlice>,
    /// Full replacements of existing slices, based on the existing object (name,
    /// resourceVersion and annotations kept, so an update is a conditional write).
    pub updates: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub deletes: Vec<String>,
}

impl SlicePlan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty() && self.deletes.is_empty()
    }

    /// The number of API writes the plan takes.
    pub fn write_count(&self) -> usize {
        self.creates.len() + self.updates.len() + self.deletes.len()
    }
}

/// Plans the slice writes for one Service.
///
/// `existing` are the Service's slices managed by Signpost (see the module docs), `desired`
/// comes from [`super::desired_endpoints`], `max_per_slice` is
/// `--max-endpoints-per-slice` (0 is treated as 1).
///
/// Guarantees:
/// - one address type and one port list per slice, at most `max_per_slice` endpoints each;
/// - every desired endpoint ends up in exactly one slice (duplicates in existing slices are
///   dropped);
/// - a slice whose endpoints (in any order), ports (in any order), labels and owner
///   references are already right is never written, so replanning after applying a plan
///   yields an empty plan;
/// - an endpoint that stays keeps its slice; a changed endpoint changes only its slice;
/// - new endpoints go first into slices being written anyway, then into the unchanged slice
///   closest to full that takes all of them, then into the other partially full slices, and
///   only then into new slices: slices do not fragment when pods arrive a few at a time
///   (Kubernetes leaves partial slices alone once the rest does not fit in one, and ends up
///   with more slices than needed);
/// - a slice that would be deleted while a slice of its address type would be created is
///   updated into that slice instead (one write instead of two);
/// - a wanted address type without endpoints keeps exactly one empty placeholder slice, as in
///   Kubernetes, so consumers can tell "no endpoints" from "not processed yet".
///
/// Endpoints are written sorted by pod, ports sorted, so identical input gives identical
/// objects.
pub fn plan(
    existing: &[EndpointSlice],
    desired: &DesiredEndpoints,
    max_per_slice: usize,
    template: &SliceTemplate,
) -> SlicePlan {
    let max = max_per_slice.max(1);
    let mut out = SlicePlan::default();

    let mut sorted: Vec<&EndpointSlice> = existing.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut by_type: BTreeMap<AddressType, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in sorted {
        match AddressType::parse(&slice.address_type) {
            Some(t) if desired.address_types.contains(&t) && template.owns(slice) => {
                by_type.entry(t).or_default().push(slice);
            }
            _ => out.deletes.extend(slice.metadata.name.clone()),
        }
    }

    for &address_type in &desired.address_types {
        let slices = by_type.remove(&address_type).unwrap_or_default();
        plan_address_type(address_type, slices, desired, max, template, &mut out);
    }
    out
}

/// One slice's state while planning.
struct Work<'a> {
    /// The slice it is based on; `None` for a slice to create.
    existing: Option<&'a EndpointSlice>,
    /// Indices into the group's endpoints, in no particular order.
    members: Vec<usize>,
}

fn plan_address_type(
    address_type: AddressType,
    slices: Vec<&EndpointSlice>,
    desired: &DesiredEndpoints,
    max: usize,
    template: &SliceTemplate,
    out: &mut SlicePlan,
) {
    let mut by_ports: BTreeMap<Vec<ResolvedPort>, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        by_ports.entry(sorted_ports(slice)).or_default().push(slice);
    }

    let mut creates: Vec<EndpointSlice> = Vec::new();
    let mut updates: Vec<EndpointSlice> = Vec::new();
    // Owned slices of this type that would be deleted: candidates for reuse.
    let mut stale: Vec<&EndpointSlice> = Vec::new();
    let mut unchanged = 0usize;

    for group in desired.groups_of(address_type) {
        let slices = by_ports.remove(&group.ports).unwrap_or_default();
        let kept = keep_existing(group, slices, max, template);
        let packed = pack_group(kept, group.endpoints.len(), max);
        for work in packed.written {
            let slice = render(group, &work, template);
            match work.existing {
                Some(_) => updates.push(slice),
                None => creates.push(slice),
            }
        }
        stale.extend(packed.emptied);
        unchanged += packed.unchanged;
    }
    stale.extend(by_ports.into_values().flatten());
    stale.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    if creates.is_empty() && updates.is_empty() && unchanged == 0 {
        // Nothing left of this type: keep (or make) one empty placeholder.
        let placeholder = stale.iter().position(|s| is_placeholder(s, template));
        match placeholder {
            Some(i) => {
                stale.remove(i);
            }
            None => creates.push(template.new_slice(address_type)),
        }
    }

    // Turn delete + create pairs into updates of the slice that would be deleted.
    while !stale.is_empty() {
        let Some(new) = creates.pop() else { break };
        updates.push(reuse(stale.remove(0), new));
    }

    out.creates.extend(creates);
    out.updates.extend(updates);
    out.deletes
        .extend(stale.into_iter().filter_map(|s| s.metadata.name.clone()));
}

struct Packed<'a> {
    /// Slices to write: updates (with `existing`) and creates.
    written: Vec<Work<'a>>,
    /// Existing slices left without endpoints.
    emptied: Vec<&'a EndpointSlice>,
    /// How many existing slices stay as they are.
    unchanged: usize,
}

/// Packs one group's `endpoints` (how many) into the existing slices with its port list, as
/// [`keep_existing`] left them, and new ones; see [`plan`] for the rules.
fn pack_group(kept: Kept<'_>, endpoints: usize, max: usize) -> Packed<'_> {
    let Kept {
        taken,
        mut updating,
        mut unchanged,
        emptied,
    } = kept;
    let mut remaining = (0..endpoints).filter(|&i| !taken[i]).peekable();
    let mut left = taken.iter().filter(|t| !**t).count();

    // Slices written anyway take new endpoints first, fullest first (Kubernetes' order).
    updating.sort_by_key(|w| std::cmp::Reverse(w.members.len()));
    for work in &mut updating {
        top_up(work, &mut remaining, &mut left, max);
    }

    while left > 0 {
        // Partially full slices are filled before a new one is made (so slices do not
        // fragment as pods arrive a few at a time): first the fullest slice that takes all
        // that is left (one write), else the fullest slice with room, and so on.
        let fullest = |fits: &dyn Fn(usize) -> bool| {
            unchanged
                .iter()
                .enumerate()
                .filter(|(_, w)| fits(w.members.len()))
                .max_by_key(|(i, w)| (w.members.len(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        };
        let fill = fullest(&|n| n + left <= max).or_else(|| fullest(&|n| n < max));
        let mut work = match fill {
            Some(i) => unchanged.remove(i),
            None => Work {
                existing: None,
                members: Vec::new(),
            },
        };
        top_up(&mut work, &mut remaining, &mut left, max);
        updating.push(work);
    }

    Packed {
        written: updating,
        emptied,
        unchanged: unchanged.len(),
    }
}

/// The existing slices of a group, each keeping the desired endpoints it already holds (at
/// most `max`), sorted by what they need: a write, nothing, or deletion (emptied).
struct Kept<'a> {
    /// Which of the group's endpoints an existing slice keeps.
    taken: Vec<bool>,
    updating: Vec<Work<'a>>,
    unchanged: Vec<Work<'a>>,
    emptied: Vec<&'a EndpointSlice>,
}

fn keep_existing<'a>(
    group: &EndpointGroup,
    slices: Vec<&'a EndpointSlice>,
    max: usize,
    template: &SliceTemplate,
) -> Kept<'a> {
    let endpoints = &group.endpoints;
    let mut kept = Kept {
        taken: vec![false; endpoints.len()],
        updating: Vec::new(),
        unchanged: Vec::new(),
        emptied: Vec::new(),
    };
    let taken = &mut kept.taken;
    for slice in slices {
        let mut members = Vec::new();
        let mut dirty = false;
        for ep in slice.endpoints.iter().flatten() {
            match find_endpoint(group, ep, taken) {
                Some(i) => {
                    taken[i] = true;
                    members.push(i);
                    dirty |= !endpoints[i].matches(ep);
                }
                None => dirty = true,
            }
        }
        if members.len() > max {
            for i in members.drain(max..) {
                taken[i] = false;
            }
            dirty = true;
        }
        let work = Work {
            existing: Some(slice),
            members,
        };
        if dirty && work.members.is_empty() {
            kept.emptied.push(slice);
        } else if dirty || !template.metadata_current(slice) {
            kept.updating.push(work);
        } else {
            kept.unchanged.push(work);
        }
    }
    kept
}

/// Adds endpoints not placed yet to `work` until it holds `max`, counting down `left`.
fn top_up(
    work: &mut Work<'_>,
    remaining: &mut impl Iterator<Item = usize>,
    left: &mut usize,
    max: usize,
) {
    while work.members.len() < max {
        let Some(i) = remaining.next() else { break };
        work.members.push(i);
        *left -= 1;
    }
}

/// The unclaimed desired endpoint an existing one is, by identity (pod and address set).
/// Endpoints are sorted by pod, so the pod's candidates are found by binary search.
/// A slice's ports, resolved and sorted: the key slices are grouped by, so a slice is reused
/// only for a port list equal to what it holds, whatever order it was written in.
fn sorted_ports(slice: &EndpointSlice) -> Vec<ResolvedPort> {
    let mut ports: Vec<ResolvedPort> = slice
        .ports
        .iter()
        .flatten()
        .map(ResolvedPort::from_slice_port)
        .collect();
    ports.sort();
    ports
}

fn find_endpoint(
    group: &EndpointGroup,
    ep: &k8s_openapi::api::discovery::v1::Endpoint,
    taken: &[bool],
) -> Option<usize> {
    let target = ep.target_ref.as_ref()?;
    let key = (target.namespace.as_deref()?, target.name.as_deref()?);
    let endpoints = &group.endpoints;
    let start = endpoints.partition_point(|d| (&*d.pod.namespace, &*d.pod.name) < key);
    (start..endpoints.len())
        .take_while(|&i| (&*endpoints[i].pod.namespace, &*endpoints[i].pod.name) == key)
        .find(|&i| !taken[i] && endpoints[i].same_identity(ep))
}

/// The slice a [`Work`] should become: the existing object (or a new one) with current labels,
/// owner reference, the group's ports and the member endpoints in sorted order.
fn render(group: &EndpointGroup, work: &Work<'_>, template: &SliceTemplate) -> EndpointSlice {
    let mut slice = match work.existing {
        Some(existing) => existing.clone(),
        None => template.new_slice(group.address_type),
    };
    let mut members = work.members.clone();
    members.sort_unstable();
    slice.metadata.labels = Some(template.labels.clone());
    slice.metadata.owner_references = Some(vec![template.owner_reference()]);
    slice.ports = Some(
        group
            .ports
            .iter()
            .map(ResolvedPort::to_slice_port)
            .collect(),
    );
    slice.endpoints = Some(
        members
            .into_iter()
            .map(|i| group.endpoints[i].to_endpoint())
            .collect(),
    );
    slice
}

/// An existing slice rewritten with a planned new slice's content, keeping its identity.
fn reuse(old: &EndpointSlice, new: EndpointSlice) -> EndpointSlice {
    let mut slice = old.clone();
    slice.metadata.labels = new.metadata.labels;
    slice.metadata.owner_references = new.metadata.owner_references;
    slice.ports = new.ports;
    slice.endpoints = new.endpoints;
    slice
}

/// Whether a slice is an up-to-date empty placeholder.
fn is_placeholder(slice: &EndpointSlice, template: &SliceTemplate) -> bool {
    slice.endpoints.as_ref().is_none_or(Vec::is_empty)
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
        && template.metadata_current(slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::desired::desired_endpoints;
    use crate::endpoints::desired::tests::{pod_record, service};
    use crate::endpoints::pod::{NamedPort, NodeZones, PodRecord, Protocol};
    use k8s_openapi::api::discovery::v1::Endpoint;
    use proptest::prelude::*;
    use serde_json::json;

    fn template() -> SliceTemplate {
        SliceTemplate::for_service(&service(json!({})), MANAGED_BY).unwrap()
    }

    /// Applies a plan the way the API server would, naming created slices `<svc>-<n>`.
    fn apply(existing: &[EndpointSlice], plan: &SlicePlan, next: &mut usize) -> Vec<EndpointSlice> {
        let mut by_name: BTreeMap<String, EndpointSlice> = existing
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap(), s.clone()))
            .collect();
        for name in &plan.deletes {
            assert!(by_name.remove(name).is_some(), "delete of unknown {name}");
        }
        for slice in &plan.updates {
            let name = slice.metadata.name.clone().unwrap();
            assert!(
                by_name.contains_key(&name),
                "update of unknown or deleted {name}"
            );
            by_name.insert(name, slice.clone());
        }
        let mut names: Vec<&String> = plan
            .updates
            .iter()
            .map(|s| s.metadata.name.as_ref().unwrap())
            .collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a slice updated twice");
        for slice in &plan.creates {
            assert!(slice.metadata.name.is_none());
            let mut slice = slice.clone();
            let name = format!(
                "{}{}",
                slice.metadata.generate_name.as_ref().unwrap(),
                *next
            );
            *next += 1;
            slice.metadata.name = Some(name.clone());
            by_name.insert(name, slice);
        }
        by_name.into_values().collect()
    }

    /// Checks the applied slices against the desired endpoints.
    fn check(slices: &[EndpointSlice], desired: &DesiredEndpoints, max: usize) {
        let t = template();
        let mut total = 0;
        for slice in slices {
            let eps = slice.endpoints.as_deref().unwrap_or(&[]);
            assert!(eps.len() <= max.max(1), "slice over the limit");
            total += eps.len();
            let at = AddressType::parse(&slice.address_type).unwrap();
            assert!(desired.address_types.contains(&at));
            assert!(t.metadata_current(slice));
        }
        assert_eq!(
            total,
            desired.endpoint_count(),
            "extra or missing endpoints"
        );
        for group in &desired.groups {
            for d in &group.endpoints {
                let holders = slices
                    .iter()
                    .filter(|s| s.address_type == group.address_type.as_str())
                    .filter(|s| sorted_ports(s) == group.ports)
                    .filter(|s| s.endpoints.iter().flatten().any(|e| d.matches(e)))
                    .count();
                assert_eq!(holders, 1, "endpoint {:?} in {holders} slices", d.pod.name);
            }
        }
        for &at in &desired.address_types {
            let of_type = slices
                .iter()
                .filter(|s| s.address_type == at.as_str())
                .count();
            assert!(of_type >= 1, "wanted type {at:?} without a slice");
        }
    }

    fn pods(n: usize, ready: bool) -> Vec<PodRecord> {
        (0..n)
            .map(|i| {
                let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                pod_record(&format!("p{i:03}"), &[&ip], ready)
            })
            .collect()
    }

    fn desired(pods: &[PodRecord]) -> DesiredEndpoints {
        desired_endpoints(
            &service(json!({"ports": [{"name": "http", "port": 80}]})),
            pods,
            &NodeZones::new(),
        )
    }

    #[test]
    fn fresh_service_creates_packed_slices() {
        let d = desired(&pods(250, true));
        let plan = plan(&[], &d, 100, &template());
        assert_eq!(plan.creates.len(), 3);
        assert!(plan.updates.is_empty() && plan.deletes.is_empty());
        let s = &plan.creates[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        assert!(s.metadata.name.is_none());
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[LABEL_HEADLESS], "");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "svc-uid", Some(true))
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert!(is_managed_by(s, MANAGED_BY));
        let eps = s.endpoints.as_ref().unwrap();
        assert!(eps.windows(2).all(|w| {
            w[0].target_ref.as_ref().unwrap().name < w[1].target_ref.as_ref().unwrap().name
        }));
    }

    #[test]
    fn order_of_endpoints_and_ports_does_not_matter() {
        let d = desired(&pods(5, true));
        let mut next = 0;
        let mut slices = apply(&[], &plan(&[], &d, 100, &template()), &mut next);
        slices[0].endpoints.as_mut().unwrap().reverse();
        slices[0].endpoints.as_mut().unwrap()[0].addresses = vec!["10.0.0.5".into()];
        slices[0].endpoints.as_mut().unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .resource_version = Some("12".into());
        assert!(plan(&slices, &d, 100, &template()).is_empty());
    }

    #[test]
    fn new_endpoints_fill_a_partial_slice_and_removed_ones_shrink_it() {
        let d = desired(&pods(150, true));
        let mut next = 0;
        let slices = apply(&[], &plan(&[], &d, 100, &template()), &mut next);
        let d2 = desired(&pods(170, true));
        let p = plan(&slices, &d2, 100, &template());
        assert_eq!(
            (p.creates.len(), p.updates.len(), p.deletes.len()),
            (0, 1, 0)
        );
        assert_eq!(p.updates[0].endpoints.as_ref().unwrap().len(), 70);
        let d3 = desired(&pods(120, true));
        let p = plan(&slices, &d3, 100, &template());
        assert_eq!(
            (p.creates.len(), p.updates.len(), p.deletes.len()),
            (0, 1, 0)
        );
        let d4 = desired(&pods(100, true));
        let p = plan(&slices, &d4, 100, &template());
        assert_eq!(p.deletes.len(), 1);
        assert!(p.updates.is_empty() && p.creates.is_empty());
    }

    #[test]
    fn pods_arriving_a_few_at_a_time_fill_partial_slices_instead_of_fragmenting() {
        // 1,000 pods arriving in batches of 7: every batch is one plan on the last state.
        let mut next = 0;
        let mut slices: Vec<EndpointSlice> = Vec::new();
        let all = pods(1000, true);
        let mut n = 0;
        while n < all.len() {
            n = (n + 7).min(all.len());
            let d = desired(&all[..n]);
            let p = plan(&slices, &d, 100, &template());
            slices = apply(&slices, &p, &mut next);
            check(&slices, &d, 100);
        }
        assert_eq!(
            slices.len(),
            10,
            "1,000 endpoints at 100 per slice need 10 slices"
        );
    }

    #[test]
    fn port_change_updates_slices_in_place_and_no_pods_leave_a_placeholder() {
        let mut next = 0;
        let slices = apply(
            &[],
            &plan(&[], &desired(&pods(3, true)), 100, &template()),
            &mut next,
        );
        let other_port = desired_endpoints(
            &service(json!({"ports": [{"name": "http", "port": 81}]})),
            &pods(3, true),
            &NodeZones::new(),
        );
        let p = plan(&slices, &other_port, 100, &template());
        assert_eq!(
            (p.creates.len(), p.updates.len(), p.deletes.len()),
            (0, 1, 0)
        );
        assert_eq!(p.updates[0].metadata.name, slices[0].metadata.name);

        let empty = desired_endpoints(
            &service(json!({"ipFamilies": ["IPv4"], "ports": [{"port": 80}]})),
            &[],
            &NodeZones::new(),
        );
        let p = plan(&slices, &empty, 100, &template());
        assert_eq!(
            (p.creates.len(), p.updates.len(), p.deletes.len()),
            (0, 1, 0)
        );
        let after = apply(&slices, &p, &mut next);
        assert!(after[0].endpoints.as_ref().unwrap().is_empty());
        assert!(plan(&after, &empty, 100, &template()).is_empty());
        let p = plan(&[], &empty, 100, &template());
        assert_eq!(p.creates.len(), 1);
    }

    #[test]
    fn foreign_owner_and_unwanted_type_are_deleted_labels_fixed() {
        let mut next = 0;
        let d = desired(&pods(3, true));
        let mut slices = apply(&[], &plan(&[], &d, 100, &template()), &mut next);
        let mut old_owner = slices[0].clone();
        old_owner.metadata.name = Some("web-old".into());
        old_owner.metadata.owner_references.as_mut().unwrap()[0].uid = "previous".into();
        let mut v6 = slices[0].clone();
        v6.metadata.name = Some("web-v6".into());
        v6.address_type = "IPv6".into();
        v6.endpoints = Some(vec![]);
        slices[0]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "b".into());
        slices.push(old_owner);
        slices.push(v6);
        let p = plan(&slices, &d, 100, &template());
        assert_eq!(p.deletes, vec!["web-old".to_string(), "web-v6".to_string()]);
        assert_eq!(p.updates.len(), 1);
        assert!(p.creates.is_empty());
    }

    fn flip(pods: &mut [PodRecord], k: usize) {
        pods[k].ready = !pods[k].ready;
    }

    #[derive(Debug, Clone)]
    struct PodSpec {
        id: u8,
        v4: bool,
        v6: bool,
        ready: bool,
        terminating: bool,
        port: Option<i32>,
    }

    fn pod_spec() -> impl Strategy<Value = PodSpec> {
        (
            0u8..40,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![8080, 9090])),
        )
            .prop_map(|(id, v4, v6, ready, terminating, port)| PodSpec {
                id,
                v4: v4 || !v6,
                v6,
                ready,
                terminating,
                port,
            })
    }

    fn families() -> impl Strategy<Value = Vec<&'static str>> {
        prop::sample::select(vec![
            vec![],
            vec!["IPv4"],
            vec!["IPv6"],
            vec!["IPv4", "IPv6"],
        ])
    }

    /// A desired state: up to 30 pods and the Service's families, as [`build`] takes them.
    fn desired_state() -> impl Strategy<Value = DesiredEndpoints> {
        (prop::collection::vec(pod_spec(), 0..30), families())
            .prop_map(|(specs, families)| build(&specs, &families))
    }

    /// Plans from `existing` to `desired`, applies the plan, checks the slices it leaves and
    /// that planning again writes nothing; returns the slices.
    fn settle(
        existing: &[EndpointSlice],
        desired: &DesiredEndpoints,
        max: usize,
        next: &mut usize,
    ) -> Result<Vec<EndpointSlice>, TestCaseError> {
        let t = template();
        let after = apply(existing, &plan(existing, desired, max, &t), next);
        check(&after, desired, max);
        prop_assert!(plan(&after, desired, max, &t).is_empty());
        Ok(after)
    }

    fn build(specs: &[PodSpec], families: &[&str]) -> DesiredEndpoints {
        let pods: Vec<PodRecord> = specs
            .iter()
            .map(|s| {
                let v4 = format!("10.0.0.{}", s.id);
                let v6 = format!("fd00::{}", s.id);
                let mut ips = Vec::new();
                if s.v4 {
                    ips.push(v4.as_str());
                }
                if s.v6 {
                    ips.push(v6.as_str());
                }
                let mut p = pod_record(&format!("p{}", s.id), &ips, s.ready);
                p.terminating = s.terminating;
                if let Some(port) = s.port {
                    p.named_ports = vec![NamedPort {
                        name: "http".into(),
                        port,
                        protocol: Protocol::Tcp,
                    }]
                    .into();
                }
                p
            })
            .collect();
        let svc = service(json!({
            "ipFamilies": families,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                      {"name": "admin", "port": 81}]
        }));
        desired_endpoints(&svc, &pods, &NodeZones::new())
    }

    /// Arbitrary, messy existing slices: `source`'s endpoints chunked at random sizes (up to
    /// twice the limit), some duplicated, some with wrong labels or a foreign owner.
    fn messy(
        source: &DesiredEndpoints,
        chunks: &[(usize, bool, bool, bool)],
    ) -> Vec<EndpointSlice> {
        let t = template();
        let mut all: Vec<(&EndpointGroup, Endpoint)> = Vec::new();
        for g in &source.groups {
            all.extend(g.endpoints.iter().map(|e| (g, e.to_endpoint())));
        }
        let mut out = Vec::new();
        let mut pos = 0;
        for (n, &(size, duplicate, stale_labels, foreign)) in chunks.iter().enumerate() {
            let Some((group, _)) = all.get(pos) else {
                break;
            };
            let mut slice = t.new_slice(group.address_type);
            slice.metadata.name = Some(format!("old-{n}"));
            slice.metadata.generate_name = None;
            slice.ports = Some(
                group
                    .ports
                    .iter()
                    .rev()
                    .map(ResolvedPort::to_slice_port)
                    .collect(),
            );
            let eps: Vec<Endpoint> = all[pos..]
                .iter()
                .take(size)
                .take_while(|(g, _)| std::ptr::eq(*g, *group))
                .map(|(_, e)| e.clone())
                .collect();
            if !duplicate {
                pos += eps.len();
            }
            slice.endpoints = Some(eps);
            if stale_labels {
                slice.metadata.labels = None;
            }
            if foreign {
                slice.metadata.owner_references = None;
            }
            out.push(slice);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// From the slices of one desired state to another: every endpoint in exactly one
        /// slice, no slice over the limit, and replanning writes nothing.
        #[test]
        fn transition_invariants(da in desired_state(), db in desired_state(), max in 1usize..6) {
            let mut next = 0;
            let first = settle(&[], &da, max, &mut next)?;
            settle(&first, &db, max, &mut next)?;
        }

        /// Same from arbitrary, messy existing slices (duplicates, oversize, stale metadata,
        /// foreign owners, reversed port order).
        #[test]
        fn messy_existing_invariants(
            da in desired_state(),
            db in desired_state(),
            chunks in prop::collection::vec((1usize..12, any::<bool>(), any::<bool>(), any::<bool>()), 0..12),
            max in 1usize..6,
        ) {
            let existing = messy(&da, &chunks);
            settle(&existing, &db, max, &mut 0)?;
        }

        /// One readiness flip among N endpoints is exactly one update.
        #[test]
        fn readiness_flip_is_one_update(n in 1usize..300, max in 1usize..=100, k in any::<prop::sample::Index>()) {
            let t = template();
            let mut ps = pods(n, true);
            let mut next = 0;
            let slices = apply(&[], &plan(&[], &desired(&ps), max, &t), &mut next);
            flip(&mut ps, k.index(n));
            let d = desired(&ps);
            let p = plan(&slices, &d, max, &t);
            prop_assert_eq!((p.creates.len(), p.updates.len(), p.deletes.len()), (0, 1, 0));
            let after = apply(&slices, &p, &mut next);
            check(&after, &d, max);
            prop_assert!(plan(&after, &d, max, &t).is_empty());
        }
    }
}
