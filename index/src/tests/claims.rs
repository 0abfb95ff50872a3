use signpost_core::ipam::{Allocator, IpFamily};
use signpost_crds::ServiceIP;

use super::*;
use crate::claims::ClaimsIndex;

fn claim(address: &str, service: &str, namespace: &str, uid: &str) -> ServiceIP {
    serde_json::from_value(json!({
        "apiVersion": "signpost.dev/v1alpha1",
        "kind": "ServiceIP",
        "metadata": {"name": address, "uid": uid},
        "spec": {
            "address": address,
            "cidr": "10.96.0.0/30",
            "serviceRef": {"namespace": namespace, "name": service, "uid": format!("uid-{service}")},
        },
    }))
    .expect("a ServiceIP")
}

/// A /30: two usable addresses, 10.96.0.1 and 10.96.0.2.
fn index(namespace: Option<&str>) -> ClaimsIndex {
    let allocator = Allocator::with_quarantine(["10.96.0.0/30".parse().expect("a CIDR")], 0)
        .expect("an allocator");
    ClaimsIndex::new(allocator, namespace.map(String::from))
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("an address")
}

/// The Service whose claim the book holds for `address`.
fn holder(index: &ClaimsIndex, address: &str) -> Option<ServiceKey> {
    index.book.claim_at(ip(address)).map(|c| c.service.clone())
}

#[test]
fn a_claim_is_booked_under_its_service_and_syncs_it() {
    let mut index = index(None);
    assert_eq!(
        index.apply_claim(&claim("10.96.0.1", "web", "ns", "c1")),
        Some(key("web"))
    );
    assert_eq!(holder(&index, "10.96.0.1"), Some(key("web")));
    assert!(
        index.book.reserve(ip("10.96.0.1")).is_err(),
        "the address is taken"
    );
}

#[test]
fn a_claim_of_another_namespace_only_marks_its_address_taken() {
    let mut index = index(Some("ns"));
    assert_eq!(
        index.apply_claim(&claim("10.96.0.1", "web", "other", "c1")),
        None
    );
    assert!(
        index
            .book
            .claims_of(&ServiceKey::new("other", "web"))
            .is_empty()
    );
    assert!(
        index.book.reserve(ip("10.96.0.1")).is_err(),
        "never handed out here"
    );
}

#[test]
fn a_deleted_claim_frees_its_address_and_wakes_the_waiting() {
    let mut index = index(None);
    index.apply_claim(&claim("10.96.0.1", "a", "ns", "c1"));
    index.apply_claim(&claim("10.96.0.2", "b", "ns", "c2"));
    assert!(
        index.book.reserve_next(IpFamily::V4).is_err(),
        "the /30 is full"
    );
    index.wait_for_a_freed_address(&key("c"));
    let keys = index.delete_claim(&claim("10.96.0.1", "a", "ns", "c1"));
    assert_eq!(sorted(keys), vec![key("a"), key("c")]);
    assert!(
        index.address_freed().is_empty(),
        "each waiter is woken once"
    );
    assert!(index.book.reserve(ip("10.96.0.1")).is_ok(), "free again");
}

#[test]
fn deleting_an_old_claim_keeps_the_new_holder_of_its_address() {
    let mut index = index(None);
    // c1 was deleted and the address claimed again (c2) before the delete event arrived.
    index.apply_claim(&claim("10.96.0.1", "b", "ns", "c2"));
    index.wait_for_a_freed_address(&key("c"));
    let keys = index.delete_claim(&claim("10.96.0.1", "a", "ns", "c1"));
    assert_eq!(keys, vec![key("a")], "nothing was freed, nobody woken");
    assert_eq!(holder(&index, "10.96.0.1"), Some(key("b")));
}

#[test]
fn a_claim_relist_rebuilds_the_book_from_the_claims() {
    let mut index = index(Some("ns"));
    index.apply_claim(&claim("10.96.0.1", "gone", "ns", "c1"));
    index.wait_for_a_freed_address(&key("waiting"));
    let keys = index.reset_claims([
        &claim("10.96.0.2", "web", "ns", "c2"),
        &claim("10.96.0.1", "theirs", "other", "c3"),
    ]);
    assert_eq!(sorted(keys), vec![key("waiting"), key("web")]);
    assert!(index.book.claims_of(&key("gone")).is_empty());
    assert!(
        index.book.reserve_next(IpFamily::V4).is_err(),
        "both addresses are held"
    );
}

#[test]
fn a_hold_marks_its_address_until_claimed_or_expired_and_survives_a_relist() {
    let mut index = index(None);
    let given = std::time::Instant::now();
    index.book.reserve(ip("10.96.0.1")).expect("free");
    index.hold(&[ip("10.96.0.1")], given);
    // A relist rebuilds the bitmaps from the claims: the hold still marks its address.
    index.reset_claims([]);
    assert!(index.book.allocator().is_allocated(ip("10.96.0.1")));
    assert_eq!(
        index
            .book
            .reserve_next(IpFamily::V4)
            .expect("one left")
            .address,
        ip("10.96.0.2")
    );
    // Not expired yet.
    assert!(index.expire_holds(given).is_empty());
    // Expired: the address is free again.
    let later = given + std::time::Duration::from_secs(1);
    assert_eq!(index.expire_holds(later), vec![ip("10.96.0.1")]);
    assert!(!index.book.allocator().is_allocated(ip("10.96.0.1")));
    assert_eq!(index.held(), 0);

    // Taken over by its Service's claim: the hold ends, the address stays marked.
    index.book.reserve(ip("10.96.0.1")).expect("free");
    index.hold(&[ip("10.96.0.1")], given);
    assert!(index.take_for(ip("10.96.0.1"), &key("web")));
    assert!(!index.take_for(ip("10.96.0.1"), &key("web")), "once");
    index.apply_claim(&claim("10.96.0.1", "web", "ns", "c1"));
    assert!(index.expire_holds(later).is_empty());
    assert!(index.book.allocator().is_allocated(ip("10.96.0.1")));
}

#[test]
fn an_ip_address_object_keeps_its_address_marked_whatever_the_claims_say() {
    let mut index = index(None);
    // Outside the CIDRs: not ours to mark.
    index.apply_ip_address(ip("10.97.0.1"), None);
    index.apply_ip_address(ip("10.96.0.1"), Some(key("web")));
    assert!(index.book.allocator().is_allocated(ip("10.96.0.1")));
    // Its own Service may claim it although its bit is set; no other may.
    assert!(!index.take_for(ip("10.96.0.1"), &key("api")));
    assert!(index.take_for(ip("10.96.0.1"), &key("web")));
    // Its Service's claim comes and goes: the IPAddress object still holds the address.
    index.apply_claim(&claim("10.96.0.1", "web", "ns", "c1"));
    index.delete_claim(&claim("10.96.0.1", "web", "ns", "c1"));
    assert!(index.book.allocator().is_allocated(ip("10.96.0.1")));
    // A relist of the claims rebuilds the bitmaps: still marked.
    index.reset_claims([]);
    assert!(index.book.allocator().is_allocated(ip("10.96.0.1")));
    // A Service waiting for an address is synced once the object goes.
    index.wait_for_a_freed_address(&key("api"));
    assert_eq!(index.delete_ip_address(ip("10.96.0.1")), vec![key("api")]);
    assert!(!index.book.allocator().is_allocated(ip("10.96.0.1")));
    // A relist of the objects drops the ones gone and marks the ones there.
    index.apply_ip_address(ip("10.96.0.1"), None);
    index.reset_ip_addresses([(ip("10.96.0.2"), None)]);
    assert!(!index.book.allocator().is_allocated(ip("10.96.0.1")));
    assert!(index.book.allocator().is_allocated(ip("10.96.0.2")));
}
