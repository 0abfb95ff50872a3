//! One CIDR: its bitmap, its next-fit cursor and its quarantine of recent releases.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::IpFamily;
use super::bits::Bits;
use super::error::ReservedKind;

/// Mutations between two `optimize` passes, at least. An `optimize` pass costs about one
/// operation per element (array containers) or per 64 elements (bitmap containers), so
/// spacing passes by an eighth of the set's size as well (see [`Range::compact`]) keeps the
/// amortised cost at a handful of operations per allocation, whatever the CIDR's size.
const OPTIMIZE_EVERY_MIN: u64 = 4096;

/// State of one service CIDR.
///
/// `blocked` holds every offset that allocate-next must not hand out fresh: the allocated
/// ones *and* the quarantined ones. Keeping the quarantined offsets in the same bitmap lets
/// one run query skip both kinds at once; the quarantine itself is small (bounded), so
/// "allocated" is answered as `blocked && !quarantined`.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    cidr: IpNet,
    family: IpFamily,
    /// Network address as an integer (IPv4 widened).
    base: u128,
    /// Last offset in the CIDR (its size minus one); fits `u64` because IPv6 stops at /64.
    last_offset: u64,
    /// First and last offsets that may be handed out.
    first_usable: u64,
    last_usable: u64,
    blocked: Bits,
    quarantine: Quarantine,
    /// Where the next-fit search starts. `None` until the first allocate-next: a freshly
    /// rebuilt range then continues after its highest taken offset (see `start_offset`).
    cursor: Option<u64>,
    mutations: u64,
    optimize_every: u64,
}

/// Bounded FIFO of recently released offsets.
#[derive(Debug, Clone, Default)]
struct Quarantine {
    /// (release sequence number, offset), oldest first.
    queue: VecDeque<(u64, u64)>,
    members: HashSet<u64>,
    capacity: usize,
}

/// Counts for one CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RangeUsage {
    /// The CIDR.
    pub cidr: IpNet,
    /// Addresses that can ever be handed out (size minus reserved addresses). A `u64` is
    /// enough: the widest range is an IPv6 /64, which has 2^64 - 1 usable addresses.
    pub capacity: u64,
    /// Addresses allocated.
    pub used: u64,
    /// Free addresses held back because they were released recently (counted in `free`).
    pub quarantined: u64,
    /// Addresses not allocated (`capacity - used`), quarantined ones included.
    pub free: u64,
}

impl Range {
    /// Builds an empty range. The caller has validated the CIDR (network address, IPv6 /64
    /// or longer).
    pub(crate) fn new(cidr: IpNet, quarantine_capacity: usize) -> Self {
        let (family, base, host_bits) = match cidr {
            IpNet::V4(n) => (
                IpFamily::V4,
                u128::from(u32::from(n.network())),
                32 - u32::from(n.prefix_len()),
            ),
            IpNet::V6(n) => (
                IpFamily::V6,
                u128::from(n.network()),
                128 - u32::from(n.prefix_len()),
            ),
        };
        debug_assert!(host_bits <= 64);
        let last_offset = if host_bits == 64 {
            u64::MAX
        } else {
            (1u64 << host_bits) - 1
        };
        let mut range = Range {
            cidr,
            family,
            base,
            last_offset,
            first_usable: 0,
            last_usable: last_offset,
            blocked: Bits::for_last_offset(last_offset),
            quarantine: Quarantine {
                capacity: quarantine_capacity,
                ..Quarantine::default()
            },
            cursor: None,
            mutations: 0,
            optimize_every: OPTIMIZE_EVERY_MIN,
        };
        if range.reserved_kind(0).is_some() {
            range.first_usable = 1;
        }
        if range.reserved_kind(last_offset).is_some() {
            range.last_usable = last_offset - 1;
        }
        range
    }

    pub(crate) fn cidr(&self) -> IpNet {
        self.cidr
    }

    /// First and last address of the CIDR as integers, for lookups.
    pub(crate) fn span(&self) -> (u128, u128) {
        (self.base, self.base + u128::from(self.last_offset))
    }

    /// Offset of `addr` in this range, if it falls inside.
    pub(crate) fn offset_of(&self, addr: u128) -> Option<u64> {
        let off = addr.checked_sub(self.base)?;
        u64::try_from(off).ok().filter(|&o| o <= self.last_offset)
    }

    pub(crate) fn address_at(&self, off: u64) -> IpAddr {
        let value = self.base + u128::from(off);
        match self.family {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(
                u32::try_from(value).expect("IPv4 offset stays in u32"),
            )),
            IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    /// Which reserved address `off` is, if any.
    ///
    /// IPv4 up to /30 keeps the network and broadcast addresses. A /31 is a point-to-point
    /// pair (RFC 3021) and a /32 a single address, so both hand out every address: an operator
    /// who configures a /32 wants that one VIP. IPv6 up to /126 keeps the subnet-router anycast
    /// address (the first); /127 (RFC 6164) and /128 keep nothing, for the same reason.
    pub(crate) fn reserved_kind(&self, off: u64) -> Option<ReservedKind> {
        match self.cidr {
            IpNet::V4(n) if n.prefix_len() <= 30 => {
                if off == 0 {
                    Some(ReservedKind::NetworkAddress)
                } else if off == self.last_offset {
                    Some(ReservedKind::BroadcastAddress)
                } else {
                    None
                }
            }
            IpNet::V6(n) if n.prefix_len() <= 126 && off == 0 => {
                Some(ReservedKind::SubnetRouterAnycast)
            }
            _ => None,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.last_usable - self.first_usable + 1
    }

    pub(crate) fn is_allocated(&self, off: u64) -> bool {
        self.blocked.contains(off) && !self.quarantine.members.contains(&off)
    }

    pub(crate) fn is_quarantined(&self, off: u64) -> bool {
        self.quarantine.members.contains(&off)
    }

    /// Offsets neither allocated nor quarantined; O(1).
    fn fresh_free(&self) -> u64 {
        self.capacity() - self.blocked.len()
    }

    /// Next-fit: the first offset at or after the cursor that is neither allocated nor
    /// quarantined, wrapping once. `None` when only quarantined offsets (or none) are free.
    pub(crate) fn take_fresh(&mut self) -> Option<u64> {
        if self.fresh_free() == 0 {
            return None;
        }
        let start = self.start_offset();
        let off = self
            .blocked
            .first_absent(start, self.last_usable)
            .or_else(|| {
                self.blocked
                    .first_absent(self.first_usable, start.checked_sub(1)?)
            })
            .expect("fresh_free > 0 means the bitmap has a hole");
        self.blocked.insert(off);
        self.cursor = Some(if off >= self.last_usable {
            self.first_usable
        } else {
            off + 1
        });
        self.touched();
        Some(off)
    }

    /// Where next-fit starts. Without a cursor (a new or just rebuilt range) it is right after
    /// the highest taken offset: next-fit fills upwards, so the addresses above the highest
    /// claim are the ones least likely to have been used recently by a previous leader.
    fn start_offset(&self) -> u64 {
        let start = match self.cursor {
            Some(c) => c,
            None => self
                .blocked
                .max()
                .map_or(self.first_usable, |m| m.saturating_add(1)),
        };
        if start < self.first_usable || start > self.last_usable {
            self.first_usable
        } else {
            start
        }
    }

    /// Release sequence number of the oldest quarantined offset.
    pub(crate) fn oldest_quarantined(&self) -> Option<u64> {
        self.quarantine.queue.front().map(|&(seq, _)| seq)
    }

    /// Hands out the oldest quarantined offset: used only when nothing fresh is left anywhere
    /// in the family. It stays in `blocked`, now as allocated.
    pub(crate) fn take_quarantined(&mut self) -> Option<u64> {
        let (_, off) = self.quarantine.queue.pop_front()?;
        self.quarantine.members.remove(&off);
        Some(off)
    }

    /// Claims `off`. `Ok(true)` if it was free (quarantined or not), `Ok(false)` if already
    /// allocated; the caller decides whether that is an error. Reserved offsets are the
    /// caller's to check.
    pub(crate) fn claim(&mut self, off: u64) -> bool {
        if self.quarantine.members.remove(&off) {
            // A quarantined address asked for by name: the quarantine only steers
            // allocate-next, it never refuses an explicit request. O(quarantine capacity).
            self.quarantine.queue.retain(|&(_, o)| o != off);
            return true;
        }
        let fresh = self.blocked.insert(off);
        if fresh {
            self.touched();
        }
        fresh
    }

    /// Frees `off`, putting it in quarantine; `seq` orders releases across ranges. Returns
    /// whether it was allocated.
    pub(crate) fn release(&mut self, off: u64, seq: u64) -> bool {
        if !self.is_allocated(off) {
            return false;
        }
        if self.quarantine.capacity == 0 {
            self.blocked.remove(off);
            self.touched();
            return true;
        }
        self.quarantine.queue.push_back((seq, off));
        self.quarantine.members.insert(off);
        if self.quarantine.queue.len() > self.quarantine.capacity
            && let Some((_, old)) = self.quarantine.queue.pop_front()
        {
            self.quarantine.members.remove(&old);
            self.blocked.remove(old);
            self.touched();
        }
        true
    }

    /// Forgets every allocation and the quarantine, keeping the cursor (this process's memory
    /// of where it was is still the best guess after a rebuild).
    pub(crate) fn reset(&mut self) {
        self.blocked.clear();
        self.quarantine.queue.clear();
        self.quarantine.members.clear();
        self.mutations = 0;
        self.optimize_every = OPTIMIZE_EVERY_MIN;
    }

    pub(crate) fn usage(&self) -> RangeUsage {
        let quarantined = self.quarantine.members.len() as u64;
        let used = self.blocked.len() - quarantined;
        let capacity = self.capacity();
        RangeUsage {
            cidr: self.cidr,
            capacity,
            used,
            quarantined,
            free: capacity - used,
        }
    }

    pub(crate) fn compact(&mut self) {
        self.blocked.optimize();
        self.mutations = 0;
        self.optimize_every = OPTIMIZE_EVERY_MIN.max(self.blocked.len() / 8);
    }

    /// Serialized size of the bitmap plus 16 bytes per quarantined offset.
    pub(crate) fn bitmap_bytes(&self) -> usize {
        self.blocked.serialized_size() + self.quarantine.queue.len() * 16
    }

    /// Counts a bitmap mutation and re-optimises containers now and then, and when the range
    /// becomes full (the state in which run containers save the most). The `FULL_SLACK`
    /// floor keeps churn on a full range from optimising on every single allocation.
    fn touched(&mut self) {
        const FULL_SLACK: u64 = 64;
        self.mutations += 1;
        if self.mutations >= self.optimize_every
            || (self.mutations >= FULL_SLACK && self.fresh_free() == 0)
        {
            self.compact();
        }
    }
}
