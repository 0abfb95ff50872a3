//! A DNSRecord checked and turned into the answers the table holds for each of its names.
//!
//! Every name must lie in the zone and be the record's own (its Service's name, or below it):
//! a record that names another namespace's Service, or fails any check, is rejected whole.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use signpost_crds::{DNSRecordSpec, RecordType};

use crate::table::{MAX_LABEL_LEN, MAX_NAME_LEN, RrSet, fold, in_zone};

/// Checks a name from a record: lowercase letters, digits, `-` and `_` (SRV owners), labels of
/// 1 to 63 characters, at most 253 in all. Returns it folded, without a trailing dot.
fn check_name(what: &str, name: &str) -> Result<String, String> {
    let folded = fold(name);
    let ok = !folded.is_empty()
        && folded.len() <= MAX_NAME_LEN
        && folded.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(folded)
    } else {
        Err(format!("{what} {name:?} is not a valid DNS name"))
    }
}

fn check_owner(what: &str, name: &str, domain: &str) -> Result<String, String> {
    let name = check_name(what, name)?;
    if in_zone(&name, domain) && name != domain {
        Ok(name)
    } else {
        Err(format!(
            "{what} {name:?} is not inside the cluster domain {domain:?}"
        ))
    }
}

/// Checks that a record of `namespace` names a Service of that namespace:
/// `<service>.<namespace>.svc.<domain>`, one label for the Service. Namespaces are the trust
/// boundary of the API (whoever may write DNSRecords in one may not touch another), so a record
/// must not answer for another namespace's names, for the apex or for the empty non-terminals
/// (`<namespace>.svc.<domain>`) that every Service of the namespace shares.
fn check_own_fqdn(fqdn: &str, namespace: &str, domain: &str) -> Result<(), String> {
    let parent = format!("{namespace}.svc.{domain}");
    let service = fqdn
        .strip_suffix(&parent)
        .and_then(|head| head.strip_suffix('.'))
        .filter(|label| !namespace.is_empty() && !label.is_empty() && !label.contains('.'));
    match service {
        Some(_) => Ok(()),
        None => Err(format!(
            "fqdn {fqdn:?} is not the name of a Service in the record's namespace \
             {namespace:?} (<service>.{parent})"
        )),
    }
}

/// Checks that an owner name other than the fqdn (an SRV name) lies strictly under the fqdn, so
/// a record's names all belong to its own Service and namespace.
fn check_under_fqdn(what: &str, name: &str, fqdn: &str, namespace: &str) -> Result<(), String> {
    let under = name
        .strip_suffix(fqdn)
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'));
    if under {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not under the record's own name {fqdn:?}: a record answers \
             only for its Service in namespace {namespace:?}"
        ))
    }
}

/// A record's answers: per name, and the reverse (PTR) entries: address → the name it
/// points back to.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) sets: BTreeMap<String, RrSet>,
    pub(crate) ptrs: Vec<(IpAddr, String)>,
}

/// Turns a record's spec into its answers per name, or says why it cannot be served. All or
/// nothing: serving part of a record would give answers that look complete and are not.
/// `namespace` is the record's: every owner name must be its Service's (see
/// [`check_own_fqdn`]).
///
/// PTR entries (specification §2.3.3, §2.4.3): a ClusterIP record's addresses point to its
/// fqdn; every host's addresses to `<host>.<fqdn>`. A headless record's own addresses get
/// none beyond its hosts' (its hosts are its ready endpoints). A headless record's names
/// without data are dropped, so a headless Service without ready endpoints is NXDOMAIN
/// (§2.4.1), not an empty name.
pub(crate) fn compile(
    spec: &DNSRecordSpec,
    domain: &str,
    namespace: &str,
) -> Result<Compiled, String> {
    let sets = compile_sets(spec, domain, namespace)?;
    let fqdn = fold(&spec.fqdn);
    let mut ptrs = Vec::new();
    for (name, set) in &sets {
        let points_back = match spec.record_type {
            RecordType::ClusterIP => *name == fqdn,
            RecordType::Headless => *name != fqdn,
            RecordType::ExternalName => false,
        };
        if points_back {
            let addresses = set
                .a
                .iter()
                .map(|ip| IpAddr::V4(*ip))
                .chain(set.aaaa.iter().map(|ip| IpAddr::V6(*ip)));
            ptrs.extend(addresses.map(|ip| (ip, name.clone())));
        }
    }
    ptrs.sort();
    ptrs.dedup();
    let mut sets = sets;
    if spec.record_type == RecordType::Headless {
        sets.retain(|_, set| !set.is_empty());
    }
    Ok(Compiled { sets, ptrs })
}

fn compile_sets(
    spec: &DNSRecordSpec,
    domain: &str,
    namespace: &str,
) -> Result<BTreeMap<String, RrSet>, String> {
    let ttl = u32::try_from(spec.ttl).map_err(|_| format!("ttl {} is negative", spec.ttl))?;
    let fqdn = check_owner("fqdn", &spec.fqdn, domain)?;
    check_own_fqdn(&fqdn, namespace, domain)?;
    let mut sets: BTreeMap<String, RrSet> = BTreeMap::new();
    let top = set_at(&mut sets, &fqdn, ttl);
    top.a = parse_all(&spec.ipv4, "ipv4", "IPv4")?;
    top.aaaa = parse_all(&spec.ipv6, "ipv6", "IPv6")?;
    match (spec.record_type, &spec.cname) {
        (RecordType::ExternalName, Some(target)) => {
            if !top.a.is_empty() || !top.aaaa.is_empty() {
                return Err(
                    "an ExternalName record has addresses (a CNAME cannot share its name)".into(),
                );
            }
            top.cname = Some(check_name("cname", target)?);
        }
        (RecordType::ExternalName, None) => {
            return Err("an ExternalName record has no cname".into());
        }
        (_, Some(_)) => {
            return Err(format!(
                "a {} record has a cname",
                spec.record_type.as_str()
            ));
        }
        (_, None) => {}
    }
    for host in &spec.hosts {
        if host.name.contains('.') {
            return Err(format!("host name {:?} is not one DNS label", host.name));
        }
        let name = check_owner("host", &format!("{}.{fqdn}", host.name), domain)?;
        if name == fqdn {
            return Err("a host has the record's own name".into());
        }
        let set = set_at(&mut sets, &name, ttl);
        set.a
            .extend(parse_all::<Ipv4Addr>(&host.ipv4, "host ipv4", "IPv4")?);
        set.aaaa
            .extend(parse_all::<Ipv6Addr>(&host.ipv6, "host ipv6", "IPv6")?);
    }
    for srv in &spec.srv {
        let name = check_owner("srv name", &srv.name, domain)?;
        if name == fqdn {
            return Err("an SRV entry has the record's own name".into());
        }
        check_under_fqdn("srv name", &name, &fqdn, namespace)?;
        let mut targets = Vec::with_capacity(srv.targets.len());
        for target in &srv.targets {
            let port = u16::try_from(target.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("srv port {} is out of range", target.port))?;
            targets.push((port, check_name("srv target", &target.host)?));
        }
        set_at(&mut sets, &name, ttl).srv.extend(targets);
    }
    // A name's CNAME excludes other data there; only the fqdn may carry one.
    if sets
        .iter()
        .any(|(name, set)| *name != fqdn && set.cname.is_some())
    {
        return Err("a CNAME below the record's name".into());
    }
    Ok(sets)
}

fn set_at<'a>(sets: &'a mut BTreeMap<String, RrSet>, name: &str, ttl: u32) -> &'a mut RrSet {
    sets.entry(name.to_owned()).or_insert_with(|| RrSet {
        ttl,
        ..RrSet::default()
    })
}

/// Parses every address of `list` as `family` (`IPv4` or `IPv6`), or says which entry of the
/// field `what` is not one.
fn parse_all<A: FromStr>(list: &[String], what: &str, family: &str) -> Result<Vec<A>, String> {
    list.iter()
        .map(|a| {
            a.parse()
                .map_err(|_| format!("{what} entry {a:?} is not an {family} address"))
        })
        .collect()
}
