use std::time::Instant;

use super::*;
use crate::mirroring::MirroringIndex;

#[test]
fn mirrored_slices_are_filed_by_service_and_a_relabel_concerns_both() {
    let mut index = MirroringIndex::default();
    assert_eq!(index.slices.apply(&slice("ext-1", "ext")), vec![key("ext")]);
    assert_eq!(
        index.slices.apply(&slice("ext-1", "ext2")),
        vec![key("ext"), key("ext2")]
    );
    assert_eq!(
        index.slices.delete(&slice("ext-1", "ext2")),
        Some(key("ext2"))
    );
    assert!(index.slices.names.names(&key("ext2")).is_empty());
}

#[test]
fn a_relist_settles_a_deletion_whose_event_was_lost() {
    let mut index = MirroringIndex::default();
    index.slices.apply(&slice("ext-1", "ext"));
    index.slices.tracker.deleted(&key("ext"), "ext-1");
    index.slices.begin_relist(Instant::now());
    assert!(index.slices.finish_relist([]).is_empty());
    assert_eq!(index.slices.tracker.pending(), 0);
}
