//! The pods' side: each pod's address on `pods0` and a server answering there.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Handle;

use super::POD_PORT;

/// The fixed answer of backend `index`: the same length for every backend, so the proxied and
/// direct paths move the same bytes whoever answers.
pub(crate) fn response(index: usize) -> Vec<u8> {
    let body = format!("backend-{index}\n");
    format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Adds `ip` to `pods0` (made by `e2e/netns/up.sh`); an address already there is fine.
pub(crate) fn add_pod_address(ip: IpAddr) -> anyhow::Result<()> {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    let output = std::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/{prefix}"), "dev", "pods0"])
        .output()
        .context("running ip addr add (is this inside the benchmark's network namespace?)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && !stderr.contains("File exists") {
        bail!("ip addr add {ip} dev pods0: {}", stderr.trim());
    }
    Ok(())
}

/// A server on `ip:9376` answering every request with `response(index)` and closing, on the
/// `servers` runtime (its own threads, as a pod is not in its client's process).
pub(crate) async fn serve(servers: &Handle, ip: IpAddr, index: usize) -> anyhow::Result<()> {
    add_pod_address(ip)?;
    // Bound on the servers' runtime, so its sockets belong to that runtime's reactor.
    let listener = servers
        .spawn(TcpListener::bind(SocketAddr::new(ip, POD_PORT)))
        .await?
        .with_context(|| format!("listening on {ip}:{POD_PORT}"))?;
    let answer: Arc<[u8]> = response(index).into();
    servers.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: give the clients a moment to close some.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = Vec::with_capacity(64);
                let mut buf = [0u8; 256];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(())
}
