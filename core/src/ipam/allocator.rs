//! The allocator over every configured service CIDR.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::{AllocError, CidrError};
use super::range::{Range, RangeUsage};

/// How many recently released addresses each CIDR holds back from allocate-next.
///
/// Next-fit alone already keeps a released address unused until the cursor comes round
/// again; the quarantine covers the case where it comes round soon (a nearly full range).
/// 1024 covers a burst of deletions (a namespace going away) while costing at most ~32 KiB
/// per CIDR.
pub const DEFAULT_QUARANTINE_PER_CIDR: usize = 1024;

/// An IP family, without Kubernetes types so the allocator stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// An address handed out by [`Allocator::allocate_next`], with the CIDR it came from (the
/// `ServiceIP` claim records both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// The allocated address.
    pub address: IpAddr,
    /// The configured CIDR that holds it.
    pub cidr: IpNet,
}

/// Per-family bookkeeping: which ranges, in which order.
#[derive(Debug, Clone, Default)]
struct FamilyRanges {
    /// Indices into `Allocator::ranges`, in configuration order (allocation order).
    order: Vec<usize>,
    /// Indices sorted by network address, for binary-search lookups.
    by_address: Vec<usize>,
    /// Position in `order` of the range allocate-next tries first.
    current: usize,
}

/// A ClusterIP allocator over one or more IPv4 and/or IPv6 CIDRs.
///
/// It is a cache: the durable truth is the set of `ServiceIP` claims, and the reconciler
/// rebuilds it with [`reset`](Self::reset) and [`mark_in_use`](Self::mark_in_use) before
/// allocating. It does no I/O and knows no Kubernetes types, so every rule here is tested
/// without a cluster.
#[derive(Debug, Clone)]
pub struct Allocator {
    ranges: Vec<Range>,
    families: Vec<IpFamily>,
    v4: FamilyRanges,
    v6: FamilyRanges,
    /// Release counter: orders quarantined addresses across CIDRs, oldest first.
    release_seq: u64,
}

impl Allocator {
    /// An allocator over `cidrs` with the default quarantine
    /// ([`DEFAULT_QUARANTINE_PER_CIDR`]).
    ///
    /// Fails on: no CIDR, host bits set, an IPv6 CIDR wider than /64, overlapping CIDRs.
    /// Refusing these at start-up is cheaper than discovering a double allocation later.
    pub fn new(cidrs: impl IntoIterator<Item = IpNet>) -> Result<Self, CidrError> {
        Self::with_quarantine(cidrs, DEFAULT_QUARANTINE_PER_CIDR)
    }

    /// Like [`new`](Self::new) with a chosen quarantine size per CIDR (0 disables it, leaving
    /// next-fit alone to spread reuse).
    pub fn with_quarantine(
        cidrs: impl IntoIterator<Item = IpNet>,
        quarantine_per_cidr: usize,
    ) -> Result<Self, CidrError> {
        let mut ranges: Vec<Range> = Vec::new();
        for cidr in cidrs {
            validate(cidr)?;
            let range = Range::new(cidr, quarantine_per_cidr);
            let (lo, hi) = range.span();
            if let Some(other) = ranges.iter().find(|r| {
                IpFamily::of(r.cidr().addr()) == IpFamily::of(cidr.addr()) && {
                    let (olo, ohi) = r.span();
                    lo <= ohi && olo <= hi
                }
            }) {
                return Err(CidrError::Overlap {
                    first: other.cidr(),
                    second: cidr,
                });
            }
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err(CidrError::Empty);
        }
        let mut families = Vec::new();
        let (mut v4, mut v6) = (FamilyRanges::default(), FamilyRanges::default());
        for (i, r) in ranges.iter().enumerate() {
            let family = IpFamily::of(r.cidr().addr());
            if !families.contains(&family) {
                families.push(family);
            }
            match family {
                IpFamily::V4 => v4.order.push(i),
                IpFamily::V6 => v6.order.push(i),
            }
        }
        for fam in [&mut v4, &mut v6] {
            fam.by_address = fam.order.clone();
            fam.by_address.sort_by_key(|&i| ranges[i].span().0);
        }
        Ok(Allocator {
            ranges,
            families,
            v4,
            v6,
            release_seq: 0,
        })
    }

    /// The families that have at least one CIDR, in the order first configured (the first is
    /// the cluster's primary family, as with kube-apiserver's `--service-cluster-ip-range`).
    pub fn families(&self) -> &[IpFamily] {
        &self.families
    }

    /// The configured CIDRs, in configuration order.
    pub fn cidrs(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.ranges.iter().map(Range::cidr)
    }

    /// Hands out a free address of `family`.
    ///
    /// Preference order, so a new Service does not inherit a stale DNS or proxy cache entry
    /// of a just-deleted one:
    /// 1. next-fit in the current CIDR: the first address at or after a cursor that moves
    ///    past each allocation and wraps, skipping allocated *and* quarantined addresses;
    /// 2. the family's other CIDRs in configuration order, each the same way (the allocator
    ///    stays on a CIDR until it has nothing fresh left);
    /// 3. only if no fresh address exists anywhere in the family: the address released the
    ///    longest ago among the quarantined ones.
    ///
    /// Amortised O(1) while filling (the cursor sits on a free address); otherwise one run
    /// query per CIDR, which jumps over allocated runs container by container.
    pub fn allocate_next(&mut self, family: IpFamily) -> Result<Allocation, AllocError> {
        let fam = match family {
            IpFamily::V4 => &mut self.v4,
            IpFamily::V6 => &mut self.v6,
        };
        let n = fam.order.len();
        if n == 0 {
            return Err(AllocError::NoCidrForFamily { family });
        }
        for step in 0..n {
            let pos = (fam.current + step) % n;
            let range = &mut self.ranges[fam.order[pos]];
            if let Some(off) = range.take_fresh() {
                fam.current = pos;
                return Ok(Allocation {
                    address: range.address_at(off),
                    cidr: range.cidr(),
                });
            }
        }
        let oldest = fam
            .order
            .iter()
            .filter_map(|&i| self.ranges[i].oldest_quarantined().map(|seq| (seq, i)))
            .min();
        if let Some((_, i)) = oldest {
            let range = &mut self.ranges[i];
            let off = range
                .take_quarantined()
                .expect("range reported a quarantined offset");
            return Ok(Allocation {
                address: range.address_at(off),
                cidr: range.cidr(),
            });
        }
        Err(AllocError::Exhausted {
            family,
            cidrs: fam.order.iter().map(|&i| self.ranges[i].cidr()).collect(),
        })
    }

    /// Allocates exactly `address` (the `signpost.dev/cluster-ip` annotation) and returns the
    /// CIDR holding it.
    ///
    /// A quarantined address is granted: the quarantine steers only allocate-next and must
    /// never make an explicit request fail. Errors: [`AllocError::OutOfRange`],
    /// [`AllocError::Reserved`], [`AllocError::AlreadyAllocated`]. O(log CIDRs + log bitmap).
    pub fn allocate(&mut self, address: IpAddr) -> Result<IpNet, AllocError> {
        let (i, off) = self.locate_usable(address)?;
        let range = &mut self.ranges[i];
        if range.claim(off) {
            Ok(range.cidr())
        } else {
            Err(AllocError::AlreadyAllocated {
                address,
                cidr: range.cidr(),
            })
        }
    }

    /// Records that `address` is held by a durable claim, when rebuilding the cache after
    /// [`reset`](Self::reset) or on start-up.
    ///
    /// Idempotent (replaying a claim twice is harmless): `Ok(true)` if newly marked,
    /// `Ok(false)` if it already was. A claim outside the CIDRs or on a reserved address is an
    /// error, so the repair pass can report it.
    pub fn mark_in_use(&mut self, address: IpAddr) -> Result<bool, AllocError> {
        let (i, off) = self.locate_usable(address)?;
        Ok(self.ranges[i].claim(off))
    }

    /// Frees `address`; it then sits in its CIDR's quarantine (see
    /// [`allocate_next`](Self::allocate_next)). Idempotent: returns whether it was allocated,
    /// and `false` for addresses outside the CIDRs or reserved.
    pub fn release(&mut self, address: IpAddr) -> bool {
        let Some((i, off)) = self.locate(address) else {
            return false;
        };
        let seq = self.release_seq;
        let released = self.ranges[i].release(off, seq);
        if released {
            self.release_seq += 1;
        }
        released
    }

    /// Whether `address` is allocated (quarantined addresses are not).
    pub fn is_allocated(&self, address: IpAddr) -> bool {
        self.locate(address)
            .is_some_and(|(i, off)| self.ranges[i].is_allocated(off))
    }

    /// Whether `address` was released recently and is being held back from allocate-next.
    pub fn is_quarantined(&self, address: IpAddr) -> bool {
        self.locate(address)
            .is_some_and(|(i, off)| self.ranges[i].is_quarantined(off))
    }

    /// The configured CIDR containing `address`, if any; the `ServiceIP` claim records it.
    pub fn cidr_of(&self, address: IpAddr) -> Option<IpNet> {
        self.locate(address).map(|(i, _)| self.ranges[i].cidr())
    }

    /// Used/free counts of every CIDR, in configuration order (exported as metrics).
    pub fn usage(&self) -> Vec<RangeUsage> {
        self.ranges.iter().map(Range::usage).collect()
    }

    /// Used/free counts of one configured CIDR.
    pub fn usage_of(&self, cidr: IpNet) -> Option<RangeUsage> {
        self.ranges
            .iter()
            .find(|r| r.cidr() == cidr)
            .map(Range::usage)
    }

    /// Forgets every allocation and the quarantine, ready for a rebuild from the durable
    /// claims (after regaining leadership, or when the cache is suspected stale).
    ///
    /// Cursors are kept: they are this process's memory of which addresses it handed out
    /// last. The quarantine is not durable, so after a rebuild only next-fit protects
    /// recently released addresses.
    pub fn reset(&mut self) {
        for range in &mut self.ranges {
            range.reset();
        }
    }

    /// Converts every bitmap to its smallest container form. Done automatically every few
    /// thousand changes and when a CIDR fills up; call it after a bulk rebuild to shrink
    /// memory at once.
    pub fn compact(&mut self) {
        for range in &mut self.ranges {
            range.compact();
        }
    }

    /// Approximate memory held by the bitmaps: their roaring serialized size plus 16 bytes
    /// per quarantined address. Exported so a metric can show that the cache stays small.
    pub fn bitmap_bytes(&self) -> usize {
        self.ranges.iter().map(Range::bitmap_bytes).sum()
    }

    /// Range index and offset of `address`, if it lies in a configured CIDR.
    fn locate(&self, address: IpAddr) -> Option<(usize, u64)> {
        let (fam, value) = match address {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        // Ranges do not overlap: the candidate is the last one starting at or before `value`.
        let pos = fam
            .by_address
            .partition_point(|&i| self.ranges[i].span().0 <= value);
        let i = *fam.by_address.get(pos.checked_sub(1)?)?;
        self.ranges[i].offset_of(value).map(|off| (i, off))
    }

    /// Like `locate`, turning "outside" and "reserved" into errors.
    fn locate_usable(&self, address: IpAddr) -> Result<(usize, u64), AllocError> {
        let (i, off) = self
            .locate(address)
            .ok_or(AllocError::OutOfRange { address })?;
        let range = &self.ranges[i];
        match range.reserved_kind(off) {
            Some(kind) => Err(AllocError::Reserved {
                address,
                cidr: range.cidr(),
                kind,
            }),
            None => Ok((i, off)),
        }
    }
}

fn validate(cidr: IpNet) -> Result<(), CidrError> {
    let network = cidr.trunc();
    if network != cidr {
        return Err(CidrError::HostBitsSet { cidr, network });
    }
    if let IpNet::V6(n) = cidr
        && n.prefix_len() < 64
    {
        let example = IpNet::new(IpAddr::V6(n.network()), 64).expect("64 is a valid prefix");
        return Err(CidrError::Ipv6TooWide { cidr, example });
    }
    Ok(())
}
