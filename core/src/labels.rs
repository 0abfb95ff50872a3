//! Every label and annotation key Signpost reads or writes, and their values, in one place.
//!
//! They are the published contract (`docs/contracts.md`): consumers select slices by them and
//! tell Signpost's objects from foreign ones by them, so a key written in two places could
//! drift apart. The modules that use a key re-export it where their callers expect it.

use std::collections::BTreeMap;

// --- EndpointSlices ---

/// Label naming the Service a slice belongs to; how consumers find a Service's slices.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice; each controller only touches its own.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The endpoints controller's value of [`LABEL_MANAGED_BY`] with [`SliceManager::Signpost`].
pub const MANAGED_BY: &str = "endpointslice-controller.signpost.dev";
/// The mirroring controller's value of [`LABEL_MANAGED_BY`] with [`SliceManager::Signpost`],
/// so the two never touch each other's slices.
pub const MIRRORING_MANAGED_BY: &str = "endpointslicemirroring-controller.signpost.dev";
/// kube-controller-manager's endpointslice controller's value of [`LABEL_MANAGED_BY`].
pub const KUBERNETES_MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// kube-controller-manager's mirroring controller's value of [`LABEL_MANAGED_BY`].
pub const KUBERNETES_MIRRORING_MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";

/// Whose [`LABEL_MANAGED_BY`] values Signpost's slices carry (`--endpointslice-managed-by`).
///
/// Signpost replaces kube-controller-manager's controllers, so by default its slices carry
/// their values: consumers that select on them and Kubernetes' conformance tests see no
/// difference. Its own values are for running beside kube-controller-manager's endpoint
/// controllers (the benchmarks do), where each must tell its slices from the other's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SliceManager {
    /// `endpointslice-controller.k8s.io` and `endpointslicemirroring-controller.k8s.io`.
    #[default]
    Kubernetes,
    /// `endpointslice-controller.signpost.dev` and
    /// `endpointslicemirroring-controller.signpost.dev`.
    Signpost,
}

impl SliceManager {
    /// The value on the slices of selector Services (the endpoints controller's).
    pub fn endpoints(self) -> &'static str {
        match self {
            Self::Kubernetes => KUBERNETES_MANAGED_BY,
            Self::Signpost => MANAGED_BY,
        }
    }

    /// The value on mirrored slices (the mirroring controller's).
    pub fn mirroring(self) -> &'static str {
        match self {
            Self::Kubernetes => KUBERNETES_MIRRORING_MANAGED_BY,
            Self::Signpost => MIRRORING_MANAGED_BY,
        }
    }
}
/// Label Kubernetes puts on the slices (and Endpoints) of headless Services, so proxies can
/// skip them with a label selector.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

// --- Endpoints and DNSRecords ---

/// Label marking an Endpoints object or DNSRecord as written by Signpost. One without it was
/// written by someone else and is left alone (DESIGN: reported, never fought over).
pub const LABEL_APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Signpost's value of [`LABEL_APP_MANAGED_BY`].
pub const MANAGED_BY_SIGNPOST: &str = "signpost";
/// Annotation Kubernetes sets when it had to drop addresses, so users can tell a truncated
/// object from a complete one.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The value of [`ANNOTATION_OVER_CAPACITY`].
pub const OVER_CAPACITY_TRUNCATED: &str = "truncated";
/// Annotation with the time of the change that triggered an Endpoints write; it describes the
/// Endpoints object itself, so mirroring does not carry it over.
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";
/// kubectl's copy of the last applied object; describes the object it is on, so it is never
/// carried over to objects derived from it.
pub const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

// --- Services and nodes ---

/// Annotation through which a Service requests specific virtual IPs (one per family,
/// comma-separated).
pub const REQUESTED_IP_ANNOTATION: &str = "signpost.dev/cluster-ip";
/// The node label Kubernetes uses for a node's zone; endpoints carry it as `zone`.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// Whether `labels` hold `key` with exactly `value`: how every "is this ours?" check reads
/// its managed-by label, so an absent label map and an absent key mean the same (not ours).
pub fn has_label(labels: Option<&BTreeMap<String, String>>, key: &str, value: &str) -> bool {
    labels.and_then(|l| l.get(key)).is_some_and(|v| v == value)
}
