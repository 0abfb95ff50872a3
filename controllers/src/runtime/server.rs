//! The HTTP endpoints every replica serves: `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use super::metrics::SharedMetrics;

/// What `/readyz` reports.
#[derive(Clone, Default)]
pub struct Health {
    state: Arc<Mutex<Role>>,
}

#[derive(Clone, Default)]
enum Role {
    /// Starting, before the leader election ran once.
    #[default]
    Starting,
    /// Another replica leads; this one waits, ready to take over.
    Standby,
    /// Leading; ready once every controller has synced and done its start-up work.
    Leading(crate::app::Readiness),
}

impl Health {
    /// This replica stands by.
    pub fn standby(&self) {
        *self.lock() = Role::Standby;
    }

    /// This replica leads, with the given controllers.
    pub fn leading(&self, readiness: crate::app::Readiness) {
        *self.lock() = Role::Leading(readiness);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Role> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `(ready, explanation)`.
    pub fn readiness(&self) -> (bool, &'static str) {
        match &*self.lock() {
            Role::Starting => (false, "starting"),
            Role::Standby => (true, "standby: another replica leads"),
            Role::Leading(readiness) if readiness.is_ready() => (true, "leading: caches synced"),
            Role::Leading(_) => (false, "leading: caches syncing"),
        }
    }
}

/// Serves the endpoints on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: SharedMetrics,
    health: Health,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    let (ready, why) = health.readiness();
                    let code = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, why)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
