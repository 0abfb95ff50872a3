use super::*;
use crate::mirroring::MirroringIndex;

#[test]
fn mirrored_slices_are_filed_by_service_and_a_relabel_concerns_both() {
    a_relabel_moves_a_slice(
        &mut MirroringIndex::default().slices,
        "ext-1",
        "ext",
        "ext2",
    );
}

#[test]
fn a_relist_settles_a_deletion_whose_event_was_lost() {
    let mut index = MirroringIndex::default();
    assert!(a_relist_settles_a_lost_deletion(&mut index.slices, &[]).is_empty());
}
