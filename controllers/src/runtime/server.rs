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

    /// `(alive, explanation)`: not alive once a controller task of the leader ended on its own.
    pub fn liveness(&self) -> (bool, String) {
        match &*self.lock() {
            Role::Leading(readiness) => match readiness.ended() {
                Some(task) => (false, format!("the {task} task stopped")),
                None => (true, "ok".into()),
            },
            _ => (true, "ok".into()),
        }
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
        .route("/healthz", {
            let health = health.clone();
            get(move || {
                let health = health.clone();
                async move {
                    let (alive, why) = health.liveness();
                    let code = if alive {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    };
                    (code, why)
                }
            })
        })
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

/// Runs [`serve`] on a thread and runtime of its own. At start-up every controller queues all
/// of its objects at once, and on the shared runtime a probe then waited for that pass (about
/// 5 ms at 1,000 pods, longer at scale); on its own thread `/readyz` answers as soon as the
/// caches are synced, and a liveness probe is never failed by a busy reconcile pass.
pub fn serve_on_own_thread(
    addr: SocketAddr,
    metrics: SharedMetrics,
    health: Health,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signpost-http".into())
        .spawn(move || {
            if let Err(error) = runtime.block_on(serve(addr, metrics, health)) {
                tracing::error!(%addr, %error, "serving /metrics, /healthz and /readyz stopped");
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;
    use crate::runtime::metrics::Metrics;

    /// A probe is answered while the runtime that started the server is blocked, as every
    /// worker is during a start-up reconcile pass: this test's runtime has one thread, and the
    /// probe below blocks it until the answer arrives.
    #[tokio::test(flavor = "current_thread")]
    async fn readyz_answers_while_the_starting_runtime_is_blocked() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        serve_on_own_thread(addr, Arc::new(Metrics::new()), Health::default())
            .expect("the server thread starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let probe = std::net::TcpStream::connect(addr).and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n")?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                Ok(answer)
            });
            match probe {
                Ok(answer) => break answer,
                Err(error) if std::time::Instant::now() > deadline => {
                    panic!("no answer from /readyz on {addr} within 10 s: {error}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        assert!(
            answer.starts_with("HTTP/1.0 503") && answer.ends_with("starting"),
            "a replica that has not started its controllers is not ready; got {answer:?}"
        );
    }
}
