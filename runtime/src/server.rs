//! The HTTP endpoints every replica serves: `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    Leading(super::health::Readiness),
}

impl Health {
    /// This replica stands by.
    pub fn standby(&self) {
        *self.lock() = Role::Standby;
    }

    /// This replica leads, with the given controllers.
    pub fn leading(&self, readiness: super::health::Readiness) {
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
    serve_on(TcpListener::bind(addr).await?, metrics, health).await
}

/// [`serve`] on a listener already bound.
pub async fn serve_on(
    listener: TcpListener,
    metrics: SharedMetrics,
    health: Health,
) -> std::io::Result<()> {
    let alive = health.clone();
    let app = probe_router(
        metrics,
        move || alive.liveness(),
        move || {
            let (ready, why) = health.readiness();
            (ready, why.to_string())
        },
    );
    serve_router(listener, app).await
}

/// The three endpoints every Signpost process serves: `/metrics` (OpenMetrics text),
/// `/healthz` and `/readyz`. Each probe answers what its function says: 200 when it passes,
/// else 500 (`/healthz`: the kubelet restarts the process) or 503 (`/readyz`: no traffic, no
/// leadership), the explanation as the body.
pub fn probe_router<A, R>(metrics: SharedMetrics, alive: A, ready: R) -> Router
where
    A: Fn() -> (bool, String) + Clone + Send + Sync + 'static,
    R: Fn() -> (bool, String) + Clone + Send + Sync + 'static,
{
    Router::new()
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
        .route("/healthz", probe(alive, StatusCode::INTERNAL_SERVER_ERROR))
        .route("/readyz", probe(ready, StatusCode::SERVICE_UNAVAILABLE))
}

/// One probe of [`probe_router`]: 200 when `check` passes, else `failing`, with the
/// explanation as the body.
fn probe<C>(check: C, failing: StatusCode) -> MethodRouter
where
    C: Fn() -> (bool, String) + Clone + Send + Sync + 'static,
{
    get(move || {
        let (passes, why) = check();
        let code = if passes { StatusCode::OK } else { failing };
        async move { (code, why) }
    })
}

/// Binds `addr` and runs `serve` on the listener as a task of its own, logging if it ever
/// stops; returns the address bound (port 0 resolved) and the task. Every process that serves
/// probes on a flag's address starts them so.
pub async fn spawn_listener<F, Fut>(
    addr: SocketAddr,
    serve: F,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let served = serve(listener);
    let task = tokio::spawn(async move {
        if let Err(error) = served.await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok((bound, task))
}

/// How long a client may take to send the headers of a request, and on a kept-alive connection
/// to start the next one. hyper's timer for this starts when it waits for a request head, so a
/// client that connects and sends nothing, or half a header, is disconnected after this.
/// Probes and scrapers send their whole request at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection is served, whatever it does: a client reading the answer (or
/// sending a body) a byte at a time cannot hold a connection for longer.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Connections served at once; beyond, new ones are closed as soon as they are accepted, so
/// a flood of idle connections costs a bounded number of descriptors and tasks. Probes and a
/// few scrapers need a handful.
pub const MAX_CONNECTIONS: usize = 128;

/// Serves `router` on `listener` over HTTP/1 with [`HEADER_READ_TIMEOUT`],
/// [`CONNECTION_LIFETIME`] and at most [`MAX_CONNECTIONS`] at once. `axum::serve` has none of
/// these: a client that never finished its request held a connection (and a task) forever.
pub async fn serve_router(listener: TcpListener, router: Router) -> std::io::Result<()> {
    serve_connections(listener, router, |stream| async move { Ok(stream) }).await
}

/// [`serve_router`] over TLS with `config` (for the admission webhook, which the API server
/// only calls over HTTPS). The handshake counts against [`CONNECTION_LIFETIME`].
pub async fn serve_router_tls(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    serve_connections(listener, router, move |stream| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(stream).await }
    })
    .await
}

/// The connection loop of [`serve_router`] and [`serve_router_tls`]: `open` turns an accepted
/// TCP stream into the stream HTTP is spoken over.
async fn serve_connections<S, F, Fut>(
    listener: TcpListener,
    router: Router,
    open: F,
) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<S>> + Send,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("too many HTTP connections: closing a new one");
            drop(stream);
            continue;
        };
        let (http, router, open) = (http.clone(), router.clone(), open.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let served = async move {
                let stream = open(stream).await?;
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                    .await
                    .map_err(std::io::Error::other)
            };
            match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "HTTP connection ended"),
                Err(_) => tracing::debug!("HTTP connection closed after its lifetime"),
            }
        });
    }
}

/// A TLS server configuration from a PEM certificate chain and a PEM private key (files a
/// Secret or the chart provides), with the ring provider kube's client uses too.
pub fn tls_config(
    cert_chain: &std::path::Path,
    private_key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_chain)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsConfigError::Pem(cert_chain.display().to_string(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem(
            cert_chain.display().to_string(),
            "no certificate in it".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| TlsConfigError::Pem(private_key.display().to_string(), e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsConfigError::Rustls)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(TlsConfigError::Rustls)?;
    Ok(Arc::new(config))
}

/// Why [`tls_config`] could not build a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file is missing or holds no usable PEM.
    #[error("{0}: {1}")]
    Pem(String, String),
    /// The certificate and key do not make a configuration (a key that does not match).
    #[error("{0}")]
    Rustls(#[source] rustls::Error),
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
    use crate::metrics::Metrics;

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

    /// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into a
    /// fresh directory: (directory, certificate path, key path, certificate DER).
    fn self_signed() -> (
        std::path::PathBuf,
        std::path::PathBuf,
        std::path::PathBuf,
        Vec<u8>,
    ) {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("a certificate");
        let dir = std::env::temp_dir().join(format!(
            "signpost-tls-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, generated.cert.pem()).expect("the certificate");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("the key");
        (dir, cert, key, generated.cert.der().to_vec())
    }

    /// The TLS server answers a client that trusts its certificate, over HTTP/1.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tls_server_answers_over_https() {
        let (dir, cert, key, der) = self_signed();
        let config = tls_config(&cert, &key).expect("a TLS configuration");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let router = Router::new().route("/ping", get(|| async { "pong" }));
        let server = tokio::spawn(serve_router_tls(listener, router, config));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.into()).expect("the certificate as a root");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let mut tls = connector.connect(name, tcp).await.expect("a TLS handshake");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET /ping HTTP/1.0\r\n\r\n")
            .await
            .expect("a request");
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.ok();
        assert!(
            answer.starts_with("HTTP/1.0 200") && answer.ends_with("pong"),
            "{answer:?}"
        );
        server.abort();
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_or_mismatched_certificate_is_refused_with_its_path() {
        let (dir, cert, key, _) = self_signed();
        let missing = dir.join("absent.crt");
        let error = tls_config(&missing, &key).unwrap_err().to_string();
        assert!(error.contains("absent.crt"), "{error}");
        // The key of another certificate does not go with this one.
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let other_key = dir.join("other.key");
        std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
        assert!(
            tls_config(&cert, &other_key).is_err(),
            "a key that does not match"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// The controller's HTTP server drops clients that connect and stall.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_clients_are_disconnected_within_seconds() {
        crate::testing::assert_server_drops_stalled_clients("controller HTTP server", |l| {
            serve_on(l, Arc::new(Metrics::new()), Health::default())
        })
        .await;
    }
}
