//! Tests of the allocator: examples for each rule, a model-based property test, and the
//! memory/throughput measurements quoted in `docs/ipam.md` (the slow ones are `#[ignore]`d;
//! run them with `cargo test --release -p signpost-controllers ipam -- --ignored --nocapture`).

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn alloc(cidrs: &[&str]) -> Allocator {
    Allocator::new(cidrs.iter().map(|c| net(c))).expect("valid CIDRs")
}

/// The address the allocator hands out next in IPv4; the rule under test is which one.
fn next_v4(a: &mut Allocator) -> IpAddr {
    a.allocate_next(IpFamily::V4).unwrap().address
}

/// [`next_v4`] for IPv6.
fn next_v6(a: &mut Allocator) -> IpAddr {
    a.allocate_next(IpFamily::V6).unwrap().address
}

/// Every address of a CIDR, reserved ones included (small CIDRs only).
fn addresses(cidr: IpNet) -> Vec<IpAddr> {
    match cidr {
        IpNet::V4(n) => (u32::from(n.network())..=u32::from(n.broadcast()))
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
            .collect(),
        IpNet::V6(n) => (u128::from(n.network())..=u128::from(n.broadcast()))
            .map(|v| IpAddr::V6(Ipv6Addr::from(v)))
            .collect(),
    }
}

use crate::random::SplitMix64 as SplitMix;

// ---- construction ------------------------------------------------------------------------

#[test]
fn construction_refuses_bad_cidr_sets_and_names_the_cidr() {
    assert_eq!(
        Allocator::new(Vec::<IpNet>::new()).unwrap_err(),
        CidrError::Empty
    );

    let err = Allocator::new([net("fd00:10::/48")]).unwrap_err();
    assert!(matches!(err, CidrError::Ipv6TooWide { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("fd00:10::/48") && msg.contains("fd00:10::/64"),
        "{msg}"
    );

    let err = Allocator::new([net("10.96.0.5/12")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "service CIDR 10.96.0.5/12 has host bits set; did you mean 10.96.0.0/12?"
    );

    let err = Allocator::new([net("10.96.0.0/12"), net("10.100.0.0/16")]).unwrap_err();
    assert_eq!(
        err,
        CidrError::Overlap {
            first: net("10.96.0.0/12"),
            second: net("10.100.0.0/16")
        }
    );
    assert!(err.to_string().contains("10.96.0.0/12") && err.to_string().contains("10.100.0.0/16"));
    assert!(Allocator::new([net("fd00::/64"), net("fd00::/64")]).is_err());

    // Adjacent CIDRs and CIDRs of different families do not overlap.
    let a = alloc(&["10.0.0.0/24", "10.0.1.0/24", "fd00::/64", "0.0.0.0/32"]);
    assert_eq!(a.families(), &[IpFamily::V4, IpFamily::V6]);
    assert_eq!(a.cidrs().count(), 4);
    let v6_first = alloc(&["fd00::/120", "10.0.0.0/24"]);
    assert_eq!(v6_first.families(), &[IpFamily::V6, IpFamily::V4]);
    assert!(Allocator::new([net("fd00::/64")]).is_ok());
}

// ---- reserved addresses ------------------------------------------------------------------

#[test]
fn reserved_addresses_are_refused_and_never_handed_out() {
    let mut a = alloc(&["10.0.0.0/30", "fd00::/126"]);
    let err = a.allocate(ip("10.0.0.0")).unwrap_err();
    assert_eq!(
        err,
        AllocError::Reserved {
            address: ip("10.0.0.0"),
            cidr: net("10.0.0.0/30"),
            kind: ReservedKind::NetworkAddress
        }
    );
    assert_eq!(
        err.to_string(),
        "10.0.0.0 is the network address of service CIDR 10.0.0.0/30 and is never allocated"
    );
    assert!(matches!(
        a.allocate(ip("10.0.0.3")),
        Err(AllocError::Reserved {
            kind: ReservedKind::BroadcastAddress,
            ..
        })
    ));
    assert!(matches!(
        a.mark_in_use(ip("fd00::")),
        Err(AllocError::Reserved {
            kind: ReservedKind::SubnetRouterAnycast,
            ..
        })
    ));
    assert!(!a.release(ip("10.0.0.0")));

    let got: HashSet<IpAddr> = (0..2).map(|_| next_v4(&mut a)).collect();
    assert_eq!(got, HashSet::from([ip("10.0.0.1"), ip("10.0.0.2")]));
    assert!(matches!(
        a.allocate_next(IpFamily::V4),
        Err(AllocError::Exhausted { .. })
    ));
    let got: HashSet<IpAddr> = (0..3).map(|_| next_v6(&mut a)).collect();
    assert_eq!(
        got,
        HashSet::from([ip("fd00::1"), ip("fd00::2"), ip("fd00::3")])
    );
}

#[test]
fn point_to_point_and_single_address_cidrs_use_every_address() {
    let mut a = alloc(&["10.0.0.0/31", "10.0.1.7/32", "fd00::/127", "fd00:1::9/128"]);
    let capacities: Vec<u64> = a.usage().iter().map(|u| u.capacity).collect();
    assert_eq!(capacities, vec![2, 1, 2, 1]);
    for addr in [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.1.7",
        "fd00::",
        "fd00::1",
        "fd00:1::9",
    ] {
        assert_eq!(
            a.allocate(ip(addr)),
            Ok(a.cidr_of(ip(addr)).unwrap()),
            "{addr}"
        );
    }
    assert!(a.allocate_next(IpFamily::V4).is_err());
    assert!(a.allocate_next(IpFamily::V6).is_err());
}

// ---- specific allocation, release, errors ------------------------------------------------

#[test]
fn release_then_allocate_specific_round_trips() {
    let mut a = alloc(&["10.96.0.0/24", "fd00::/64"]);
    for addr in [ip("10.96.0.77"), ip("fd00::beef")] {
        assert!(a.allocate(addr).is_ok());
        assert!(a.is_allocated(addr));
        assert!(matches!(
            a.allocate(addr),
            Err(AllocError::AlreadyAllocated { .. })
        ));
        assert!(a.release(addr));
        assert!(!a.is_allocated(addr));
        assert!(a.is_quarantined(addr));
        assert!(!a.release(addr), "release is idempotent");
        // Quarantine never refuses an explicit request.
        assert_eq!(a.allocate(addr), Ok(a.cidr_of(addr).unwrap()));
        assert!(a.is_allocated(addr));
        assert!(!a.is_quarantined(addr));
    }
    let err = a.allocate(ip("10.96.0.77")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "10.96.0.77 in service CIDR 10.96.0.0/24 is already allocated"
    );
}

#[test]
fn out_of_range_addresses_are_reported() {
    let mut a = alloc(&["10.96.0.0/24"]);
    for addr in ["10.96.1.0", "10.95.255.255", "0.0.0.0", "fd00::1"] {
        let err = a.allocate(ip(addr)).unwrap_err();
        assert_eq!(err, AllocError::OutOfRange { address: ip(addr) });
        assert_eq!(
            err.to_string(),
            format!("{addr} is not in any configured service CIDR")
        );
        assert_eq!(a.mark_in_use(ip(addr)), Err(err));
        assert!(!a.release(ip(addr)));
        assert!(!a.is_allocated(ip(addr)));
        assert_eq!(a.cidr_of(ip(addr)), None);
    }
    assert_eq!(
        a.allocate_next(IpFamily::V6),
        Err(AllocError::NoCidrForFamily {
            family: IpFamily::V6
        })
    );
    assert_eq!(a.cidr_of(ip("10.96.0.255")), Some(net("10.96.0.0/24")));
}

#[test]
fn mark_in_use_is_idempotent() {
    let mut a = alloc(&["10.0.0.0/24"]);
    assert_eq!(a.mark_in_use(ip("10.0.0.9")), Ok(true));
    assert_eq!(a.mark_in_use(ip("10.0.0.9")), Ok(false));
    assert_eq!(a.usage()[0].used, 1);
}

// ---- filling and exhaustion --------------------------------------------------------------

#[test]
fn filling_a_slash_16_yields_65534_addresses_then_exhausted() {
    let cidr = net("10.96.0.0/16");
    let mut a = Allocator::new([cidr]).unwrap();
    let mut seen = HashSet::new();
    loop {
        match a.allocate_next(IpFamily::V4) {
            Ok(got) => {
                assert_eq!(got.cidr, cidr);
                assert!(got.address != ip("10.96.0.0") && got.address != ip("10.96.255.255"));
                assert!(seen.insert(got.address), "{} handed out twice", got.address);
            }
            Err(err) => {
                assert_eq!(
                    err,
                    AllocError::Exhausted {
                        family: IpFamily::V4,
                        cidrs: vec![cidr]
                    }
                );
                assert_eq!(
                    err.to_string(),
                    "no free IPv4 address left in service CIDRs 10.96.0.0/16"
                );
                break;
            }
        }
    }
    assert_eq!(seen.len(), 65_534);
    let usage = a.usage_of(cidr).unwrap();
    assert_eq!(
        (usage.capacity, usage.used, usage.free),
        (65_534, 65_534, 0)
    );
    // The range compacted itself into run containers when it filled up.
    assert!(a.bitmap_bytes() < 64, "{} bytes", a.bitmap_bytes());
}

#[test]
fn every_cidr_of_a_family_is_used_before_exhaustion() {
    let cidrs = ["10.0.0.0/30", "10.1.0.0/29", "10.2.0.0/30", "fd00::/126"];
    let mut a = alloc(&cidrs);
    let mut per_cidr: Vec<IpNet> = Vec::new();
    let mut seen = HashSet::new();
    while let Ok(got) = a.allocate_next(IpFamily::V4) {
        assert!(seen.insert(got.address));
        assert_eq!(a.cidr_of(got.address), Some(got.cidr));
        per_cidr.push(got.cidr);
    }
    assert_eq!(seen.len(), 2 + 6 + 2);
    // Configuration order: the first CIDR fills up before the next is touched.
    let order: Vec<IpNet> = per_cidr.iter().fold(Vec::new(), |mut v, c| {
        if v.last() != Some(c) {
            v.push(*c);
        }
        v
    });
    assert_eq!(order, vec![net(cidrs[0]), net(cidrs[1]), net(cidrs[2])]);
    assert!(
        a.allocate_next(IpFamily::V4)
            .unwrap_err()
            .to_string()
            .ends_with("10.0.0.0/30, 10.1.0.0/29, 10.2.0.0/30")
    );
    // The IPv6 CIDR is untouched by IPv4 exhaustion.
    assert!(a.allocate_next(IpFamily::V6).is_ok());

    // A release in an earlier CIDR is found again (through the quarantine, as nothing else is free).
    assert!(a.release(ip("10.1.0.3")));
    assert_eq!(next_v4(&mut a), ip("10.1.0.3"));
}

// ---- the reuse rule ----------------------------------------------------------------------

#[test]
fn next_fit_does_not_return_a_just_released_address() {
    let mut a = alloc(&["10.0.0.0/24"]);
    let first: Vec<IpAddr> = (0..10).map(|_| next_v4(&mut a)).collect();
    assert_eq!(first[0], ip("10.0.0.1"));
    assert!(a.release(first[3]));
    assert_eq!(next_v4(&mut a), ip("10.0.0.11"));
}

#[test]
fn quarantined_addresses_wait_until_nothing_else_is_free() {
    // Fill a /24, then free three addresses; the cursor has wrapped, so next-fit alone would
    // hand back the lowest one at once.
    let mut a = Allocator::with_quarantine([net("10.0.0.0/24")], 2).unwrap();
    while a.allocate_next(IpFamily::V4).is_ok() {}
    for addr in ["10.0.0.100", "10.0.0.5", "10.0.0.7"] {
        assert!(a.release(ip(addr)));
    }
    // Capacity 2: 10.0.0.100 (oldest) left the quarantine and is the only fresh address.
    assert!(!a.is_quarantined(ip("10.0.0.100")));
    assert_eq!(a.usage()[0].quarantined, 2);
    assert_eq!(next_v4(&mut a), ip("10.0.0.100"));
    // Nothing fresh is left: quarantined addresses come back oldest release first.
    assert_eq!(next_v4(&mut a), ip("10.0.0.5"));
    assert_eq!(next_v4(&mut a), ip("10.0.0.7"));
    assert!(a.allocate_next(IpFamily::V4).is_err());
}

#[test]
fn quarantine_order_spans_cidrs_of_a_family() {
    let mut a = alloc(&["10.0.0.0/30", "10.0.1.0/30"]);
    while a.allocate_next(IpFamily::V4).is_ok() {}
    assert!(a.release(ip("10.0.1.2")));
    assert!(a.release(ip("10.0.0.1")));
    assert_eq!(next_v4(&mut a), ip("10.0.1.2"));
    assert_eq!(next_v4(&mut a), ip("10.0.0.1"));
}

#[test]
fn without_quarantine_next_fit_still_moves_on() {
    let mut a = Allocator::with_quarantine([net("10.0.0.0/24")], 0).unwrap();
    let x = next_v4(&mut a);
    assert!(a.release(x));
    assert!(!a.is_quarantined(x));
    assert_ne!(next_v4(&mut a), x);
}

// ---- IPv6 ---------------------------------------------------------------------------------

#[test]
fn sparse_allocations_in_an_ipv6_slash_64() {
    let cidr = net("fd00:10:96::/64");
    let mut a = Allocator::new([cidr]).unwrap();
    let first = a.allocate_next(IpFamily::V6).unwrap();
    assert_eq!(first.address, ip("fd00:10:96::1"));
    let far = [
        ip("fd00:10:96::ffff:ffff:ffff:ffff"),
        ip("fd00:10:96::1:0:0"),
        ip("fd00:10:96:0:8000::"),
    ];
    for addr in far {
        assert_eq!(a.allocate(addr), Ok(cidr));
    }
    let usage = a.usage_of(cidr).unwrap();
    assert_eq!(usage.capacity, u64::MAX);
    assert_eq!(usage.used, 4);
    assert_eq!(usage.free, u64::MAX - 4);
    assert!(a.is_allocated(far[0]));
    assert!(a.release(far[1]));
    assert!(!a.is_allocated(far[1]));
    assert_eq!(next_v6(&mut a), ip("fd00:10:96::2"));
    assert!(matches!(
        a.allocate(ip("fd00:10:97::1")),
        Err(AllocError::OutOfRange { .. })
    ));
}

#[test]
fn sparse_slash_64_memory_is_well_under_a_megabyte() {
    let cidr = net("fd00:10:96::/64");
    let mut a = Allocator::new([cidr]).unwrap();
    for _ in 0..100_000 {
        a.allocate_next(IpFamily::V6).unwrap();
    }
    let IpAddr::V6(base) = cidr.network() else {
        unreachable!()
    };
    let mut rng = SplitMix(64);
    let mut random = 0;
    while random < 1_000 {
        let addr = IpAddr::V6(Ipv6Addr::from(u128::from(base) | u128::from(rng.next())));
        if a.allocate(addr).is_ok() {
            random += 1;
        }
    }
    assert_eq!(a.usage()[0].used, 101_000);
    let bytes = a.bitmap_bytes();
    println!("IPv6 /64, 100000 sequential + 1000 random: {bytes} bytes");
    assert!(bytes < 256 * 1024, "{bytes} bytes");
}

// ---- rebuild ------------------------------------------------------------------------------

#[test]
fn rebuilding_a_full_range_compacts_it() {
    let mut a = alloc(&["10.96.0.0/20"]);
    for addr in net("10.96.0.0/20").hosts() {
        assert_eq!(a.mark_in_use(addr), Ok(true));
    }
    assert!(a.allocate_next(IpFamily::V4).is_err());
    assert!(a.bitmap_bytes() < 64, "{} bytes", a.bitmap_bytes());
}

#[test]
fn a_fresh_allocator_continues_after_the_highest_claim() {
    let mut a = alloc(&["10.0.0.0/24"]);
    for addr in ["10.0.0.3", "10.0.0.40", "10.0.0.41"] {
        a.mark_in_use(ip(addr)).unwrap();
    }
    assert_eq!(next_v4(&mut a), ip("10.0.0.42"));
}

// ---- property tests -----------------------------------------------------------------------

/// Small CIDRs, so that exhaustion and the quarantine fallback happen often.
const PROP_CIDRS: [&str; 4] = ["10.0.0.0/29", "10.0.1.0/30", "fd00::/125", "fd00:1::/127"];
const PROP_QUARANTINE: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Next(IpFamily),
    Allocate(IpAddr),
    Release(IpAddr),
    Mark(IpAddr),
    Reset,
}

fn any_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..10).prop_map(|o| IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + o))),
        (0xFEu32..0x105).prop_map(|o| IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + o))),
        (0u128..10).prop_map(|o| IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) + o))),
        (0u128..3).prop_map(|o| IpAddr::V6(Ipv6Addr::from((0xfd00_0001u128 << 96) + o))),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![Just(IpFamily::V4), Just(IpFamily::V6)].prop_map(Op::Next),
        2 => any_address().prop_map(Op::Allocate),
        4 => any_address().prop_map(Op::Release),
        1 => any_address().prop_map(Op::Mark),
        1 => Just(Op::Reset),
    ]
}

/// A straightforward model: sets and a queue per CIDR, no bitmaps.
struct Model {
    cidrs: Vec<IpNet>,
    allocated: HashSet<IpAddr>,
    /// Per CIDR: (release sequence, address), oldest first.
    quarantine: Vec<VecDeque<(u64, IpAddr)>>,
    seq: u64,
}

impl Model {
    fn cidr_index(&self, addr: IpAddr) -> Option<usize> {
        self.cidrs.iter().position(|c| c.contains(&addr))
    }

    fn reserved(&self, addr: IpAddr) -> bool {
        self.cidr_index(addr).is_some_and(|i| {
            let c = self.cidrs[i];
            match c {
                IpNet::V4(n) => {
                    n.prefix_len() <= 30 && (addr == c.network() || addr == c.broadcast())
                }
                IpNet::V6(n) => n.prefix_len() <= 126 && addr == c.network(),
            }
        })
    }

    fn usable(&self, i: usize) -> Vec<IpAddr> {
        let mut all = addresses(self.cidrs[i]);
        all.retain(|a| !self.reserved(*a));
        all
    }

    fn quarantined(&self, addr: IpAddr) -> bool {
        self.quarantine
            .iter()
            .any(|q| q.iter().any(|&(_, a)| a == addr))
    }

    fn unquarantine(&mut self, addr: IpAddr) {
        for q in &mut self.quarantine {
            q.retain(|&(_, a)| a != addr);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The allocator agrees with the model on every operation; in particular it never hands
    /// out a reserved, taken or out-of-range address, and hands out a quarantined address only
    /// when no other address of the family is free, oldest release first.
    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(any_op(), 1..120)) {
        let cidrs: Vec<IpNet> = PROP_CIDRS.iter().map(|c| net(c)).collect();
        let mut a = Allocator::with_quarantine(cidrs.clone(), PROP_QUARANTINE).unwrap();
        let mut m = Model {
            quarantine: vec![VecDeque::new(); cidrs.len()],
            cidrs,
            allocated: HashSet::new(),
            seq: 0,
        };
        for op in ops {
            match op {
                Op::Next(family) => {
                    let fresh_free = (0..m.cidrs.len())
                        .filter(|&i| IpFamily::of(m.cidrs[i].addr()) == family)
                        .flat_map(|i| m.usable(i))
                        .any(|x| !m.allocated.contains(&x) && !m.quarantined(x));
                    let oldest = (0..m.cidrs.len())
                        .filter(|&i| IpFamily::of(m.cidrs[i].addr()) == family)
                        .filter_map(|i| m.quarantine[i].front().copied())
                        .min();
                    match a.allocate_next(family) {
                        Ok(got) => {
                            prop_assert_eq!(IpFamily::of(got.address), family);
                            let i = m.cidr_index(got.address).expect("in range");
                            prop_assert_eq!(got.cidr, m.cidrs[i]);
                            prop_assert!(!m.reserved(got.address));
                            prop_assert!(!m.allocated.contains(&got.address));
                            if m.quarantined(got.address) {
                                prop_assert!(!fresh_free, "{} was quarantined", got.address);
                                prop_assert_eq!(Some(got.address), oldest.map(|(_, x)| x));
                                m.unquarantine(got.address);
                            } else {
                                prop_assert!(fresh_free);
                            }
                            m.allocated.insert(got.address);
                        }
                        Err(AllocError::Exhausted { .. }) => {
                            prop_assert!(!fresh_free && oldest.is_none());
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Allocate(addr) | Op::Mark(addr) => {
                    let mark = matches!(op, Op::Mark(_));
                    let res = if mark {
                        a.mark_in_use(addr).map(|_| ())
                    } else {
                        a.allocate(addr).map(|_| ())
                    };
                    match m.cidr_index(addr) {
                        None => prop_assert_eq!(res, Err(AllocError::OutOfRange { address: addr })),
                        Some(_) if m.reserved(addr) => {
                            prop_assert!(matches!(res, Err(AllocError::Reserved { .. })), "{:?}", res);
                        }
                        Some(_) if m.allocated.contains(&addr) && !mark => {
                            prop_assert!(matches!(res, Err(AllocError::AlreadyAllocated { .. })), "{:?}", res);
                        }
                        Some(_) => {
                            prop_assert_eq!(res, Ok(()));
                            m.unquarantine(addr);
                            m.allocated.insert(addr);
                        }
                    }
                }
                Op::Release(addr) => {
                    let was = m.allocated.remove(&addr);
                    prop_assert_eq!(a.release(addr), was);
                    if was {
                        let i = m.cidr_index(addr).unwrap();
                        m.quarantine[i].push_back((m.seq, addr));
                        m.seq += 1;
                        if m.quarantine[i].len() > PROP_QUARANTINE {
                            m.quarantine[i].pop_front();
                        }
                    }
                }
                Op::Reset => {
                    a.reset();
                    m.allocated.clear();
                    for q in &mut m.quarantine {
                        q.clear();
                    }
                }
            }
            for (i, usage) in a.usage().into_iter().enumerate() {
                let used = m.usable(i).into_iter().filter(|x| m.allocated.contains(x)).count();
                prop_assert_eq!(usage.used, used as u64);
                prop_assert_eq!(usage.quarantined, m.quarantine[i].len() as u64);
                prop_assert_eq!(usage.free, usage.capacity - usage.used);
            }
        }
        for cidr in m.cidrs.clone() {
            for addr in addresses(cidr) {
                prop_assert_eq!(a.is_allocated(addr), m.allocated.contains(&addr), "{}", addr);
                prop_assert_eq!(a.is_quarantined(addr), m.quarantined(addr), "{}", addr);
            }
        }
    }

    /// Reset followed by mark-in-use of every allocated address gives back the same
    /// allocations and counts (the quarantine, not being durable, is gone).
    #[test]
    fn mark_in_use_after_reset_rebuilds_the_same_state(
        ops in proptest::collection::vec(any_op(), 1..120)
    ) {
        let cidrs: Vec<IpNet> = PROP_CIDRS.iter().map(|c| net(c)).collect();
        let mut a = Allocator::with_quarantine(cidrs.clone(), PROP_QUARANTINE).unwrap();
        for op in ops {
            match op {
                Op::Next(f) => { let _ = a.allocate_next(f); }
                Op::Allocate(x) => { let _ = a.allocate(x); }
                Op::Release(x) => { a.release(x); }
                Op::Mark(x) => { let _ = a.mark_in_use(x); }
                Op::Reset => a.reset(),
            }
        }
        let all: Vec<IpAddr> = cidrs.iter().flat_map(|c| addresses(*c)).collect();
        let held: Vec<IpAddr> = all.iter().copied().filter(|x| a.is_allocated(*x)).collect();
        let before = a.usage();
        a.reset();
        prop_assert!(a.usage().iter().all(|u| u.used == 0 && u.quarantined == 0));
        for x in &held {
            prop_assert_eq!(a.mark_in_use(*x), Ok(true));
        }
        let after = a.usage();
        for (b, r) in before.iter().zip(&after) {
            prop_assert_eq!(b.used, r.used);
            prop_assert_eq!(b.capacity, r.capacity);
            prop_assert_eq!(r.quarantined, 0);
        }
        for x in all {
            prop_assert_eq!(a.is_allocated(x), held.contains(&x), "{}", x);
        }
    }
}

// ---- measurements (docs/ipam.md) -----------------------------------------------------------

/// Fills `cidr` with allocate-next; returns (addresses, nanoseconds per address).
fn fill(a: &mut Allocator, family: IpFamily) -> (u64, f64) {
    let start = Instant::now();
    let mut n = 0u64;
    while a.allocate_next(family).is_ok() {
        n += 1;
    }
    (n, start.elapsed().as_nanos() as f64 / n as f64)
}

#[test]
fn memory_of_a_full_slash_16() {
    let mut a = alloc(&["10.96.0.0/16"]);
    let (n, _) = fill(&mut a, IpFamily::V4);
    assert_eq!(n, 65_534);
    println!("IPv4 /16 full ({n} addresses): {} bytes", a.bitmap_bytes());
}

#[test]
#[ignore = "fills a /12 (1M addresses); run in release with --ignored --nocapture"]
fn measure_full_slash_12_and_churn() {
    let cidr = net("10.96.0.0/12");
    let mut a = Allocator::new([cidr]).unwrap();
    let (n, ns) = fill(&mut a, IpFamily::V4);
    assert_eq!(n, (1 << 20) - 2);
    println!("IPv4 /12 fill: {n} addresses, {ns:.1} ns per allocate-next");
    println!("IPv4 /12 full: {} bytes", a.bitmap_bytes());

    // Free 1% at random, then churn: release a random allocated address, allocate one.
    let IpAddr::V4(base) = cidr.network() else {
        unreachable!()
    };
    let base = u32::from(base);
    let mut rng = SplitMix(12);
    let random_addr = |rng: &mut SplitMix| {
        IpAddr::V4(Ipv4Addr::from(
            base + 1 + (rng.next() % ((1 << 20) - 2)) as u32,
        ))
    };
    let mut freed = 0;
    while freed < n / 100 {
        if a.release(random_addr(&mut rng)) {
            freed += 1;
        }
    }
    // Churn in batches, timing the two halves apart: free 1,000 random allocated addresses,
    // then allocate 1,000.
    let (mut release_ns, mut alloc_ns) = (0u128, 0u128);
    let batches = 200;
    for _ in 0..batches {
        let victims: Vec<IpAddr> = std::iter::repeat_with(|| random_addr(&mut rng))
            .filter(|x| a.is_allocated(*x))
            .take(1_000)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let start = Instant::now();
        for x in &victims {
            assert!(a.release(*x));
        }
        release_ns += start.elapsed().as_nanos();
        let start = Instant::now();
        for _ in &victims {
            a.allocate_next(IpFamily::V4).unwrap();
        }
        alloc_ns += start.elapsed().as_nanos();
    }
    let ops = f64::from(batches) * 1_000.0;
    println!(
        "IPv4 /12 churn at 99% full: {:.1} ns per release, {:.1} ns per allocate-next",
        release_ns as f64 / ops,
        alloc_ns as f64 / ops
    );
    println!("IPv4 /12 99% full after churn: {} bytes", a.bitmap_bytes());
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn measure_sparse_slash_64() {
    let mut a = alloc(&["fd00:10:96::/64"]);
    let start = Instant::now();
    for _ in 0..100_000 {
        a.allocate_next(IpFamily::V6).unwrap();
    }
    println!(
        "IPv6 /64: {:.1} ns per allocate-next (100000 sequential)",
        start.elapsed().as_nanos() as f64 / 100_000.0
    );
}
