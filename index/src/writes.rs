//! Remembers the EndpointSlice writes the controller made, so it never plans from a cache
//! that has not caught up with them.
//!
//! Planning from a cache that still shows a slice as it was before our own update would undo
//! that update (or create a duplicate slice). So every create or update keeps the object the
//! API server returned, every delete keeps the name, and a Service is planned from its cached
//! slices overlaid with those ([`WriteTracker::current`]) until the watch has shown them. The
//! next change of a Service is written as soon as the previous write returned, without waiting
//! for that write to come back through the watch (issue 28: two pods of one Service changing a
//! few milliseconds apart).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_core::keys::ServiceKey;

#[derive(Debug, Default)]
struct Writes {
    /// Slice name → what our last create or update of it returned, and when.
    written: HashMap<String, (Arc<EndpointSlice>, Instant)>,
    /// Slices we deleted that the cache may still show, and when.
    deleted: HashMap<String, Instant>,
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.written.is_empty() && self.deleted.is_empty()
    }
}

/// What the controller wrote, per Service.
#[derive(Debug, Default)]
pub struct WriteTracker {
    services: HashMap<ServiceKey, Writes>,
}

fn name_of(slice: &EndpointSlice) -> &str {
    slice.metadata.name.as_deref().unwrap_or_default()
}

fn generation_of(slice: &EndpointSlice) -> i64 {
    slice.metadata.generation.unwrap_or(0)
}

impl WriteTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A create or update returned `slice`.
    pub fn wrote(&mut self, service: &ServiceKey, slice: EndpointSlice) {
        let writes = self.services.entry(service.clone()).or_default();
        let name = name_of(&slice).to_string();
        writes.deleted.remove(&name);
        writes
            .written
            .insert(name, (Arc::new(slice), Instant::now()));
    }

    /// Slice `name` was deleted by us.
    pub fn deleted(&mut self, service: &ServiceKey, name: &str) {
        let writes = self.services.entry(service.clone()).or_default();
        writes.written.remove(name);
        writes.deleted.insert(name.to_string(), Instant::now());
    }

    /// The watch reported slice `name` deleted (by us or anyone): nothing to wait for.
    pub fn observed_deletion(&mut self, service: &ServiceKey, name: &str) {
        if let Some(writes) = self.services.get_mut(service) {
            writes.written.remove(name);
            writes.deleted.remove(name);
            if writes.is_empty() {
                self.services.remove(service);
            }
        }
    }

    /// The watch showed `slice` of `service`: whether it is exactly what our last write of it
    /// returned (same resourceVersion). Such an echo tells the next plan nothing the overlay
    /// did not already show, so it settles the write and needs no sync: a sync for it would
    /// only spend the Service's allowance of syncs at once (issue 28) on a no-op.
    pub fn observed_echo(&mut self, service: &ServiceKey, slice: &EndpointSlice) -> bool {
        let Some(writes) = self.services.get_mut(service) else {
            return false;
        };
        let name = name_of(slice);
        let echo = writes.written.get(name).is_some_and(|(ours, _)| {
            ours.metadata.resource_version.is_some()
                && ours.metadata.resource_version == slice.metadata.resource_version
        });
        if echo {
            writes.written.remove(name);
            if writes.is_empty() {
                self.services.remove(service);
            }
        }
        echo
    }

    /// The Service's slices as they are after our writes: `cached` (every slice the cache
    /// holds for it), each one our last write changed replaced by what that write returned
    /// while the cache shows an older generation, those we created that the cache does not
    /// show yet added, those we deleted that it still shows left out. Sorted by name.
    /// Forgets the writes the cache has caught up with.
    pub fn current(
        &mut self,
        service: &ServiceKey,
        cached: Vec<Arc<EndpointSlice>>,
    ) -> Vec<Arc<EndpointSlice>> {
        let Some(writes) = self.services.get_mut(service) else {
            return cached;
        };
        let in_cache = |name: &str| cached.iter().find(|s| name_of(s) == name);
        writes.written.retain(|name, (ours, _)| {
            in_cache(name).is_none_or(|c| generation_of(c) < generation_of(ours))
        });
        writes.deleted.retain(|name, _| in_cache(name).is_some());
        let mut view: Vec<Arc<EndpointSlice>> = cached
            .iter()
            .filter(|s| !writes.deleted.contains_key(name_of(s)))
            .filter(|s| !writes.written.contains_key(name_of(s)))
            .cloned()
            .chain(writes.written.values().map(|(ours, _)| ours.clone()))
            .collect();
        view.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        if writes.is_empty() {
            self.services.remove(service);
        }
        view
    }

    /// The slice cache was relisted from scratch, the list starting at `began`: it now shows
    /// every write that finished before then. A slice we wrote before the list that it does not
    /// hold was deleted while the watch was down (its delete event is lost with the watch), and
    /// a slice we deleted that it does not hold is gone: neither is waited for any longer.
    /// Writes after `began` may still be on their way through the new watch and are kept.
    pub fn relisted(&mut self, began: Instant, cached: impl Fn(&ServiceKey, &str) -> bool) {
        self.services.retain(|service, writes| {
            writes
                .written
                .retain(|name, (_, at)| *at >= began || cached(service, name));
            writes
                .deleted
                .retain(|name, at| *at >= began || cached(service, name));
            !writes.is_empty()
        });
    }

    /// Drops everything about a Service that is gone.
    pub fn forget(&mut self, service: &ServiceKey) {
        self.services.remove(service);
    }

    /// Whether the cache has not shown some of `service`'s writes yet (after [`Self::current`]:
    /// the view it returned differs from the cache).
    pub fn is_pending(&self, service: &ServiceKey) -> bool {
        self.services.contains_key(service)
    }

    /// Number of Services with writes the cache has not shown yet.
    pub fn pending(&self) -> usize {
        self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn key() -> ServiceKey {
        ServiceKey::new("demo", "web")
    }

    fn slice(name: &str, generation: i64) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                generation: Some(generation),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(Vec::new()),
            ports: None,
        }
    }

    fn cached(slices: &[(&str, i64)]) -> Vec<Arc<EndpointSlice>> {
        slices.iter().map(|(n, g)| Arc::new(slice(n, *g))).collect()
    }

    /// A tracker that wrote one slice of Service [`key`].
    fn after_writing(name: &str, generation: i64) -> WriteTracker {
        let mut tracker = WriteTracker::new();
        tracker.wrote(&key(), slice(name, generation));
        tracker
    }

    /// Asserts the (name, generation) of every slice `tracker` shows of Service [`key`] while
    /// the cache holds `cache`.
    #[track_caller]
    fn assert_seen(tracker: &mut WriteTracker, cache: &[(&str, i64)], shown: &[(&str, i64)]) {
        let view = tracker.current(&key(), cached(cache));
        let seen: Vec<(&str, i64)> = view
            .iter()
            .map(|s| (name_of(s), generation_of(s)))
            .collect();
        assert_eq!(seen, shown, "what the cache {cache:?} shows");
    }

    #[test]
    fn a_cache_behind_our_update_shows_what_the_update_returned_until_it_catches_up() {
        let mut tracker = after_writing("web-abc", 3);
        assert_seen(
            &mut tracker,
            &[("web-abc", 2), ("web-def", 1)],
            &[("web-abc", 3), ("web-def", 1)],
        );
        assert_seen(
            &mut tracker,
            &[("web-abc", 3), ("web-def", 1)],
            &[("web-abc", 3), ("web-def", 1)],
        );
        assert_eq!(tracker.pending(), 0, "caught-up writes are forgotten");
    }

    #[test]
    fn a_newer_generation_in_the_cache_wins_over_our_write() {
        let mut tracker = after_writing("web-abc", 3);
        assert_seen(&mut tracker, &[("web-abc", 5)], &[("web-abc", 5)]);
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_created_slice_missing_from_the_cache_is_shown() {
        let mut tracker = after_writing("web-new", 1);
        assert_seen(
            &mut tracker,
            &[("web-abc", 2)],
            &[("web-abc", 2), ("web-new", 1)],
        );
        assert_eq!(
            tracker.pending(),
            1,
            "still waiting for the watch to show it"
        );
        tracker.current(&key(), cached(&[("web-abc", 2), ("web-new", 1)]));
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_deleted_slice_still_cached_is_left_out() {
        let mut tracker = WriteTracker::new();
        tracker.deleted(&key(), "web-old");
        assert_seen(
            &mut tracker,
            &[("web-old", 4), ("web-abc", 1)],
            &[("web-abc", 1)],
        );
        assert!(tracker.current(&key(), cached(&[])).is_empty());
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_watched_deletion_clears_what_we_wrote() {
        let mut tracker = after_writing("web-abc", 3);
        tracker.observed_deletion(&key(), "web-abc");
        assert!(tracker.current(&key(), cached(&[])).is_empty());
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn untracked_services_show_the_cache_as_it_is() {
        let mut tracker = WriteTracker::new();
        assert_seen(&mut tracker, &[("web-x", 1)], &[("web-x", 1)]);
    }

    #[test]
    fn a_slice_deleted_while_the_watch_was_down_is_forgotten_after_a_relist() {
        let mut tracker = after_writing("web-abc", 3);
        // The watch broke before it showed the write; someone deleted the slice meanwhile.
        assert_eq!(tracker.current(&key(), cached(&[])).len(), 1);
        tracker.relisted(Instant::now(), |_, _| false);
        assert!(
            tracker.current(&key(), cached(&[])).is_empty(),
            "the relisted cache is the truth: the slice is gone"
        );
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_write_after_the_relist_began_is_still_kept() {
        let mut tracker = WriteTracker::new();
        let began = Instant::now();
        tracker.wrote(&key(), slice("web-new", 1));
        tracker.deleted(&key(), "web-old");
        tracker.relisted(began, |_, _| false);
        assert_seen(&mut tracker, &[("web-old", 4)], &[("web-new", 1)]);
    }

    #[test]
    fn a_relist_that_shows_the_slice_keeps_comparing_generations() {
        let mut tracker = after_writing("web-abc", 3);
        tracker.relisted(Instant::now(), |_, name| name == "web-abc");
        assert_seen(&mut tracker, &[("web-abc", 2)], &[("web-abc", 3)]);
        tracker.current(&key(), cached(&[("web-abc", 3)]));
        assert_eq!(tracker.pending(), 0);
    }
}
