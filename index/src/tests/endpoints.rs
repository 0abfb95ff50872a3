use super::*;
use crate::endpoints::EndpointsIndex;

/// An index with Services `web` (app=web) and `all` (tier=front) and the pod `web-1`.
fn index_with_web() -> EndpointsIndex {
    let mut index = EndpointsIndex::new();
    index.apply_service(&service("web", json!({"app": "web"})));
    index.apply_service(&service("all", json!({"tier": "front"})));
    apply(
        &mut index,
        pod("web-1", json!({"app": "web"}), "10.0.0.1", true),
    );
    index.triggers.clear();
    index
}

/// Applies a pod event once the controller has started (so only the Services it concerns are
/// synced), at [`now`].
fn apply(index: &mut EndpointsIndex, pod: PodRecord) -> std::collections::HashSet<ServiceKey> {
    index.apply_pod(pod, true, now())
}

#[test]
fn a_service_files_its_selector_and_is_synced() {
    let mut index = EndpointsIndex::new();
    let web = service("web", json!({"app": "web"}));
    assert_eq!(index.apply_service(&web), key("web"));
    assert_eq!(index.selectors.len(), 1);
    assert_eq!(index.delete_service(&web), key("web"));
    assert!(index.selectors.is_empty());
}

#[test]
fn a_service_relist_syncs_the_current_and_the_removed() {
    let mut index = EndpointsIndex::new();
    let gone = service("gone", json!({"app": "gone"}));
    index.apply_service(&gone);
    let web = service("web", json!({"app": "web"}));
    let keys = index.reset_services([&web], [&gone]);
    assert_eq!(sorted(keys), vec![key("gone"), key("web")]);
    assert_eq!(index.selectors.len(), 1, "only web's selector is left");
}

#[test]
fn a_new_pod_syncs_the_services_selecting_it_and_notes_when() {
    let mut index = index_with_web();
    let affected = apply(
        &mut index,
        pod(
            "web-2",
            json!({"app": "web", "tier": "front"}),
            "10.0.0.2",
            true,
        ),
    );
    assert_eq!(sorted(affected), vec![key("all"), key("web")]);
    assert_eq!(index.triggers.get(&key("web")), Some(&now()));
    assert_eq!(index.pods.len(), 2);
}

/// The Services a change of `web-1` (IP unchanged) in [`index_with_web`] syncs, sorted, and
/// the index after it.
fn web_1_changed(labels: serde_json::Value, ready: bool) -> (Vec<ServiceKey>, EndpointsIndex) {
    let mut index = index_with_web();
    let affected = apply(&mut index, pod("web-1", labels, "10.0.0.1", ready));
    (sorted(affected), index)
}

#[test]
fn a_pod_change_that_no_endpoint_shows_syncs_nothing() {
    // Same IP, readiness and labels: an annotation or a status timestamp changed.
    let (affected, index) = web_1_changed(json!({"app": "web"}), true);
    assert!(affected.is_empty(), "{affected:?}");
    assert!(index.triggers.is_empty());
}

#[test]
fn a_readiness_flip_syncs_the_service() {
    let (affected, _) = web_1_changed(json!({"app": "web"}), false);
    assert_eq!(affected, vec![key("web")]);
}

#[test]
fn a_relabelled_pod_syncs_the_services_it_left_and_joined() {
    let (affected, _) = web_1_changed(json!({"tier": "front"}), true);
    assert_eq!(affected, vec![key("all"), key("web")]);
}

#[test]
fn pods_filed_while_the_caches_fill_route_nowhere() {
    let mut index = EndpointsIndex::new();
    index.apply_service(&service("web", json!({"app": "web"})));
    let affected = index.apply_pod(
        pod("web-1", json!({"app": "web"}), "10.0.0.1", true),
        false,
        now(),
    );
    assert!(
        affected.is_empty(),
        "every Service is synced once the caches are full"
    );
    assert_eq!(index.pods.len(), 1, "but the pod is kept");
    assert!(index.triggers.is_empty());
}

#[test]
fn a_deleted_pod_syncs_the_services_that_selected_it() {
    let mut index = index_with_web();
    assert_eq!(
        sorted(index.delete_pod("ns", "web-1", now())),
        vec![key("web")]
    );
    assert!(index.pods.is_empty());
    assert!(
        index.delete_pod("ns", "web-1", now()).is_empty(),
        "twice: nothing left"
    );
}

#[test]
fn pods_that_vanished_during_a_relist_sync_their_services() {
    let mut index = index_with_web();
    apply(
        &mut index,
        pod("web-2", json!({"app": "web"}), "10.0.0.2", true),
    );
    index.triggers.clear();
    index.begin_pod_relist();
    // The relist shows web-2 again, not web-1.
    apply(
        &mut index,
        pod("web-2", json!({"app": "web"}), "10.0.0.2", true),
    );
    let affected = index.finish_pod_relist(now());
    assert_eq!(sorted(affected), vec![key("web")]);
    assert_eq!(index.pods.len(), 1);
    assert!(index.pods.get("ns", "web-1").is_none());
}

#[test]
fn a_slice_files_under_its_service_and_a_relabel_moves_it() {
    a_relabel_moves_a_slice(&mut EndpointsIndex::new().slices, "web-abc", "web", "api");
}

#[test]
fn a_deleted_slice_we_wrote_settles_the_write_tracker() {
    let mut index = EndpointsIndex::new();
    index.slices.apply(&slice("web-abc", "web"));
    index.slices.tracker.deleted(&key("web"), "web-abc");
    assert_eq!(index.slices.tracker.pending(), 1);
    index.slices.delete(&slice("web-abc", "web"));
    assert_eq!(
        index.slices.tracker.pending(),
        0,
        "the watch showed the deletion"
    );
}

#[test]
fn the_echo_of_our_own_slice_write_settles_it_and_syncs_nothing() {
    let mut index = EndpointsIndex::new();
    let at = |version: &str| {
        let mut s = slice("web-abc", "web");
        s.metadata.resource_version = Some(version.into());
        s
    };
    index.slices.tracker.wrote(&key("web"), at("7"));
    assert_eq!(
        index.slices.apply(&at("6")),
        vec![key("web")],
        "an older version is synced"
    );
    assert_eq!(index.slices.tracker.pending(), 1);
    assert!(
        index.slices.apply(&at("7")).is_empty(),
        "our own write's echo needs no sync"
    );
    assert_eq!(index.slices.tracker.pending(), 0, "the write is settled");
    assert_eq!(
        index.slices.apply(&at("8")),
        vec![key("web")],
        "a later change by anyone is synced"
    );
}

#[test]
fn a_slice_relist_refiles_everything_and_settles_older_writes() {
    let mut index = EndpointsIndex::new();
    let keys = a_relist_settles_a_lost_deletion(&mut index.slices, &[slice("api-xyz", "api")]);
    assert_eq!(keys, vec![key("api")]);
}

#[test]
fn our_endpoints_write_is_kept_until_the_cache_shows_it() {
    let mut index = EndpointsIndex::new();
    index
        .endpoints_written
        .insert(key("web"), std::sync::Arc::new(endpoints("web", "7")));
    assert_eq!(
        index.apply_endpoints(&endpoints("web", "6")),
        Some(key("web")),
        "an older version is synced"
    );
    assert!(
        index.endpoints_written.contains_key(&key("web")),
        "an older version"
    );
    assert_eq!(
        index.apply_endpoints(&endpoints("web", "7")),
        None,
        "the echo of our own write needs no sync"
    );
    assert!(
        !index.endpoints_written.contains_key(&key("web")),
        "ours arrived"
    );

    index
        .endpoints_written
        .insert(key("web"), std::sync::Arc::new(endpoints("web", "9")));
    assert_eq!(index.delete_endpoints(&endpoints("web", "8")), key("web"));
    assert!(index.endpoints_written.is_empty());

    index
        .endpoints_written
        .insert(key("api"), std::sync::Arc::new(endpoints("api", "3")));
    index.reset_endpoints();
    assert!(index.endpoints_written.is_empty());
}

#[test]
fn a_zone_change_asks_for_every_service() {
    let mut index = EndpointsIndex::new();
    assert!(index.apply_node(&node("node-a", Some("z1"))));
    assert!(
        !index.apply_node(&node("node-a", Some("z1"))),
        "nothing changed"
    );
    assert!(index.apply_node(&node("node-a", Some("z2"))));
    assert!(index.delete_node("node-a"));
    assert!(!index.delete_node("node-a"));
    index.reset_nodes([&node("node-b", Some("z3"))]);
    assert_eq!(index.zones.zone("node-b").map(|z| z.as_ref()), Some("z3"));
    assert!(index.zones.zone("node-a").is_none());
}
