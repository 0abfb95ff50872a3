//! The set of taken offsets inside one CIDR.
//!
//! Offsets are counted from the CIDR's network address. An IPv4 CIDR or an IPv6 CIDR of /96
//! or longer has at most 2^32 addresses, so a `RoaringBitmap` (u32 values) is enough; an IPv6
//! CIDR between /64 and /95 needs a `RoaringTreemap` (u64 values). Wrapping both behind one
//! type keeps the range logic free of the distinction.

use roaring::{RoaringBitmap, RoaringTreemap};

/// A roaring set of offsets, sized for the CIDR it covers, with its cardinality cached.
///
/// Roaring's own `len()` sums every container (and every run of a run container), which
/// would make each allocation O(runs) on a fragmented range; the cache keeps it O(1).
#[derive(Debug, Clone)]
pub(crate) struct Bits {
    set: Set,
    len: u64,
}

#[derive(Debug, Clone)]
enum Set {
    /// At most 2^32 offsets: every value fits a `u32`.
    Narrow(RoaringBitmap),
    /// More than 2^32 offsets (IPv6 /64 to /95).
    Wide(RoaringTreemap),
}

impl Bits {
    /// An empty set able to hold offsets `0..=last`.
    pub(crate) fn for_last_offset(last: u64) -> Self {
        let set = if last <= u64::from(u32::MAX) {
            Set::Narrow(RoaringBitmap::new())
        } else {
            Set::Wide(RoaringTreemap::new())
        };
        Bits { set, len: 0 }
    }

    #[cfg(test)]
    pub(crate) fn is_wide(&self) -> bool {
        matches!(self.set, Set::Wide(_))
    }

    pub(crate) fn contains(&self, off: u64) -> bool {
        match &self.set {
            Set::Narrow(b) => narrow(off).is_some_and(|v| b.contains(v)),
            Set::Wide(t) => t.contains(off),
        }
    }

    /// Returns whether the offset was newly inserted.
    pub(crate) fn insert(&mut self, off: u64) -> bool {
        let added = match &mut self.set {
            Set::Narrow(b) => b.insert(narrow(off).expect("offset checked against the range")),
            Set::Wide(t) => t.insert(off),
        };
        self.len += u64::from(added);
        added
    }

    /// Returns whether the offset was present.
    pub(crate) fn remove(&mut self, off: u64) -> bool {
        let removed = match &mut self.set {
            Set::Narrow(b) => narrow(off).is_some_and(|v| b.remove(v)),
            Set::Wide(t) => t.remove(off),
        };
        self.len -= u64::from(removed);
        removed
    }

    /// Number of offsets in the set; O(1).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn max(&self) -> Option<u64> {
        match &self.set {
            Set::Narrow(b) => b.max().map(u64::from),
            Set::Wide(t) => t.max(),
        }
    }

    pub(crate) fn clear(&mut self) {
        match &mut self.set {
            Set::Narrow(b) => b.clear(),
            Set::Wide(t) => t.clear(),
        }
        self.len = 0;
    }

    /// Converts containers to their smallest form; full runs become run containers.
    ///
    /// Roaring never picks run containers on `insert`, so without this a full /12 would stay
    /// at 16 bitmap containers of 8 KiB each instead of a few bytes.
    pub(crate) fn optimize(&mut self) {
        match &mut self.set {
            Set::Narrow(b) => {
                b.optimize();
            }
            Set::Wide(t) => {
                t.optimize();
            }
        }
    }

    /// Serialized size in bytes: a close, allocation-free proxy for the heap the set holds.
    pub(crate) fn serialized_size(&self) -> usize {
        match &self.set {
            Set::Narrow(b) => b.serialized_size(),
            Set::Wide(t) => t.serialized_size(),
        }
    }

    /// The smallest offset in `from..=to` that is not in the set, if any.
    ///
    /// This jumps over whole runs of taken offsets instead of testing them one by one: the
    /// narrow case asks the bitmap iterator for the run starting at `from` (a container-level
    /// operation); the wide case gallops with `contains_range`, which is logarithmic in the
    /// run's length.
    pub(crate) fn first_absent(&self, from: u64, to: u64) -> Option<u64> {
        if from > to {
            return None;
        }
        match &self.set {
            Set::Narrow(b) => {
                let (from, to) = (narrow(from)?, narrow(to)?);
                // Fast path while filling: the cursor sits on a free offset. Without it the
                // iterator would scan a sparse bitmap container for the next taken offset.
                if !b.contains(from) {
                    return Some(u64::from(from));
                }
                let mut it = b.range(from..=to);
                match it.next_range() {
                    None => Some(u64::from(from)),
                    Some(run) if *run.start() != from => Some(u64::from(from)),
                    // The iterator stops at `to`, so a run reaching `to` leaves nothing free.
                    Some(run) if *run.end() >= to => None,
                    Some(run) => Some(u64::from(*run.end()) + 1),
                }
            }
            Set::Wide(t) => {
                if !t.contains(from) {
                    return Some(from);
                }
                // Invariant: `from..=known` is all taken.
                let mut known = from;
                let mut step = 1u64;
                loop {
                    if known == to {
                        return None;
                    }
                    let probe = known.saturating_add(step).min(to);
                    if t.contains_range(known + 1..=probe) {
                        known = probe;
                        step = step.saturating_mul(2);
                        continue;
                    }
                    // Something in `known+1..=probe` is free: bisect for the first one.
                    let mut hi = probe;
                    while hi - known > 1 {
                        let mid = known + (hi - known) / 2;
                        if t.contains_range(known + 1..=mid) {
                            known = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    return Some(known + 1);
                }
            }
        }
    }
}

fn narrow(off: u64) -> Option<u32> {
    u32::try_from(off).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> [Bits; 2] {
        [
            Bits::for_last_offset(u64::from(u32::MAX)),
            Bits::for_last_offset(u64::MAX),
        ]
    }

    #[test]
    fn first_absent_jumps_runs_in_both_representations() {
        for mut bits in both() {
            assert_eq!(bits.first_absent(5, 10), Some(5));
            for off in 5..=1000 {
                bits.insert(off);
            }
            bits.insert(1002);
            assert_eq!(bits.first_absent(5, 2000), Some(1001));
            assert_eq!(bits.first_absent(7, 1000), None);
            assert_eq!(bits.first_absent(1002, 1002), None);
            assert_eq!(bits.first_absent(1002, 1003), Some(1003));
            assert_eq!(bits.first_absent(11, 10), None);
            bits.optimize();
            assert_eq!(bits.first_absent(5, 2000), Some(1001));
        }
    }

    #[test]
    fn wide_first_absent_crosses_the_u32_boundary() {
        let mut bits = Bits::for_last_offset(u64::MAX);
        assert!(bits.is_wide());
        let start = (1u64 << 32) - 10;
        for off in start..start + 100 {
            bits.insert(off);
        }
        assert_eq!(bits.first_absent(start, u64::MAX), Some(start + 100));
        assert_eq!(bits.first_absent(u64::MAX, u64::MAX), Some(u64::MAX));
        bits.insert(u64::MAX);
        assert_eq!(bits.first_absent(u64::MAX, u64::MAX), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Both representations agree with a plain scan, including around container edges.
        #[test]
        fn first_absent_matches_a_scan(
            taken in proptest::collection::btree_set(0u64..200_000, 0..400),
            runs in proptest::collection::vec((0u64..200_000, 0u64..70_000), 0..3),
            from in 0u64..200_000,
            len in 0u64..140_000,
        ) {
            let to = from + len;
            for mut bits in both() {
                for &off in &taken {
                    bits.insert(off);
                }
                for &(start, n) in &runs {
                    for off in start..start + n {
                        bits.insert(off);
                    }
                }
                bits.optimize();
                let in_runs = |o: u64| runs.iter().any(|&(s, n)| o >= s && o < s + n);
                let expected = (from..=to).find(|o| !taken.contains(o) && !in_runs(*o));
                proptest::prop_assert_eq!(bits.first_absent(from, to), expected);
            }
        }
    }
}
