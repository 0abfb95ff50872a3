//! The lookup table: every answer `signpost dns` gives, built from DNSRecords alone.
//!
//! Pure (no I/O, no wire format), so every DNS rule is unit-tested without a cluster or a
//! socket. The watch feeds it one record at a time ([`Table::apply`], [`Table::delete`]):
//! each change touches only the names of that record and their ancestors, never the rest of
//! the table, so a cluster with many Services pays per change, not per Service.
//!
//! Names are keys in lowercase without the trailing dot (`web.default.svc.cluster.local`); a
//! query is looked up after the same folding, which makes lookups case-insensitive.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use signpost_crds::DNSRecord;

use crate::compile::compile;
use crate::reverse::{self, Cidr, ReverseName};

/// Longest name (without the trailing dot) that fits in a DNS message.
pub(crate) const MAX_NAME_LEN: usize = 253;
/// Longest DNS label.
pub(crate) const MAX_LABEL_LEN: usize = 63;
/// How many CNAMEs inside the zone one answer follows: ends loops between ExternalName
/// Services that point at each other.
const MAX_CNAME_CHAIN: usize = 8;
/// TTL (and SOA minimum) of negative answers and of the SOA itself, in seconds: as short as
/// the default record TTL, so a name that appears is not hidden by a cached NXDOMAIN for long.
pub const NEGATIVE_TTL: u32 = 5;
/// The version of the Kubernetes DNS-Based Service Discovery specification answered, served
/// as `dns-version.<zone>. TXT` (specification §2.2).
pub const SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` record: it changes only with the binary.
pub const VERSION_TTL: u32 = 28800;

/// Identifies the DNSRecord object an answer comes from: `(namespace, name)`.
pub type RecordKey = (String, String);

/// What a query asks for, reduced to the types the table distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Service ports.
    Srv,
    /// The alias itself.
    Cname,
    /// The zone's start of authority (only at the apex).
    Soa,
    /// Text (only `dns-version.<zone>`).
    Txt,
    /// The name of an address (reverse names inside the cluster's ranges).
    Ptr,
    /// Everything the name has (A, AAAA, SRV, CNAME).
    Any,
    /// Any other type: answered with NODATA when the name exists.
    Other,
}

/// The data of one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A service port on a host (priority 0, weight 100 / number of targets, as CoreDNS does).
    Srv {
        /// Priority; always 0.
        priority: u16,
        /// Weight; the targets of one name share 100.
        weight: u16,
        /// Port number.
        port: u16,
        /// Host name, lowercase, without the trailing dot.
        target: String,
    },
    /// An alias, lowercase, without the trailing dot.
    Cname(String),
    /// One character-string of text (the schema version).
    Txt(String),
    /// The name an address points back to, lowercase, without the trailing dot.
    Ptr(String),
    /// The zone's SOA, synthesised: the table has no zone file.
    Soa {
        /// Primary name server: `ns.dns.<domain>`.
        mname: String,
        /// Responsible mailbox: `hostmaster.<domain>`.
        rname: String,
        /// Counts table changes, so secondaries (and people) can tell the zone changed.
        serial: u32,
        /// Negative-caching TTL.
        minimum: u32,
    },
}

/// One resource record of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Owner name, lowercase, without the trailing dot.
    pub name: String,
    /// Seconds: the TTL of the DNSRecord it comes from.
    pub ttl: u32,
    /// The record data.
    pub data: Data,
}

/// How a lookup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The name exists (`answers` may be empty: NODATA).
    NoError,
    /// No such name in the cluster domain (also after a CNAME inside the zone).
    NxDomain,
    /// The name is outside the cluster domain: not ours to answer.
    Outside,
}

/// The result of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// How it ended.
    pub status: Status,
    /// The answer section.
    pub answers: Vec<Answer>,
    /// The additional section: the addresses of SRV targets inside the zone.
    pub additionals: Vec<Answer>,
}

/// What [`Table::apply`] did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The record's answers are served (they replaced the previous version's).
    Served,
    /// Same resourceVersion as the version already applied: nothing to do.
    Unchanged,
    /// The record is malformed: none of its answers are served (and the previous version's
    /// are withdrawn). The string says why.
    Rejected(String),
}

/// The answers one record holds for one name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RrSet {
    pub(crate) ttl: u32,
    pub(crate) a: Vec<Ipv4Addr>,
    pub(crate) aaaa: Vec<Ipv6Addr>,
    pub(crate) srv: Vec<(u16, String)>,
    pub(crate) cname: Option<String>,
}

impl RrSet {
    /// Whether the name has no data at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.a.is_empty() && self.aaaa.is_empty() && self.srv.is_empty() && self.cname.is_none()
    }
}

/// One PTR answer an address has: the record it comes from, the name, the TTL.
type PtrEntry = (RecordKey, String, u32);

/// One name of the table.
#[derive(Debug, Default)]
struct Node {
    /// The records holding answers at this name, in key order (usually exactly one).
    owners: Vec<(RecordKey, Arc<RrSet>)>,
    /// How many (record, name) entries lie strictly below this name: a name with none of its
    /// own answers but something below exists (an empty non-terminal such as
    /// `<ns>.svc.<domain>`) and gets NODATA, not NXDOMAIN.
    below: usize,
}

/// What the table remembers about one DNSRecord.
#[derive(Debug)]
struct Entry {
    version: Option<String>,
    names: Vec<String>,
    ptrs: Vec<IpAddr>,
    rejected: Option<String>,
}

/// A rejected record, as the table reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Namespace and name of the DNSRecord.
    pub key: RecordKey,
    /// Its resourceVersion.
    pub version: Option<String>,
    /// Why it is not served.
    pub reason: String,
}

/// Every answer for one cluster domain.
#[derive(Debug)]
pub struct Table {
    domain: String,
    records: HashMap<RecordKey, Entry>,
    names: HashMap<String, Node>,
    /// Address → its PTR answers, ordered so a reverse prefix is a range query.
    ptrs: BTreeMap<IpAddr, Vec<PtrEntry>>,
    /// The ranges whose reverse names are answered here.
    reverse: Vec<Cidr>,
    rejected: usize,
    serial: u32,
}

impl Table {
    /// An empty table for `cluster_domain` (one trailing dot tolerated, case folded).
    pub fn new(cluster_domain: &str) -> Result<Self, String> {
        let domain = signpost_core::records::normalize_cluster_domain(cluster_domain)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            domain,
            records: HashMap::new(),
            names: HashMap::new(),
            ptrs: BTreeMap::new(),
            reverse: Vec::new(),
            rejected: 0,
            serial: 1,
        })
    }

    /// Answers the reverse names (`in-addr.arpa`, `ip6.arpa`) of addresses in `ranges`
    /// (the service and pod CIDRs): a PTR when a record has the address, NXDOMAIN when none
    /// has. Reverse names outside them are not the table's ([`Status::Outside`]).
    pub fn with_reverse_zones(mut self, ranges: impl IntoIterator<Item = Cidr>) -> Self {
        self.reverse = ranges.into_iter().collect();
        self
    }

    /// The cluster domain, lowercase, without the trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// DNSRecords known (served or rejected).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Names that exist in the table (with answers or as parents).
    pub fn names(&self) -> usize {
        self.names.len()
    }

    /// How many records are not served because they are malformed.
    pub fn rejected_count(&self) -> usize {
        self.rejected
    }

    /// Records currently not served because they are malformed, in key order.
    pub fn rejected(&self) -> Vec<Rejection> {
        let mut out: Vec<Rejection> = self
            .records
            .iter()
            .filter_map(|(key, entry)| {
                Some(Rejection {
                    key: key.clone(),
                    version: entry.version.clone(),
                    reason: entry.rejected.clone()?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The serial of the synthesised SOA: bumped by every change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Adds or replaces the answers of one DNSRecord. Touches only that record's names.
    pub fn apply(&mut self, record: &DNSRecord) -> Applied {
        let key = (
            record.metadata.namespace.clone().unwrap_or_default(),
            record.metadata.name.clone().unwrap_or_default(),
        );
        let version = record.metadata.resource_version.clone();
        if let Some(entry) = self.records.get(&key)
            && version.is_some()
            && entry.version == version
        {
            return Applied::Unchanged;
        }
        let compiled = compile(&record.spec, &self.domain, &key.0);
        self.remove(&key);
        self.serial = self.serial.wrapping_add(1);
        match compiled {
            Ok(compiled) => {
                let names: Vec<String> = compiled.sets.keys().cloned().collect();
                for (name, set) in compiled.sets {
                    self.insert(&key, name, Arc::new(set));
                }
                let ttl = u32::try_from(record.spec.ttl).unwrap_or(0);
                let mut ptrs = Vec::with_capacity(compiled.ptrs.len());
                for (ip, name) in compiled.ptrs {
                    let entries = self.ptrs.entry(ip).or_default();
                    let at = entries.partition_point(|(owner, n, _)| (owner, n) < (&key, &name));
                    entries.insert(at, (key.clone(), name, ttl));
                    ptrs.push(ip);
                }
                ptrs.dedup();
                self.records.insert(
                    key,
                    Entry {
                        version,
                        names,
                        ptrs,
                        rejected: None,
                    },
                );
                Applied::Served
            }
            Err(reason) => {
                self.rejected += 1;
                self.records.insert(
                    key,
                    Entry {
                        version,
                        names: Vec::new(),
                        ptrs: Vec::new(),
                        rejected: Some(reason.clone()),
                    },
                );
                Applied::Rejected(reason)
            }
        }
    }

    /// Removes the answers of the DNSRecord `namespace/name`. Returns whether it was known.
    pub fn delete(&mut self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        let known = self.remove(&key);
        if known {
            self.serial = self.serial.wrapping_add(1);
        }
        known
    }

    fn remove(&mut self, key: &RecordKey) -> bool {
        let Some(entry) = self.records.remove(key) else {
            return false;
        };
        if entry.rejected.is_some() {
            self.rejected -= 1;
        }
        for ip in &entry.ptrs {
            if let Some(entries) = self.ptrs.get_mut(ip) {
                entries.retain(|(owner, _, _)| owner != key);
                if entries.is_empty() {
                    self.ptrs.remove(ip);
                }
            }
        }
        for name in &entry.names {
            if let Some(node) = self.names.get_mut(name) {
                node.owners.retain(|(owner, _)| owner != key);
            }
            prune(&mut self.names, name);
            for parent in ancestors(name, &self.domain) {
                if let Some(node) = self.names.get_mut(parent) {
                    node.below = node.below.saturating_sub(1);
                }
                prune(&mut self.names, parent);
            }
        }
        true
    }

    fn insert(&mut self, key: &RecordKey, name: String, set: Arc<RrSet>) {
        for parent in ancestors(&name, &self.domain) {
            self.names.entry(parent.to_owned()).or_default().below += 1;
        }
        let node = self.names.entry(name).or_default();
        let at = node.owners.partition_point(|(owner, _)| owner < key);
        node.owners.insert(at, (key.clone(), set));
    }

    /// `dns-version.<zone>`, the name of the schema version's TXT record.
    fn version_name(&self) -> String {
        format!("dns-version.{}", self.domain)
    }

    /// Whether `name` (any case, trailing dot or not) is the cluster domain or below it.
    pub fn in_zone(&self, name: &str) -> bool {
        let name = fold(name);
        in_zone(&name, &self.domain)
    }

    /// Whether the table answers `name` (any case, trailing dot or not): the cluster domain
    /// and below, and reverse names inside the configured ranges.
    pub fn authoritative(&self, name: &str) -> bool {
        let name = fold(name);
        in_zone(&name, &self.domain) || self.reverse_range(&name).is_some()
    }

    /// The configured range a reverse name lies in, with what the name stands for.
    fn reverse_range(&self, name: &str) -> Option<(Cidr, ReverseName)> {
        let parsed = reverse::parse(name)?;
        let range = parsed.range();
        let cidr = self.reverse.iter().find(|c| c.covers(&range))?;
        Some((*cidr, parsed))
    }

    fn lookup_reverse(&self, name: String, parsed: ReverseName, qtype: QueryType) -> Lookup {
        let mut lookup = Lookup {
            status: Status::NoError,
            answers: Vec::new(),
            additionals: Vec::new(),
        };
        match parsed {
            ReverseName::Address(ip) => match self.ptrs.get(&ip) {
                Some(entries) => {
                    if matches!(qtype, QueryType::Ptr | QueryType::Any) {
                        lookup
                            .answers
                            .extend(entries.iter().map(|(_, target, ttl)| Answer {
                                name: name.clone(),
                                ttl: *ttl,
                                data: Data::Ptr(target.clone()),
                            }));
                    }
                }
                None => lookup.status = Status::NxDomain,
            },
            // An empty non-terminal while some address below it has a PTR.
            ReverseName::Prefix(range) => {
                let (first, last) = range.bounds();
                if self.ptrs.range(first..=last).next().is_none() {
                    lookup.status = Status::NxDomain;
                }
            }
            ReverseName::Below(_) => lookup.status = Status::NxDomain,
        }
        lookup
    }

    /// The SOA for the authority section of a negative answer to `name`: the reverse zone's
    /// for a reverse name inside the configured ranges, the cluster domain's otherwise.
    pub fn soa_for(&self, name: &str) -> Answer {
        let mut soa = self.soa();
        if let Some((cidr, _)) = self.reverse_range(&fold(name)) {
            soa.name = cidr.zone();
        }
        soa
    }

    /// Answers a query for `name` (any case, trailing dot or not) and type `qtype`.
    pub fn lookup(&self, name: &str, qtype: QueryType) -> Lookup {
        let name = fold(name);
        let mut lookup = Lookup {
            status: Status::NoError,
            answers: Vec::new(),
            additionals: Vec::new(),
        };
        if !in_zone(&name, &self.domain) {
            if let Some((_, parsed)) = self.reverse_range(&name) {
                return self.lookup_reverse(name, parsed, qtype);
            }
            lookup.status = Status::Outside;
            return lookup;
        }
        if name == self.version_name() {
            // No record can own this name: every record's names lie under `svc.<zone>`.
            if matches!(qtype, QueryType::Txt | QueryType::Any) {
                lookup.answers.push(Answer {
                    name,
                    ttl: VERSION_TTL,
                    data: Data::Txt(SCHEMA_VERSION.to_owned()),
                });
            }
            return lookup;
        }
        let mut current = name;
        for _ in 0..=MAX_CNAME_CHAIN {
            if current == self.domain {
                if matches!(qtype, QueryType::Soa | QueryType::Any) {
                    lookup.answers.push(self.soa());
                }
                return lookup;
            }
            let Some(node) = self.names.get(&current) else {
                lookup.status = Status::NxDomain;
                return lookup;
            };
            // A CNAME answers every type at its name (RFC 1034 §3.6.2), then resolution goes on
            // at the target when the target is ours.
            let alias = node
                .owners
                .iter()
                .find_map(|(_, set)| Some((set.ttl, set.cname.clone()?)));
            if let Some((ttl, target)) = alias {
                lookup.answers.push(Answer {
                    name: current.clone(),
                    ttl,
                    data: Data::Cname(target.clone()),
                });
                if matches!(qtype, QueryType::Cname | QueryType::Any)
                    || !in_zone(&target, &self.domain)
                {
                    return lookup;
                }
                current = target;
                continue;
            }
            for (_, set) in &node.owners {
                self.answers_of(&current, set, qtype, &mut lookup);
            }
            return lookup;
        }
        // A CNAME loop inside the zone: answer with the chain so far.
        lookup
    }

    fn answers_of(&self, name: &str, set: &RrSet, qtype: QueryType, lookup: &mut Lookup) {
        let answer = |data| Answer {
            name: name.to_owned(),
            ttl: set.ttl,
            data,
        };
        if matches!(qtype, QueryType::A | QueryType::Any) {
            lookup
                .answers
                .extend(set.a.iter().map(|ip| answer(Data::A(*ip))));
        }
        if matches!(qtype, QueryType::Aaaa | QueryType::Any) {
            lookup
                .answers
                .extend(set.aaaa.iter().map(|ip| answer(Data::Aaaa(*ip))));
        }
        if matches!(qtype, QueryType::Srv | QueryType::Any) && !set.srv.is_empty() {
            let weight = u16::try_from(100 / set.srv.len()).unwrap_or(1).max(1);
            for (port, target) in &set.srv {
                lookup.answers.push(answer(Data::Srv {
                    priority: 0,
                    weight,
                    port: *port,
                    target: target.clone(),
                }));
                self.addresses_of(target, &mut lookup.additionals);
            }
        }
    }

    /// The A and AAAA answers of `name`, for the additional section of an SRV answer.
    fn addresses_of(&self, name: &str, out: &mut Vec<Answer>) {
        let Some(node) = self.names.get(name) else {
            return;
        };
        for (_, set) in &node.owners {
            for data in set
                .a
                .iter()
                .map(|ip| Data::A(*ip))
                .chain(set.aaaa.iter().map(|ip| Data::Aaaa(*ip)))
            {
                let answer = Answer {
                    name: name.to_owned(),
                    ttl: set.ttl,
                    data,
                };
                if !out.contains(&answer) {
                    out.push(answer);
                }
            }
        }
    }

    /// The zone's SOA record, for SOA queries at the apex and the authority section of
    /// negative answers (so resolvers can cache them, RFC 2308).
    pub fn soa(&self) -> Answer {
        Answer {
            name: self.domain.clone(),
            ttl: NEGATIVE_TTL,
            data: Data::Soa {
                mname: format!("ns.dns.{}", self.domain),
                rname: format!("hostmaster.{}", self.domain),
                serial: self.serial,
                minimum: NEGATIVE_TTL,
            },
        }
    }
}

/// Drops `name` once nothing is at it or below it.
fn prune(names: &mut HashMap<String, Node>, name: &str) {
    if names
        .get(name)
        .is_some_and(|n| n.owners.is_empty() && n.below == 0)
    {
        names.remove(name);
    }
}

/// Lowercase, without the trailing dot.
pub(crate) fn fold(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

pub(crate) fn in_zone(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1)
}

/// The strict ancestors of `name` down to and including `domain` (none when `name` is not
/// below `domain`).
fn ancestors<'a>(name: &'a str, domain: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let below = in_zone(name, domain) && name != domain;
    name.match_indices('.')
        .map(move |(at, _)| &name[at + 1..])
        .take_while(move |parent| below && parent.len() >= domain.len())
}
