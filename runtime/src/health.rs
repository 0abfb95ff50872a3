//! Readiness (`/readyz`) and liveness (`/healthz`) of the controllers a process runs.
//!
//! Each controller says when it is ready through a watch channel; each long-lived task runs
//! under [`Liveness::watch`], so a task that returns or panics while nothing asked it to stop
//! makes `/healthz` fail, and the kubelet restarts the process.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::watch;

/// Readiness of the running controllers, for `/readyz`, and their liveness, for `/healthz`.
#[derive(Clone)]
pub struct Readiness {
    controllers: Vec<watch::Receiver<bool>>,
    liveness: Liveness,
}

/// Which task of the controllers ended while nothing asked it to: a controller or watch loop
/// that is gone does no more work, and only a restart (the kubelet's, on `/healthz`) brings
/// it back.
#[derive(Clone, Default)]
pub struct Liveness {
    stopping: Arc<std::sync::atomic::AtomicBool>,
    ended: Arc<std::sync::Mutex<Option<&'static str>>>,
}

impl Liveness {
    /// The first task that ended on its own, if any.
    pub fn ended(&self) -> Option<&'static str> {
        *self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, tasks end because they are told to.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `work`, noting `name` if it ends (returns or panics) before [`Liveness::stop`].
    pub async fn watch(self, name: &'static str, work: impl Future<Output = ()>) {
        let outcome = std::panic::AssertUnwindSafe(work).catch_unwind().await;
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let how = if outcome.is_err() {
            "panicked"
        } else {
            "returned"
        };
        tracing::error!(
            task = name,
            how,
            "a controller task ended; /healthz now fails"
        );
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(name);
    }
}

impl Readiness {
    /// Ready when every receiver in `controllers` says so; alive while `liveness` has seen no
    /// task end on its own.
    pub fn new(controllers: Vec<watch::Receiver<bool>>, liveness: Liveness) -> Self {
        Self {
            controllers,
            liveness,
        }
    }

    /// The liveness the controllers' tasks report to.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// The first controller task that ended on its own, if any (`/healthz` then fails).
    pub fn ended(&self) -> Option<&'static str> {
        self.liveness.ended()
    }

    /// Whether every controller has synced its caches and done its start-up work.
    pub fn is_ready(&self) -> bool {
        self.controllers.iter().all(|r| *r.borrow())
    }

    /// Waits until ready.
    pub async fn wait(&mut self) {
        for ready in &mut self.controllers {
            let _ = ready.wait_for(|ready| *ready).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_on_its_own_is_reported_and_one_told_to_stop_is_not() {
        let liveness = Liveness::default();
        liveness.clone().watch("quiet", async {}).await;
        assert_eq!(liveness.ended(), Some("quiet"), "a loop that returned");

        let liveness = Liveness::default();
        tokio::spawn(
            liveness
                .clone()
                .watch("boom", async { panic!("on purpose") }),
        )
        .await
        .expect("the panic is caught inside");
        assert_eq!(liveness.ended(), Some("boom"), "a loop that panicked");

        let liveness = Liveness::default();
        liveness.stop();
        liveness.clone().watch("stopped", async {}).await;
        assert_eq!(liveness.ended(), None, "a loop stopped on purpose");
    }
}
