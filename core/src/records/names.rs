//! DNS names derived from Services and endpoints.
//!
//! Every name built here ends up in a `DNSRecord` whose schema only admits lowercase DNS-1123
//! labels, so the helpers either produce such names or refuse; a record the API server would
//! reject is worse than one that leaves a single entry out.

use std::net::IpAddr;

use super::RenderError;

/// Longest name (without the trailing dot) that fits in a DNS message and in the CRD schema.
pub const MAX_NAME_LEN: usize = 253;

/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;

/// Whether `label` is a lowercase DNS-1123 label, the only spelling the CRD schema admits for
/// host names and the labels of `fqdn`.
pub fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// Normalises the `--cluster-domain` flag: one trailing dot tolerated, case folded, every label
/// a DNS-1123 label. Exposed so the flag can be checked once at start-up instead of failing
/// every render.
pub fn normalize_cluster_domain(cluster_domain: &str) -> Result<String, RenderError> {
    let domain = cluster_domain
        .strip_suffix('.')
        .unwrap_or(cluster_domain)
        .to_ascii_lowercase();
    if domain.len() > MAX_NAME_LEN || !domain.split('.').all(is_dns_label) {
        return Err(RenderError::InvalidClusterDomain(cluster_domain.to_owned()));
    }
    Ok(domain)
}

/// `<service>.<namespace>.svc.<cluster-domain>`: the name the DNS specification gives a Service.
pub fn service_fqdn(
    name: &str,
    namespace: &str,
    cluster_domain: &str,
) -> Result<String, RenderError> {
    let domain = normalize_cluster_domain(cluster_domain)?;
    for (what, label) in [("name", name), ("namespace", namespace)] {
        if !is_dns_label(label) {
            return Err(RenderError::InvalidServiceName {
                field: what,
                value: label.to_owned(),
            });
        }
    }
    let fqdn = format!("{name}.{namespace}.svc.{domain}");
    if fqdn.len() > MAX_NAME_LEN {
        return Err(RenderError::NameTooLong(fqdn));
    }
    Ok(fqdn)
}

/// The host name of an endpoint without an explicit `hostname`: its address with `.` and `:`
/// written as `-`, as CoreDNS does (`10.244.0.4` → `10-244-0-4`, `fd00::7` → `fd00--7`).
///
/// Unlike CoreDNS, a compressed IPv6 address that starts or ends with `::` gets a `0` at that
/// end (`::1` → `0--1`), because a label may not start or end with `-`; `0::1` still reads
/// back as the same address.
pub fn dashed_address(ip: IpAddr) -> String {
    let mut name = ip.to_string().replace(['.', ':'], "-");
    if name.starts_with('-') {
        name.insert(0, '0');
    }
    if name.ends_with('-') {
        name.push('0');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "web-0", "10-244-0-4", "fd00--7", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn dashed() {
        let cases = [
            ("10.244.0.4", "10-244-0-4"),
            ("fd00::7", "fd00--7"),
            ("::1", "0--1"),
            ("fd00::", "fd00--0"),
            ("2001:db8:0:0:1:0:0:1", "2001-db8--1-0-0-1"),
        ];
        for (ip, want) in cases {
            let name = dashed_address(ip.parse().unwrap());
            assert_eq!(name, want);
            assert!(is_dns_label(&name));
        }
    }

    #[test]
    fn cluster_domains() {
        assert_eq!(
            normalize_cluster_domain("cluster.local").unwrap(),
            "cluster.local"
        );
        assert_eq!(
            normalize_cluster_domain("Example.Internal.").unwrap(),
            "example.internal"
        );
        for bad in [
            "",
            ".",
            "cluster.local..",
            "a..b",
            "-x.local",
            "under_score.local",
        ] {
            assert!(normalize_cluster_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fqdn() {
        assert_eq!(
            service_fqdn("hostnames", "demo", "cluster.local.").unwrap(),
            "hostnames.demo.svc.cluster.local"
        );
        assert!(service_fqdn("", "demo", "cluster.local").is_err());
        // A valid 249-character domain whose service names no longer fit in 253 characters.
        let long = format!("{0}.{0}.{0}.{1}", "d".repeat(63), "e".repeat(57));
        assert!(matches!(
            service_fqdn("a", "b", &long),
            Err(RenderError::NameTooLong(_))
        ));
    }
}
