//! A minimal forwarder for names outside the cluster domain (`--upstream`).
//!
//! The client's query goes to the upstream as it came (same ID, flags and EDNS), over UDP;
//! a truncated reply is fetched again over TCP. No cache, no retries across servers: this is a
//! reference consumer, and a node-local resolver or CoreDNS in front does that better. Without
//! `--upstream` such names are REFUSED.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why a forwarded query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// A socket error.
    #[error("upstream: {0}")]
    Io(#[from] std::io::Error),
    /// The upstream's reply is not a DNS message.
    #[error("upstream sent an unreadable reply: {0}")]
    Malformed(String),
}

impl ForwardError {
    /// The `result` label of the forwarding metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardError::Timeout(_) => "timeout",
            ForwardError::Io(_) | ForwardError::Malformed(_) => "error",
        }
    }
}

/// Sends the raw query `query` to `upstream` and returns its reply (over TCP when the UDP
/// reply was truncated), within `timeout` for each transport.
pub async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> Result<Message, ForwardError> {
    let id = query
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| ForwardError::Malformed("query shorter than a header".into()))?;
    let reply = tokio::time::timeout(timeout, udp(upstream, query, id))
        .await
        .map_err(|_| ForwardError::Timeout(timeout))??;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    tokio::time::timeout(timeout, tcp(upstream, query))
        .await
        .map_err(|_| ForwardError::Timeout(timeout))?
}

async fn udp(upstream: SocketAddr, query: &[u8], id: u16) -> Result<Message, ForwardError> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A stray datagram (an old reply) is not ours: keep waiting for the right ID.
        if let Ok(reply) = Message::from_vec(&buf[..n])
            && reply.metadata.id == id
        {
            return Ok(reply);
        }
    }
}

async fn tcp(upstream: SocketAddr, query: &[u8]) -> Result<Message, ForwardError> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| ForwardError::Malformed("query longer than 65535 bytes".into()))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(|e| ForwardError::Malformed(e.to_string()))
}
