//! Kubernetes Events with stable reasons, published through kube-runtime's recorder.
//!
//! Publishing an Event never fails a reconcile: a lost Event is logged and counted, the
//! controller's own work goes on.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::metrics::SharedMetrics;

/// The longest note the Events API accepts (`events.k8s.io/v1`: 1 kB); an Event with a
/// longer one is refused, and the user would see nothing at all.
pub const MAX_NOTE_BYTES: usize = 1024;

/// `note` cut to [`MAX_NOTE_BYTES`] on a character boundary, ending in `…` when cut. Notes
/// quote user input (an annotation may be kilobytes long), so they are cut here, once.
pub fn fit_note(mut note: String) -> String {
    const ELLIPSIS: &str = "…";
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let mut end = MAX_NOTE_BYTES - ELLIPSIS.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(ELLIPSIS);
    note
}

/// Publishes Events on behalf of one controller.
#[derive(Clone)]
pub struct EventSink {
    recorder: std::sync::Arc<Recorder>,
    controller: &'static str,
    metrics: SharedMetrics,
}

impl EventSink {
    /// A sink reporting as `signpost-<controller>`, from this process's instance name.
    pub fn new(
        client: Client,
        controller: &'static str,
        instance: Option<String>,
        metrics: SharedMetrics,
    ) -> Self {
        let reporter = Reporter {
            controller: format!("signpost-{controller}"),
            instance,
        };
        Self {
            recorder: std::sync::Arc::new(Recorder::new(client, reporter)),
            controller,
            metrics,
        }
    }

    /// A Warning Event on `regarding`; also counted in the `problems` metric.
    pub async fn warn(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.metrics.problem(self.controller, reason);
        self.publish(regarding, EventType::Warning, reason, action, note)
            .await;
    }

    /// A Normal Event on `regarding`.
    pub async fn normal(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(regarding, EventType::Normal, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let note = fit_note(note);
        tracing::info!(
            controller = self.controller,
            object = %format!("{}/{}", regarding.namespace.as_deref().unwrap_or(""), regarding.name.as_deref().unwrap_or("")),
            reason,
            %note,
            "event"
        );
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(controller = self.controller, reason, %error, "could not publish Event");
        }
    }
}

/// Failed attempts in a row after which a failing write is reported: a first failure (a
/// conflict retried from fresh state, one refused request) usually heals on the retry, and a
/// Warning per retry would bury the one that matters.
pub const REPORT_AFTER_FAILURES: u32 = 3;

/// Each key's failed syncs in a row, so that a Warning goes out once per failure streak (as
/// it reaches its threshold), not once per retry.
#[derive(Debug)]
pub struct FailureStreaks<K> {
    threshold: u32,
    counts: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> FailureStreaks<K> {
    /// Streaks reported when they reach `threshold` failures (at least 1).
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, u32>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt for `key` failed: whether this is the failure to report (the streak's
    /// `threshold`-th).
    pub fn failed(&self, key: &K) -> bool {
        let mut counts = self.lock();
        let count = counts.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count == self.threshold
    }

    /// An attempt for `key` succeeded, or the key is gone: its streak ends.
    pub fn ended(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Records the outcome of an attempt for `key`: whether it is the failure to report.
    pub fn record<T, E>(&self, key: &K, outcome: &Result<T, E>) -> bool {
        match outcome {
            Ok(_) => {
                self.ended(key);
                false
            }
            Err(_) => self.failed(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_streak_is_reported_once_when_it_reaches_the_threshold() {
        let streaks = FailureStreaks::new(3);
        let failed: Result<(), ()> = Err(());
        let reported: Vec<bool> = (0..6).map(|_| streaks.record(&"web", &failed)).collect();
        assert_eq!(reported, [false, false, true, false, false, false]);
        assert!(
            !streaks.record(&"api", &failed),
            "each key has its own streak"
        );
        // A success ends the streak; the next one is reported again.
        assert!(!streaks.record(&"web", &Ok::<(), ()>(())));
        let again: Vec<bool> = (0..3).map(|_| streaks.record(&"web", &failed)).collect();
        assert_eq!(again, [false, false, true]);
    }

    #[test]
    fn a_threshold_of_one_reports_the_first_failure() {
        let streaks = FailureStreaks::new(0);
        assert!(streaks.failed(&1));
        assert!(!streaks.failed(&1));
        streaks.ended(&1);
        assert!(streaks.failed(&1));
    }

    #[test]
    fn a_long_note_is_cut_to_the_api_limit_on_a_character_boundary() {
        assert_eq!(fit_note("short".into()), "short");
        let exact = "x".repeat(MAX_NOTE_BYTES);
        assert_eq!(fit_note(exact.clone()), exact);
        let cut = fit_note("9".repeat(60_000));
        assert!(
            cut.len() <= MAX_NOTE_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        // Multi-byte characters are never split.
        let cut = fit_note("é".repeat(1_000));
        assert!(cut.len() <= MAX_NOTE_BYTES && cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
