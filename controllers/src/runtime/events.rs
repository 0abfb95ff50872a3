//! Kubernetes Events with stable reasons, published through kube-runtime's recorder.
//!
//! Publishing an Event never fails a reconcile: a lost Event is logged and counted, the
//! controller's own work goes on.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::metrics::SharedMetrics;

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
