//! What a new client, or a new process, takes to fill every cache Signpost keeps: the yardstick
//! of a restart's time until ready.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, Client};
use signpost_e2e::client;

/// How a new client fills caches of every collection Signpost caches (Services, Pods,
/// EndpointSlices, Endpoints, Nodes, ServiceIPs, DNSRecords), all at once, as a starting
/// process does: paged lists (500 objects a page, as kube's and client-go's informers by
/// default), or streaming lists (one watch per kind that starts with the current objects).
#[derive(Clone, Copy)]
pub(crate) enum CacheFill {
    Paged,
    Streaming,
    /// Paged lists with the pods' pages in protobuf, as `signpost run` lists them; the pods
    /// are not decoded at all (only each page's continue token is read), so this is the least
    /// such a list can take.
    PagedPodsProtobuf,
}

impl CacheFill {
    const ALL: [CacheFill; 3] = [
        CacheFill::Paged,
        CacheFill::Streaming,
        CacheFill::PagedPodsProtobuf,
    ];

    /// The fill a `--fill-once` value names (the inverse of [`CacheFill::flag_value`]).
    pub(crate) fn from_flag(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|fill| fill.flag_value() == value)
    }

    /// The value of `--fill-once` that fills this way in a child process.
    fn flag_value(self) -> &'static str {
        match self {
            CacheFill::Paged => "paged",
            CacheFill::Streaming => "streaming",
            CacheFill::PagedPodsProtobuf => "protobuf",
        }
    }
}

/// The time a new client takes to fill every cache Signpost keeps, one way.
pub(crate) async fn cache_fill_time(how: CacheFill) -> anyhow::Result<Duration> {
    async fn list_all<K>(api: Api<K>, how: CacheFill) -> anyhow::Result<usize>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        if let CacheFill::Streaming = how {
            let mut events = watcher(api, watcher::Config::default().streaming_lists()).boxed();
            let mut count = 0;
            while let Some(event) = events.try_next().await? {
                match event {
                    watcher::Event::InitApply(_) => count += 1,
                    watcher::Event::InitDone => return Ok(count),
                    _ => {}
                }
            }
            bail!("the watch ended before its initial objects were complete");
        }
        let mut params = ListParams::default().limit(500);
        let mut count = 0;
        loop {
            let page = api.list(&params).await?;
            count += page.items.len();
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(count),
            }
        }
    }
    async fn list_pods(client: Client, how: CacheFill) -> anyhow::Result<usize> {
        match how {
            CacheFill::PagedPodsProtobuf => list_pods_protobuf(client).await,
            _ => list_all(Api::<Pod>::all(client), how).await,
        }
    }
    let start = Instant::now();
    let client = client().await?;
    futures::try_join!(
        list_all(Api::<Service>::all(client.clone()), how),
        list_pods(client.clone(), how),
        list_all(Api::<EndpointSlice>::all(client.clone()), how),
        list_all(Api::<Endpoints>::all(client.clone()), how),
        list_all(
            Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()),
            how
        ),
        list_all(Api::<signpost_crds::ServiceIP>::all(client.clone()), how),
        list_all(Api::<signpost_crds::DNSRecord>::all(client.clone()), how),
    )?;
    Ok(start.elapsed())
}

/// Lists every pod in pages of 500 as protobuf and returns the number of pages.
pub(crate) async fn list_pods_protobuf(client: Client) -> anyhow::Result<usize> {
    let request = kube::core::Request::new("/api/v1/pods");
    let mut params = ListParams::default().limit(500);
    let mut pages = 0;
    loop {
        let mut page = request.list(&params)?.map(kube::client::Body::from);
        page.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        let response = client.send(page).await?;
        let status = response.status();
        let body = response.into_body().collect_bytes().await?;
        if !status.is_success() {
            bail!("listing pods as protobuf: HTTP {status}");
        }
        pages += 1;
        match protobuf_continue_token(&body).context("reading a protobuf pod list")? {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(pages),
        }
    }
}

/// The continue token of a protobuf list response: `k8s\0`, then the envelope's field 2 (the
/// list), its field 1 (`ListMeta`), and that one's field 3.
pub(crate) fn protobuf_continue_token(body: &[u8]) -> anyhow::Result<Option<String>> {
    /// The first length-delimited field `number` of a message, skipping the others.
    fn field(mut message: &[u8], number: u64) -> anyhow::Result<Option<&[u8]>> {
        fn varint(buf: &mut &[u8]) -> anyhow::Result<u64> {
            let mut value = 0;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = buf.split_first().context("truncated varint")?;
                *buf = rest;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Ok(value);
                }
            }
            bail!("varint too long")
        }
        while !message.is_empty() {
            let key = varint(&mut message)?;
            let len = match key & 7 {
                0 => {
                    varint(&mut message)?;
                    continue;
                }
                1 => 8,
                2 => usize::try_from(varint(&mut message)?)?,
                5 => 4,
                other => bail!("wire type {other}"),
            };
            let value = message.get(..len).context("truncated field")?;
            message = &message[len..];
            if key >> 3 == number && key & 7 == 2 {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
    let inner = body.strip_prefix(b"k8s\0").context("no k8s\\0 prefix")?;
    let list = field(inner, 2)?.context("no list in the envelope")?;
    let Some(meta) = field(list, 1)? else {
        return Ok(None);
    };
    let token = field(meta, 3)?.map(|t| String::from_utf8_lossy(t).into_owned());
    Ok(token.filter(|t| !t.is_empty()))
}

/// Start to exit of a new process (this program with `--fill-once`) that fills every cache
/// Signpost keeps with paged lists (the pods as JSON or as protobuf): the fixed cost of
/// starting a process, a client and its connections included, as in a restart.
pub(crate) async fn fill_in_new_process(how: CacheFill) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--fill-once", how.flag_value()])
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("the fill-once process failed: {status}");
    }
    Ok(started.elapsed())
}
