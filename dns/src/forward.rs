//! A minimal forwarder for names outside the cluster domain (`--upstream`).
//!
//! The client's query goes to the upstream as it came (same ID, flags and EDNS), over UDP;
//! a truncated reply is fetched again over TCP. No cache, no retries across servers: this is a
//! reference consumer, and a node-local resolver or CoreDNS in front does that better. Without
//! `--upstream` such names are REFUSED.
//!
//! **Bounded.** Each forwarded query holds a socket (UDP, then TCP when the reply was
//! truncated) until the upstream answers or the query's deadline passes. An upstream that
//! stops answering would otherwise make every query pile up a socket and a task: measured
//! before the bound, 2,000 queries to a black hole held 2,017 descriptors and 87 MB. A
//! [`Forwarder`] lets at most `max_in_flight` queries wait on the upstream at once; the ones
//! beyond get [`ForwardError::Busy`] at once (the client gets SERVFAIL and may retry), so a
//! slow upstream costs a fixed number of sockets, never memory proportional to the load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// Default of `--max-upstream-in-flight`: enough for thousands of queries per second to an
/// upstream answering in tens of milliseconds, few enough sockets for any `ulimit -n`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Why a forwarded query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// As many queries as allowed are already waiting on the upstream: this one is shed.
    #[error("{0} queries already waiting on the upstream")]
    Busy(usize),
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
            ForwardError::Busy(_) => "shed",
            ForwardError::Io(_) | ForwardError::Malformed(_) => "error",
        }
    }
}

/// Forwards queries to one upstream with at most a fixed number in flight.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstream: SocketAddr,
    timeout: Duration,
    max_in_flight: usize,
    permits: Arc<Semaphore>,
}

impl Forwarder {
    /// A forwarder to `upstream` letting `max_in_flight` queries (at least 1) wait on it at
    /// once, each for at most `timeout` in all (UDP and the TCP retry together).
    pub fn new(upstream: SocketAddr, max_in_flight: usize, timeout: Duration) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            upstream,
            timeout,
            max_in_flight,
            permits: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// The upstream's address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Queries waiting on the upstream now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Sends the raw query `query` upstream and returns its reply (over TCP when the UDP
    /// reply was truncated); [`ForwardError::Busy`] at once when the bound is reached.
    pub async fn exchange(&self, query: &[u8]) -> Result<Message, ForwardError> {
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_| ForwardError::Busy(self.max_in_flight))?;
        tokio::time::timeout(self.timeout, exchange(self.upstream, query))
            .await
            .map_err(|_| ForwardError::Timeout(self.timeout))?
    }
}

/// Sends the raw query `query` to `upstream` and returns its reply, over TCP when the UDP
/// reply was truncated. No deadline of its own: [`Forwarder::exchange`] puts one around it.
async fn exchange(upstream: SocketAddr, query: &[u8]) -> Result<Message, ForwardError> {
    let id = query
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| ForwardError::Malformed("query shorter than a header".into()))?;
    let reply = udp(upstream, query, id).await?;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    tcp(upstream, query).await
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
