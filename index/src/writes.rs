//! Remembers the EndpointSlice writes the controller made, so it never plans from a cache
//! that has not caught up with them.
//!
//! Planning from a cache that still shows a slice as it was before our own update would undo
//! that update (or create a duplicate slice). So every write records the generation the API
//! server returned, every delete records the name, and a Service whose cached slices are older
//! than that waits for the watch to deliver them.

use std::collections::HashMap;
use std::time::Instant;

use signpost_core::keys::ServiceKey;

#[derive(Debug, Default)]
struct Writes {
    /// Slice name → generation our last write produced, and when.
    written: HashMap<String, (i64, Instant)>,
    /// Slices we deleted that the cache may still show, and when.
    deleted: HashMap<String, Instant>,
}

/// What the controller wrote, per Service.
#[derive(Debug, Default)]
pub struct WriteTracker {
    services: HashMap<ServiceKey, Writes>,
}

impl WriteTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A create or update of slice `name` returned `generation`.
    pub fn wrote(&mut self, service: &ServiceKey, name: &str, generation: i64) {
        let writes = self.services.entry(service.clone()).or_default();
        writes.deleted.remove(name);
        writes
            .written
            .insert(name.to_string(), (generation, Instant::now()));
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
        }
    }

    /// Whether `cached` (name, generation of every slice the cache holds for the Service) is
    /// older than our writes. Forgets the writes the cache has caught up with.
    pub fn is_stale(&mut self, service: &ServiceKey, cached: &[(String, i64)]) -> bool {
        let Some(writes) = self.services.get_mut(service) else {
            return false;
        };
        let generation_of = |name: &str| cached.iter().find(|(n, _)| n == name).map(|(_, g)| *g);
        writes
            .written
            .retain(|name, (written, _)| generation_of(name).is_none_or(|g| g < *written));
        writes
            .deleted
            .retain(|name, _| generation_of(name).is_some());
        let stale = !writes.written.is_empty() || !writes.deleted.is_empty();
        if !stale {
            self.services.remove(service);
        }
        stale
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
            !writes.written.is_empty() || !writes.deleted.is_empty()
        });
    }

    /// Drops everything about a Service that is gone.
    pub fn forget(&mut self, service: &ServiceKey) {
        self.services.remove(service);
    }

    /// Number of Services with writes the cache has not shown yet.
    pub fn pending(&self) -> usize {
        self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("demo", "web")
    }

    #[test]
    fn a_slice_deleted_while_the_watch_was_down_is_not_waited_for_after_a_relist() {
        let mut tracker = WriteTracker::new();
        tracker.wrote(&key(), "web-abc", 3);
        // The watch broke before it showed the write; someone deleted the slice meanwhile.
        assert!(tracker.is_stale(&key(), &cached(&[])));
        let began = Instant::now();
        tracker.relisted(began, |_, _| false);
        assert!(
            !tracker.is_stale(&key(), &cached(&[])),
            "the relisted cache is the truth: the slice is gone"
        );
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_write_after_the_relist_began_is_still_waited_for() {
        let mut tracker = WriteTracker::new();
        let began = Instant::now();
        tracker.wrote(&key(), "web-new", 1);
        tracker.deleted(&key(), "web-old");
        tracker.relisted(began, |_, _| false);
        assert!(tracker.is_stale(&key(), &cached(&[("web-old", 4)])));
        assert!(!tracker.is_stale(&key(), &cached(&[("web-new", 1)])));
    }

    #[test]
    fn a_relist_that_shows_the_slice_keeps_comparing_generations() {
        let mut tracker = WriteTracker::new();
        tracker.wrote(&key(), "web-abc", 3);
        tracker.relisted(Instant::now(), |_, name| name == "web-abc");
        assert!(tracker.is_stale(&key(), &cached(&[("web-abc", 2)])));
        assert!(!tracker.is_stale(&key(), &cached(&[("web-abc", 3)])));
    }

    fn cached(slices: &[(&str, i64)]) -> Vec<(String, i64)> {
        slices.iter().map(|(n, g)| (n.to_string(), *g)).collect()
    }

    #[test]
    fn a_cache_behind_our_update_is_stale_until_it_catches_up() {
        let mut tracker = WriteTracker::new();
        tracker.wrote(&key(), "web-abc", 3);
        assert!(tracker.is_stale(&key(), &cached(&[("web-abc", 2)])));
        assert!(!tracker.is_stale(&key(), &cached(&[("web-abc", 3)])));
        assert_eq!(tracker.pending(), 0, "caught-up writes are forgotten");
    }

    #[test]
    fn a_created_slice_missing_from_the_cache_is_stale() {
        let mut tracker = WriteTracker::new();
        tracker.wrote(&key(), "web-new", 1);
        assert!(tracker.is_stale(&key(), &cached(&[])));
        assert!(!tracker.is_stale(&key(), &cached(&[("web-new", 1)])));
    }

    #[test]
    fn a_deleted_slice_still_cached_is_stale() {
        let mut tracker = WriteTracker::new();
        tracker.deleted(&key(), "web-old");
        assert!(tracker.is_stale(&key(), &cached(&[("web-old", 4)])));
        assert!(!tracker.is_stale(&key(), &cached(&[])));
    }

    #[test]
    fn a_watched_deletion_clears_what_we_waited_for() {
        let mut tracker = WriteTracker::new();
        tracker.wrote(&key(), "web-abc", 3);
        tracker.observed_deletion(&key(), "web-abc");
        assert!(!tracker.is_stale(&key(), &cached(&[])));
    }

    #[test]
    fn untracked_services_are_never_stale() {
        let mut tracker = WriteTracker::new();
        assert!(!tracker.is_stale(&key(), &cached(&[("web-x", 1)])));
    }
}
