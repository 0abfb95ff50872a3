//! When the change a DNSRecord write carries happened, so a DNS server can measure its
//! programming latency (change → served), as CoreDNS's `dns_programming_duration_seconds`
//! does from the same EndpointSlice annotation.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

use crate::labels::ANNOTATION_LAST_CHANGE_TRIGGER_TIME;

/// Annotation on a DNSRecord: RFC 3339 time of the change its current spec carries. For a
/// headless Service, the latest `endpoints.kubernetes.io/last-change-trigger-time` of its
/// EndpointSlices (the pod or Service change the endpoints controller saw); otherwise the
/// moment the records controller rendered the change. Written only with the spec, so it never
/// costs a write of its own.
pub const ANNOTATION_TRIGGER_TIME: &str = "signpost.dev/last-change-trigger-time";

/// The latest trigger time among `slices`' annotations; `None` when none has a readable one.
pub fn slices_trigger_time(slices: &[EndpointSlice]) -> Option<Timestamp> {
    slices
        .iter()
        .filter_map(|slice| {
            slice
                .metadata
                .annotations
                .as_ref()?
                .get(ANNOTATION_LAST_CHANGE_TRIGGER_TIME)?
                .parse::<Timestamp>()
                .ok()
        })
        .max()
}

/// The annotation's value for a write rendered at `now` from `slices` (empty unless headless).
pub fn trigger_time(slices: &[EndpointSlice], now: Timestamp) -> String {
    slices_trigger_time(slices).unwrap_or(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(trigger: Option<&str>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                annotations: trigger.map(|t| {
                    [(ANNOTATION_LAST_CHANGE_TRIGGER_TIME.to_owned(), t.to_owned())].into()
                }),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(Vec::new()),
            ports: None,
        }
    }

    #[test]
    fn the_latest_slice_trigger_wins_and_now_is_the_fallback() {
        let now: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let slices = [
            slice(Some("2026-12-06T09:00:01.5Z")),
            slice(Some("2026-12-06T09:00:02.25Z")),
            slice(Some("not a time")),
            slice(None),
        ];
        assert_eq!(trigger_time(&slices, now), "2026-12-06T09:00:02.25Z");
        assert_eq!(trigger_time(&slices[2..], now), "2026-12-06T10:00:00Z");
        assert_eq!(trigger_time(&[], now), now.to_string());
        // What the DNS server reads back.
        let back: Timestamp = trigger_time(&slices, now).parse().unwrap();
        assert_eq!(back, "2026-12-06T09:00:02.25Z".parse().unwrap());
    }
}
