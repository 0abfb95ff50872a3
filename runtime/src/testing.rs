//! Helpers for tests of code built on the runtime, in this crate and the ones above it
//! (feature `testing`, which their dev-dependencies turn on).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::protobuf::ENVELOPE_PREFIX;

/// Encodes a length-delimited field, for building messages in tests.
pub fn bytes_field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(u64::from(number) << 3 | 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

/// Encodes a varint field.
pub fn varint_field(number: u32, value: u64) -> Vec<u8> {
    let mut out = varint(u64::from(number) << 3);
    out.extend(varint(value));
    out
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Wraps a message in the `k8s\0` envelope, as the API server sends objects.
pub fn envelope(api_version: &str, kind: &str, message: &[u8]) -> Vec<u8> {
    let mut type_meta = bytes_field(1, api_version.as_bytes());
    type_meta.extend(bytes_field(2, kind.as_bytes()));
    let mut out = ENVELOPE_PREFIX.to_vec();
    out.extend(bytes_field(1, &type_meta));
    out.extend(bytes_field(2, message));
    out
}

/// Connects three clients to `addr` that stall: one sends nothing, one half a header, one
/// a whole request and then nothing (on a kept-alive connection). Asserts the server closes
/// each within `within`, and returns how long each took.
pub fn assert_stalled_clients_are_dropped(addr: SocketAddr, within: Duration) -> Vec<Duration> {
    let sends: [&[u8]; 3] = [
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: loc",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    let clients: Vec<_> = sends
        .into_iter()
        .map(|send| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                stream
                    .set_read_timeout(Some(within + Duration::from_secs(5)))
                    .expect("a read timeout");
                let started = std::time::Instant::now();
                stream.write_all(send).expect("send");
                // Read whatever comes (the answer to a whole request) until the server
                // closes the connection, or give up after the read timeout.
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => return Ok(started.elapsed()),
                        Ok(_) => {}
                        Err(error)
                            if matches!(
                                error.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Err(format!(
                                "{:?}: still open after {:?}",
                                String::from_utf8_lossy(send),
                                started.elapsed()
                            ));
                        }
                        Err(_) => return Ok(started.elapsed()),
                    }
                }
            })
        })
        .collect();
    let took: Vec<Duration> = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    for t in &took {
        assert!(*t <= within, "a stalled client was served for {t:?}");
    }
    took
}

/// Starts `serve` on a fresh loopback listener and asserts (with
/// [`assert_stalled_clients_are_dropped`], 8 s) that it drops stalled clients: the test every
/// process's HTTP server gets. Prints how long it took, under `name`.
pub async fn assert_server_drops_stalled_clients<F, Fut>(name: &str, serve: F)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let server = tokio::spawn(serve(listener));
    let took = tokio::task::spawn_blocking(move || {
        assert_stalled_clients_are_dropped(addr, Duration::from_secs(8))
    })
    .await
    .expect("the clients");
    println!("{name}: stalled clients closed after {took:?}");
    server.abort();
}
