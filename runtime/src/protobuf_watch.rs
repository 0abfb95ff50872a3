//! List and watch one kind in the API server's protobuf encoding.
//!
//! kube's watcher speaks JSON only. For pods, the kind that dominates both the start-up list
//! and the watch traffic, the API server encodes a page as protobuf in under half the time and
//! a third of the bytes (docs/performance.md, "Pods as protobuf"), and kube-controller-manager
//! asks for protobuf for the same reason. [`ProtobufWatch`] does what kube's watcher does in
//! its default list-then-watch mode (paged list, watch from the list's version with bookmarks,
//! relist on `410 Gone`, backoff on errors) and hands the same [`watcher::Event`]s to its
//! caller, so an [`super::Informer`] treats both sources alike.

use std::time::Duration;

use http::header::{ACCEPT, HeaderValue};
use http_body_util::BodyExt;
use kube::Resource;
use kube::api::{ListParams, VersionMatch, WatchParams};
use kube::client::Body;
use kube::runtime::watcher::{self, ListSemantic};
use thiserror::Error;

use super::protobuf::{
    ApiFailure, Status, WireError, decode_list, decode_status, decode_watch_event,
    leading_continue_token, object_resource_version, open_envelope, split_frames,
};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const PROTOBUF_WATCH: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The watch timeout kube's watcher uses when none is configured.
const DEFAULT_WATCH_TIMEOUT: u32 = 290;

/// Turns one object's message (out of its envelope) into the cached type.
pub type Decode<K> = fn(&[u8]) -> Result<K, WireError>;

/// Why a list or watch ended early.
#[derive(Debug, Error)]
enum WatchError {
    #[error("request: {0}")]
    Request(#[from] kube::Error),
    #[error("building the request: {0}")]
    Build(#[from] kube::core::request::Error),
    #[error("{0}")]
    Failure(#[from] ApiFailure),
    #[error("the resource version is gone ({0}); listing again")]
    Gone(Status),
    #[error("no bytes for {0:?}; the connection is presumed dead")]
    Idle(Duration),
    #[error("the list has no resource version to watch from")]
    NoResourceVersion,
    #[error("a {0} event without a resource version")]
    EventWithoutVersion(String),
    #[error("unknown watch event type {0:?}")]
    EventType(String),
    #[error("a page request ended without a response: {0}")]
    Task(String),
}

impl From<WireError> for WatchError {
    fn from(error: WireError) -> Self {
        Self::Failure(ApiFailure::Wire(error))
    }
}

impl WatchError {
    /// A `Status` of 410: the version to continue from has been compacted away.
    fn from_status(status: Status) -> Self {
        if status.code == 410 {
            Self::Gone(status)
        } else {
            Self::Failure(ApiFailure::Status(status))
        }
    }
}

/// List-then-watch of one kind over protobuf.
pub struct ProtobufWatch<K> {
    client: kube::Client,
    request: kube::core::Request,
    config: watcher::Config,
    decode: Decode<K>,
    kind: String,
}

impl<K> ProtobufWatch<K>
where
    K: Resource + Clone,
    K::DynamicType: Default,
{
    /// A watch of what `api` covers (all namespaces or one), configured like kube's watcher.
    pub fn new(api: &kube::Api<K>, config: watcher::Config, decode: Decode<K>) -> Self {
        Self {
            client: api.clone().into_client(),
            request: kube::core::Request::new(api.resource_url()),
            config,
            decode,
            kind: K::kind(&K::DynamicType::default()).into_owned(),
        }
    }

    /// Lists and watches forever, passing every event to `on_event`: `Init`, `InitApply` for
    /// each listed object and `InitDone` for a (re)list, then `Apply` and `Delete` as the
    /// watch reports changes. Errors are logged and retried with backoff.
    pub async fn run(self, mut on_event: impl FnMut(watcher::Event<K>)) {
        let mut backoff = Backoff::default();
        let mut version: Option<String> = None;
        loop {
            let result = match version.as_mut() {
                None => self
                    .list(&mut on_event)
                    .await
                    .map(|listed| version = Some(listed)),
                Some(version) => self.watch(version, &mut on_event).await,
            };
            match result {
                Ok(()) => backoff.reset(),
                Err(WatchError::Gone(status)) => {
                    tracing::debug!(kind = %self.kind, %status, "watch expired; listing again");
                    version = None;
                }
                Err(error) => {
                    tracing::warn!(kind = %self.kind, %error, "watch failed; retrying with backoff");
                    backoff.wait().await;
                }
            }
        }
    }

    /// One full list, page by page; returns the version to watch from. The next page is
    /// requested as soon as this page's continue token has arrived (the API server writes it
    /// before the items), so the server prepares page n + 1 while this process reads and
    /// decodes page n.
    async fn list(
        &self,
        on_event: &mut impl FnMut(watcher::Event<K>),
    ) -> Result<String, WatchError> {
        on_event(watcher::Event::Init);
        let list_kind = format!("{}List", self.kind);
        let mut params = self.list_params();
        let mut pending = self.request_page(&params)?;
        loop {
            let mut body = successful(pending.response().await?).await?.into_body();
            let mut buffer: Vec<u8> = Vec::new();
            let mut next: Option<PageRequest> = None;
            let mut token_known = false;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue; // trailers
                };
                buffer.extend_from_slice(&data);
                if !token_known && let Some(token) = leading_continue_token(&buffer)? {
                    token_known = true;
                    if !token.is_empty() {
                        params.continue_token = Some(token);
                        next = Some(self.request_page(&params)?);
                    }
                }
            }
            let message = open_envelope(&buffer)?.expect(&list_kind)?;
            let page = decode_list(message)?;
            for item in &page.items {
                on_event(watcher::Event::InitApply((self.decode)(item)?));
            }
            if page.continue_token.is_empty() {
                if page.resource_version.is_empty() {
                    return Err(WatchError::NoResourceVersion);
                }
                on_event(watcher::Event::InitDone);
                return Ok(page.resource_version);
            }
            pending = match next {
                Some(next) => next,
                None => {
                    params.continue_token = Some(page.continue_token);
                    self.request_page(&params)?
                }
            };
        }
    }

    /// Sends the request for one page of the list now; its response is awaited later.
    fn request_page(&self, params: &ListParams) -> Result<PageRequest, WatchError> {
        let request = self.request.list(params)?;
        let client = self.client.clone();
        Ok(PageRequest(tokio::spawn(async move {
            send(&client, request, PROTOBUF).await
        })))
    }

    /// Watches from `version` until the server ends the watch, keeping `version` at the last
    /// event seen so the next watch continues from there.
    async fn watch(
        &self,
        version: &mut String,
        on_event: &mut impl FnMut(watcher::Event<K>),
    ) -> Result<(), WatchError> {
        let timeout = self.config.timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT);
        let params = WatchParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            timeout: Some(timeout),
            bookmarks: self.config.bookmarks,
            send_initial_events: false,
        };
        let request = self.request.watch(&params, version)?;
        let response = successful(send(&self.client, request, PROTOBUF_WATCH).await?).await?;
        // As kube's watcher: a watch that sends nothing for longer than its own timeout is
        // on a dead connection.
        let idle = Duration::from_secs(u64::from(timeout) + 5);
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| WatchError::Idle(idle))?;
            let Some(frame) = frame else {
                return Ok(());
            };
            let Ok(data) = frame?.into_data() else {
                continue; // trailers
            };
            buffer.extend_from_slice(&data);
            let (events, used) = split_frames(&buffer);
            for event in events {
                self.handle_watch_event(event, version, on_event)?;
            }
            buffer.drain(..used);
        }
    }

    fn handle_watch_event(
        &self,
        frame: &[u8],
        version: &mut String,
        on_event: &mut impl FnMut(watcher::Event<K>),
    ) -> Result<(), WatchError> {
        let event = decode_watch_event(frame)?;
        let object = open_envelope(event.object)?;
        match event.kind {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let message = object.expect(&self.kind)?;
                let decoded = (self.decode)(message)?;
                let Some(seen) = decoded.meta().resource_version.clone() else {
                    return Err(WatchError::EventWithoutVersion(event.kind.to_owned()));
                };
                *version = seen;
                on_event(if event.kind == "DELETED" {
                    watcher::Event::Delete(decoded)
                } else {
                    watcher::Event::Apply(decoded)
                });
            }
            "BOOKMARK" => {
                if let Some(seen) = object_resource_version(object.message)? {
                    *version = seen;
                }
            }
            "ERROR" => return Err(WatchError::from_status(decode_status(object.message)?)),
            other => return Err(WatchError::EventType(other.to_owned())),
        }
        Ok(())
    }

    /// The list parameters kube's watcher would use for the same configuration.
    fn list_params(&self) -> ListParams {
        let (resource_version, version_match) = match self.config.list_semantic {
            ListSemantic::Any => (Some("0".to_owned()), Some(VersionMatch::NotOlderThan)),
            ListSemantic::MostRecent => (None, None),
        };
        ListParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            limit: self.config.page_size,
            resource_version,
            version_match,
            ..ListParams::default()
        }
    }
}

/// A page request sent ahead of its use. Dropping it cancels the request, so a list that
/// failed leaves no page request behind.
struct PageRequest(tokio::task::JoinHandle<Result<http::Response<Body>, WatchError>>);

impl PageRequest {
    async fn response(&mut self) -> Result<http::Response<Body>, WatchError> {
        (&mut self.0)
            .await
            .map_err(|error| WatchError::Task(error.to_string()))?
    }
}

impl Drop for PageRequest {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send(
    client: &kube::Client,
    request: http::Request<Vec<u8>>,
    accept: &'static str,
) -> Result<http::Response<Body>, WatchError> {
    let mut request = request.map(Body::from);
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(accept));
    Ok(client.send(request).await?)
}

/// The response if it succeeded; otherwise the `Status` in its body as the error.
async fn successful(response: http::Response<Body>) -> Result<http::Response<Body>, WatchError> {
    let code = response.status();
    if code.is_success() {
        return Ok(response);
    }
    let body = response.into_body().collect_bytes().await?;
    Err(WatchError::from_status(failure_status(
        code.as_u16(),
        &body,
    )))
}

/// The `Status` in an error response: protobuf when the server could encode it so, JSON or
/// plain text otherwise (from a proxy, say); the HTTP code when the body says nothing.
fn failure_status(http_code: u16, body: &[u8]) -> Status {
    let from_protobuf = open_envelope(body)
        .ok()
        .filter(|object| object.kind == "Status")
        .and_then(|object| decode_status(object.message).ok());
    let from_json = || {
        serde_json::from_slice::<kube::core::Status>(body)
            .ok()
            .map(|status| Status {
                code: i32::from(status.code),
                reason: status.reason,
                message: status.message,
            })
    };
    let mut status = from_protobuf.or_else(from_json).unwrap_or_else(|| Status {
        code: 0,
        reason: String::new(),
        message: String::from_utf8_lossy(body).trim().to_owned(),
    });
    if status.code == 0 {
        status.code = i32::from(http_code);
    }
    status
}

/// Exponential backoff between failed attempts, as kube's default: 0.8 s doubling to 30 s.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn delay(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.saturating_sub(1));
        Duration::from_millis(800)
            .saturating_mul(factor)
            .min(Duration::from_secs(30))
    }

    async fn wait(&mut self) {
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(self.delay()).await;
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_800_ms_to_30_s_and_resets() {
        let mut backoff = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            backoff.failures += 1;
            delays.push(backoff.delay().as_millis());
        }
        assert_eq!(delays, [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        backoff.reset();
        backoff.failures += 1;
        assert_eq!(backoff.delay(), Duration::from_millis(800));
    }

    #[test]
    fn error_bodies_read_as_a_status_whatever_their_encoding() {
        let protobuf = failure_status(422, include_bytes!("testdata/status-422.pb"));
        assert_eq!((protobuf.code, protobuf.reason.as_str()), (422, "Invalid"));
        let json = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (42)","reason":"Expired","code":410}"#;
        let status = failure_status(410, json);
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        assert!(matches!(
            WatchError::from_status(status),
            WatchError::Gone(_)
        ));
        let text = failure_status(502, b"bad gateway\n");
        assert_eq!((text.code, text.message.as_str()), (502, "bad gateway"));
    }
}
