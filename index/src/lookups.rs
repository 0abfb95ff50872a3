//! In-memory indexes the endpoints controller keeps instead of scanning caches.
//!
//! - [`SelectorIndex`] maps a pod's labels to the Services that may select it: each selector
//!   is filed under one of its `key=value` pairs (its anchor), so a pod event looks up only the
//!   Services anchored on one of the pod's own labels, never every Service.
//! - [`PodIndex`] holds the compact [`PodRecord`] of every pod by namespace, and tells which
//!   entries vanished across a relist.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use signpost_core::endpoints::pod::PodRecord;
use signpost_core::keys::ServiceKey;

type Anchor = (Arc<str>, Arc<str>, Arc<str>); // namespace, label key, label value

/// Services by one label pair of their selector.
#[derive(Debug, Default)]
pub struct SelectorIndex {
    by_anchor: HashMap<Anchor, HashSet<ServiceKey>>,
    selectors: HashMap<ServiceKey, (Anchor, BTreeMap<String, String>)>,
}

impl SelectorIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files (or refiles) the selector of `service`; `None` or an empty selector removes it.
    /// Returns the previous selector, so a selector change can wake the pods it used to match.
    pub fn set(
        &mut self,
        service: ServiceKey,
        selector: Option<&BTreeMap<String, String>>,
    ) -> Option<BTreeMap<String, String>> {
        let previous = self.remove(&service);
        if let Some(selector) = selector.filter(|s| !s.is_empty()) {
            // The first pair in key order: deterministic, so re-filing does not move entries.
            if let Some((key, value)) = selector.iter().next() {
                let anchor: Anchor = (
                    service.namespace.as_str().into(),
                    key.as_str().into(),
                    value.as_str().into(),
                );
                self.by_anchor
                    .entry(anchor.clone())
                    .or_default()
                    .insert(service.clone());
                self.selectors.insert(service, (anchor, selector.clone()));
            }
        }
        previous
    }

    /// Removes `service`; returns its selector.
    pub fn remove(&mut self, service: &ServiceKey) -> Option<BTreeMap<String, String>> {
        let (anchor, selector) = self.selectors.remove(service)?;
        if let Some(set) = self.by_anchor.get_mut(&anchor) {
            set.remove(service);
            if set.is_empty() {
                self.by_anchor.remove(&anchor);
            }
        }
        Some(selector)
    }

    /// Services in `namespace` whose selector matches `labels`.
    pub fn services_selecting<'a>(
        &'a self,
        namespace: &'a str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        out: &mut HashSet<ServiceKey>,
    ) {
        let labels: Vec<(&str, &str)> = labels.into_iter().collect();
        for (key, value) in &labels {
            let anchor: Anchor = (namespace.into(), (*key).into(), (*value).into());
            let Some(candidates) = self.by_anchor.get(&anchor) else {
                continue;
            };
            for service in candidates {
                if let Some((_, selector)) = self.selectors.get(service)
                    && selector
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
                {
                    out.insert(service.clone());
                }
            }
        }
    }

    /// Number of Services with a selector.
    pub fn len(&self) -> usize {
        self.selectors.len()
    }

    /// Whether no Service has a selector.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }
}

/// Names of the pods carrying one label value, by value.
type PodsByValue = HashMap<Arc<str>, BTreeSet<Arc<str>>>;

/// The pods of one namespace, by name and by label pair.
#[derive(Debug, Default)]
struct NamespacePods {
    by_name: BTreeMap<Arc<str>, Arc<PodRecord>>,
    /// label key → label value → names of the pods carrying that pair: a Service's reconcile
    /// reads the pods of its selector's rarest pair instead of every pod of the namespace.
    by_label: HashMap<Arc<str>, PodsByValue>,
}

impl NamespacePods {
    fn file_labels(&mut self, record: &PodRecord) {
        for (key, value) in &record.labels {
            let values = match self.by_label.get_mut(&**key) {
                Some(values) => values,
                None => self.by_label.entry(Arc::from(&**key)).or_default(),
            };
            let names = match values.get_mut(&**value) {
                Some(names) => names,
                None => values.entry(Arc::from(&**value)).or_default(),
            };
            names.insert(record.name.clone());
        }
    }

    fn unfile_labels(&mut self, record: &PodRecord) {
        for (key, value) in &record.labels {
            let Some(values) = self.by_label.get_mut(&**key) else {
                continue;
            };
            if let Some(names) = values.get_mut(&**value) {
                names.remove(&record.name);
                if names.is_empty() {
                    values.remove(&**value);
                }
            }
            if values.is_empty() {
                self.by_label.remove(&**key);
            }
        }
    }

    fn insert(&mut self, record: Arc<PodRecord>) -> Option<Arc<PodRecord>> {
        let previous = self.by_name.insert(record.name.clone(), record.clone());
        match &previous {
            Some(old) if old.labels == record.labels => {}
            Some(old) => {
                self.unfile_labels(old);
                self.file_labels(&record);
            }
            None => self.file_labels(&record),
        }
        previous
    }

    fn remove(&mut self, name: &str) -> Option<Arc<PodRecord>> {
        let removed = self.by_name.remove(name)?;
        self.unfile_labels(&removed);
        Some(removed)
    }

    /// Names of the pods carrying `key=value`.
    fn labelled(&self, key: &str, value: &str) -> Option<&BTreeSet<Arc<str>>> {
        self.by_label.get(key)?.get(value)
    }
}

/// Compact records of every pod, by namespace and name, with a label index per namespace.
#[derive(Debug, Default)]
pub struct PodIndex {
    namespaces: HashMap<Arc<str>, NamespacePods>,
    /// Pods seen since the current relist began; `None` when no relist is under way.
    relisted: Option<HashSet<(Arc<str>, Arc<str>)>>,
}

impl PodIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `record`; returns the record it replaces.
    pub fn upsert(&mut self, record: PodRecord) -> Option<Arc<PodRecord>> {
        let namespace = record.namespace.clone();
        if let Some(seen) = self.relisted.as_mut() {
            seen.insert((namespace.clone(), record.name.clone()));
        }
        self.namespaces
            .entry(namespace)
            .or_default()
            .insert(Arc::new(record))
    }

    /// Removes a pod; returns its record.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Arc<PodRecord>> {
        let pods = self.namespaces.get_mut(namespace)?;
        let removed = pods.remove(name);
        if pods.by_name.is_empty() {
            self.namespaces.remove(namespace);
        }
        removed
    }

    /// The record of one pod.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<PodRecord>> {
        self.namespaces.get(namespace)?.by_name.get(name)
    }

    /// Every pod of a namespace.
    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = &Arc<PodRecord>> {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|pods| pods.by_name.values())
    }

    /// The pods of a namespace that may match `selector`: those carrying its rarest pair (a
    /// superset of the matches; callers still check the whole selector). An empty selector
    /// yields every pod of the namespace.
    pub fn candidates<'a>(
        &'a self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Box<dyn Iterator<Item = &'a Arc<PodRecord>> + 'a> {
        let Some(pods) = self.namespaces.get(namespace) else {
            return Box::new(std::iter::empty());
        };
        if selector.is_empty() {
            return Box::new(pods.by_name.values());
        }
        let rarest = selector
            .iter()
            .map(|(key, value)| pods.labelled(key, value))
            .min_by_key(|names| names.map_or(0, BTreeSet::len));
        match rarest.flatten() {
            Some(names) => Box::new(names.iter().filter_map(|name| pods.by_name.get(name))),
            None => Box::new(std::iter::empty()),
        }
    }

    /// A relist begins: pods not seen again before [`PodIndex::finish_relist`] are gone.
    pub fn begin_relist(&mut self) {
        self.relisted = Some(HashSet::new());
    }

    /// A relist ended: removes and returns the pods it did not list.
    pub fn finish_relist(&mut self) -> Vec<Arc<PodRecord>> {
        let Some(seen) = self.relisted.take() else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        for (namespace, pods) in &mut self.namespaces {
            let unseen: Vec<Arc<str>> = pods
                .by_name
                .keys()
                .filter(|name| !seen.contains(&(namespace.clone(), (*name).clone())))
                .cloned()
                .collect();
            for name in unseen {
                gone.extend(pods.remove(&name));
            }
        }
        self.namespaces.retain(|_, pods| !pods.by_name.is_empty());
        gone
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.namespaces
            .values()
            .map(|pods| pods.by_name.len())
            .sum()
    }

    /// Whether there are no pods.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// The Service a slice belongs to, by its `kubernetes.io/service-name` label.
pub fn slice_service(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Option<ServiceKey> {
    let name = slice
        .metadata
        .labels
        .as_ref()?
        .get(signpost_core::endpoints::slices::LABEL_SERVICE_NAME)?;
    Some(ServiceKey::new(slice.metadata.namespace.clone()?, name))
}

/// Names of the cached slices of each Service, so a reconcile reads its Service's slices
/// without scanning every slice in the cache.
#[derive(Debug, Default)]
pub struct SliceNames {
    by_service: HashMap<ServiceKey, HashSet<String>>,
    /// The Service each slice is filed under, by namespace and name: a slice whose
    /// `kubernetes.io/service-name` label changes moves from one Service to the other.
    service_of: HashMap<(String, String), ServiceKey>,
}

/// Where [`SliceNames::insert`] filed a slice.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filed {
    /// The Service the slice belongs to now (none without a service-name label).
    pub service: Option<ServiceKey>,
    /// The Service it belonged to before, when that was another one (it was relabelled):
    /// that Service lost a slice.
    pub moved_from: Option<ServiceKey>,
}

impl SliceNames {
    /// Files a slice (added or updated).
    pub fn insert(&mut self, slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Filed {
        let (Some(namespace), Some(name)) = (&slice.metadata.namespace, &slice.metadata.name)
        else {
            return Filed::default();
        };
        let id = (namespace.clone(), name.clone());
        let service = slice_service(slice);
        let previous = match &service {
            Some(key) => self.service_of.insert(id, key.clone()),
            None => self.service_of.remove(&id),
        };
        let moved_from = previous.filter(|old| Some(old) != service.as_ref());
        if let Some(old) = &moved_from {
            self.unfile(old, name);
        }
        if let Some(key) = &service {
            self.by_service
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
        }
        Filed {
            service,
            moved_from,
        }
    }

    fn unfile(&mut self, key: &ServiceKey, name: &str) {
        if let Some(names) = self.by_service.get_mut(key) {
            names.remove(name);
            if names.is_empty() {
                self.by_service.remove(key);
            }
        }
    }

    /// Forgets a deleted slice; returns the Service it was filed under, and its name.
    pub fn remove(
        &mut self,
        slice: &k8s_openapi::api::discovery::v1::EndpointSlice,
    ) -> Option<(ServiceKey, String)> {
        let namespace = slice.metadata.namespace.clone()?;
        let name = slice.metadata.name.clone()?;
        let key = self
            .service_of
            .remove(&(namespace, name.clone()))
            .or_else(|| slice_service(slice))?;
        self.unfile(&key, &name);
        Some((key, name))
    }

    /// Refiles everything after a relist; returns every Service that has slices.
    pub fn rebuild<'a>(
        &mut self,
        slices: impl IntoIterator<Item = &'a k8s_openapi::api::discovery::v1::EndpointSlice>,
    ) -> Vec<ServiceKey> {
        self.by_service.clear();
        self.service_of.clear();
        let mut keys: Vec<ServiceKey> = slices
            .into_iter()
            .filter_map(|s| self.insert(s).service)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether the cache holds slice `name` of Service `key`.
    pub fn contains(&self, key: &ServiceKey, name: &str) -> bool {
        self.by_service
            .get(key)
            .is_some_and(|names| names.contains(name))
    }

    /// The names of a Service's slices.
    pub fn names(&self, key: &ServiceKey) -> Vec<String> {
        self.by_service
            .get(key)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selecting(index: &SelectorIndex, ns: &str, labels: &[(&str, &str)]) -> Vec<String> {
        let mut out = HashSet::new();
        index.services_selecting(ns, labels.iter().copied(), &mut out);
        let mut names: Vec<String> = out.into_iter().map(|k| k.name).collect();
        names.sort();
        names
    }

    #[test]
    fn pods_find_only_services_whose_whole_selector_matches() {
        let mut index = SelectorIndex::new();
        index.set(
            ServiceKey::new("demo", "web"),
            Some(&selector(&[("app", "web")])),
        );
        index.set(
            ServiceKey::new("demo", "web-canary"),
            Some(&selector(&[("app", "web"), ("track", "canary")])),
        );
        index.set(
            ServiceKey::new("other", "web"),
            Some(&selector(&[("app", "web")])),
        );
        assert_eq!(selecting(&index, "demo", &[("app", "web")]), vec!["web"]);
        assert_eq!(
            selecting(&index, "demo", &[("app", "web"), ("track", "canary")]),
            vec!["web", "web-canary"]
        );
        assert!(selecting(&index, "demo", &[("app", "db")]).is_empty());
    }

    #[test]
    fn changing_or_removing_a_selector_refiles_the_service() {
        let mut index = SelectorIndex::new();
        let key = ServiceKey::new("demo", "web");
        index.set(key.clone(), Some(&selector(&[("app", "web")])));
        let previous = index.set(key.clone(), Some(&selector(&[("app", "api")])));
        assert_eq!(previous, Some(selector(&[("app", "web")])));
        assert!(selecting(&index, "demo", &[("app", "web")]).is_empty());
        assert_eq!(selecting(&index, "demo", &[("app", "api")]), vec!["web"]);
        index.set(key.clone(), None);
        assert!(index.is_empty());
        assert!(
            index.by_anchor.is_empty(),
            "no empty anchor sets left behind"
        );
    }

    #[test]
    fn an_empty_selector_selects_nothing() {
        let mut index = SelectorIndex::new();
        index.set(ServiceKey::new("demo", "all"), Some(&BTreeMap::new()));
        assert!(selecting(&index, "demo", &[("app", "web")]).is_empty());
    }

    fn record(ns: &str, name: &str) -> PodRecord {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": {"containers": []}
        }))
        .unwrap();
        PodRecord::from_pod(&pod).unwrap()
    }

    #[test]
    fn relist_removes_pods_that_were_not_listed_again() {
        let mut pods = PodIndex::new();
        pods.upsert(record("demo", "a"));
        pods.upsert(record("demo", "b"));
        pods.upsert(record("other", "c"));
        pods.begin_relist();
        pods.upsert(record("demo", "a"));
        let mut gone: Vec<String> = pods
            .finish_relist()
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        gone.sort();
        assert_eq!(gone, vec!["b", "c"]);
        assert_eq!(pods.len(), 1);
        assert!(pods.get("demo", "a").is_some());
        assert_eq!(pods.in_namespace("other").count(), 0);
    }

    fn labelled(ns: &str, name: &str, labels: &[(&str, &str)]) -> PodRecord {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels},
            "spec": {"containers": []}
        }))
        .unwrap();
        PodRecord::from_pod(&pod).unwrap()
    }

    fn candidates(pods: &PodIndex, ns: &str, sel: &[(&str, &str)]) -> Vec<String> {
        let mut names: Vec<String> = pods
            .candidates(ns, &selector(sel))
            .map(|r| r.name.to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn candidates_come_from_the_rarest_pair_and_follow_label_changes() {
        let mut pods = PodIndex::new();
        pods.upsert(labelled("demo", "a", &[("app", "web"), ("tier", "front")]));
        pods.upsert(labelled("demo", "b", &[("app", "web"), ("tier", "back")]));
        pods.upsert(labelled("demo", "c", &[("app", "db"), ("tier", "back")]));
        pods.upsert(labelled("other", "d", &[("app", "web")]));
        assert_eq!(candidates(&pods, "demo", &[("app", "web")]), ["a", "b"]);
        // The rarest pair (tier=front: 1 pod) bounds the candidates.
        assert_eq!(
            candidates(&pods, "demo", &[("app", "web"), ("tier", "front")]),
            ["a"]
        );
        // A pair nobody carries: no candidates at all.
        assert!(candidates(&pods, "demo", &[("app", "web"), ("tier", "none")]).is_empty());
        assert!(candidates(&pods, "nowhere", &[("app", "web")]).is_empty());
        assert_eq!(candidates(&pods, "demo", &[]), ["a", "b", "c"]);

        // Relabelled: filed under its new pair only.
        pods.upsert(labelled("demo", "a", &[("app", "db")]));
        assert_eq!(candidates(&pods, "demo", &[("app", "web")]), ["b"]);
        assert_eq!(candidates(&pods, "demo", &[("app", "db")]), ["a", "c"]);
        // Removed, or gone in a relist: no longer a candidate, and no empty sets left behind.
        pods.remove("demo", "b");
        pods.begin_relist();
        pods.upsert(labelled("demo", "a", &[("app", "db")]));
        pods.upsert(labelled("other", "d", &[("app", "web")]));
        assert_eq!(pods.finish_relist().len(), 1);
        assert_eq!(candidates(&pods, "demo", &[("app", "db")]), ["a"]);
        assert!(candidates(&pods, "demo", &[("tier", "back")]).is_empty());
        let demo = &pods.namespaces["demo"];
        assert_eq!(demo.by_label.len(), 1, "{:?}", demo.by_label);
    }

    fn slice(ns: &str, svc: &str, name: &str) -> k8s_openapi::api::discovery::v1::EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
    }

    #[test]
    fn slice_names_follow_adds_deletes_and_relists() {
        let mut names = SliceNames::default();
        let key = ServiceKey::new("demo", "web");
        assert_eq!(
            names.insert(&slice("demo", "web", "web-a")).service,
            Some(key.clone())
        );
        names.insert(&slice("demo", "web", "web-b"));
        let mut got = names.names(&key);
        got.sort();
        assert_eq!(got, vec!["web-a", "web-b"]);
        assert_eq!(
            names.remove(&slice("demo", "web", "web-a")),
            Some((key.clone(), "web-a".into()))
        );
        assert_eq!(names.names(&key), vec!["web-b"]);
        let keys = names.rebuild([&slice("demo", "db", "db-x")]);
        assert_eq!(keys, vec![ServiceKey::new("demo", "db")]);
        assert!(names.names(&key).is_empty());
    }

    #[test]
    fn a_relabelled_slice_moves_from_one_service_to_the_other() {
        let mut names = SliceNames::default();
        let web = ServiceKey::new("demo", "web");
        let other = ServiceKey::new("demo", "elsewhere");
        names.insert(&slice("demo", "web", "web-a"));
        let filed = names.insert(&slice("demo", "elsewhere", "web-a"));
        assert_eq!(filed.service, Some(other.clone()));
        assert_eq!(filed.moved_from, Some(web.clone()), "web lost a slice");
        assert!(names.names(&web).is_empty());
        assert_eq!(names.names(&other), vec!["web-a"]);
        // An update that keeps the label moves nothing.
        assert_eq!(
            names
                .insert(&slice("demo", "elsewhere", "web-a"))
                .moved_from,
            None
        );
        // Deleted with its last label, it leaves the Service it was filed under.
        assert_eq!(
            names.remove(&slice("demo", "elsewhere", "web-a")),
            Some((other.clone(), "web-a".into()))
        );
        assert!(names.names(&other).is_empty());
    }
}
