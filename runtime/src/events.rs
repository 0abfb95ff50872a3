//! Kubernetes Events with stable reasons, published through kube-runtime's recorder.
//!
//! Publishing an Event never fails a reconcile: a lost Event is logged and counted, the
//! controller's own work goes on.

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

#[cfg(test)]
mod tests {
    use super::*;

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
