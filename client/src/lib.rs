//! The Kubernetes API client of every Signpost process (controllers, DNS, proxy, and the
//! benchmarks' bare clients).
//!
//! kube's own client leaves Nagle's algorithm on for its connections to the API server. A
//! TLS handshake or request then written in more than one piece waits for the API server's
//! delayed ACK (40 ms on Linux) before its last piece leaves: measured here as one cache of
//! the eight a start-up fills arriving ~35 ms after the others in about half of the
//! restarts (docs/performance.md, "TCP_NODELAY on the API connections"). client-go's
//! connections have `TCP_NODELAY`; so do these. Everything else is kube's stack as kube
//! builds it from a [`kube::Config`]: timeouts, base URI, retries of 429/503/504,
//! authentication, extra headers.

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config` whose connections set `TCP_NODELAY`.
///
/// A configuration with a proxy gets kube's own client (its proxy connectors are not
/// public), so it keeps working, with Nagle's algorithm on.
pub fn build(config: kube::Config) -> Result<kube::Client, kube::Error> {
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config);
    }
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let tls = config.rustls_https_connector_with_connector(tcp)?;
    let mut connector = TimeoutConnector::new(tls);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The hand-built stack still does what kube's does with a config: requests go to the
    /// cluster URL's path with the config's extra headers, and answers are decoded.
    #[tokio::test]
    async fn requests_carry_the_configs_base_path_and_headers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed before a whole request head");
                head.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let mut config =
            kube::Config::new(format!("http://127.0.0.1:{port}/prefix").parse().unwrap());
        config
            .headers
            .push(("x-signpost-test".parse().unwrap(), "yes".parse().unwrap()));
        let client = build(config).unwrap();
        let namespace = kube::Api::<Namespace>::all(client).get("x").await.unwrap();
        assert_eq!(namespace.metadata.name.as_deref(), Some("x"));
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /prefix/api/v1/namespaces/x http/1.1\r\n"),
            "request head: {head}"
        );
        assert!(
            head.contains("\r\nx-signpost-test: yes\r\n"),
            "request head: {head}"
        );
    }
}
