//! The ADDRESSES column of `kubectl get dnsrecords` (`status.addressSummary`).
//!
//! The column has to stay narrow and stable: a handful of characters that tell a human whether
//! the record resolves and to what, never the whole list (that is what the spec is for).

/// Upper bound of `status.addressSummary` in the CRD schema.
pub const MAX_SUMMARY_LEN: usize = 64;

/// Shown for a Service that should have virtual IPs but has none yet, as `kubectl` shows a
/// LoadBalancer's missing external IP.
pub const PENDING: &str = "<pending>";

/// Shown when the record is complete but has no addresses (a headless Service without ready
/// endpoints), as `kubectl get endpoints` shows an empty Endpoints object.
pub const NONE: &str = "<none>";

/// Most addresses listed in full. Two covers a dual-stack Service's VIPs; anything longer is a
/// headless Service's pod list, which is summarised as its first address and a count.
const MAX_LISTED: usize = 2;

/// Summarises `addresses` (already in display order, IPv4 first) out of `total` addresses the
/// record really has (`total` may exceed `addresses.len()` when the lists were truncated):
///
/// - none: `<none>`
/// - one or two that fit: `10.200.0.7`, `10.200.0.7,fd00::7`
/// - otherwise: `10.244.0.4 +2 more`
pub fn addresses<S: AsRef<str>>(addresses: &[S], total: usize) -> String {
    let total = total.max(addresses.len());
    let Some(first) = addresses.first() else {
        return NONE.to_owned();
    };
    if total <= MAX_LISTED && total == addresses.len() {
        let joined = addresses
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        if joined.len() <= MAX_SUMMARY_LEN {
            return joined;
        }
    }
    let summary = format!("{} +{} more", first.as_ref(), total - 1);
    clip(&summary)
}

/// Summarises an alias target: the name itself, clipped to the column's bound.
pub fn cname(target: &str) -> String {
    clip(target)
}

/// Cuts `text` to [`MAX_SUMMARY_LEN`], marking the cut with `...` so nobody copies a clipped
/// name as if it were whole.
fn clip(text: &str) -> String {
    if text.len() <= MAX_SUMMARY_LEN {
        return text.to_owned();
    }
    // Names and addresses are ASCII; find a char boundary anyway rather than panic.
    let mut end = MAX_SUMMARY_LEN - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let cases: &[(&[&str], usize, &str)] = &[
            (&[], 0, "<none>"),
            (&["10.200.0.7"], 1, "10.200.0.7"),
            (&["10.200.0.7", "fd00::7"], 2, "10.200.0.7,fd00::7"),
            (
                &["10.244.0.4", "10.244.1.38", "10.244.2.20"],
                3,
                "10.244.0.4 +2 more",
            ),
            // Truncated lists still count every address.
            (
                &["10.244.0.4", "10.244.1.38"],
                7000,
                "10.244.0.4 +6999 more",
            ),
            (&["fd00::7"], 1, "fd00::7"),
        ];
        for (addrs, total, want) in cases {
            assert_eq!(addresses(addrs, *total), *want, "{addrs:?}");
        }
    }

    #[test]
    fn long_addresses_are_summarised_within_bound() {
        let a = "fd00:1111:2222:3333:4444:5555:6666:7777";
        let b = "fd00:1111:2222:3333:4444:5555:6666:7778";
        let s = addresses(&[a, b], 2);
        assert_eq!(s, format!("{a} +1 more"));
        assert!(s.len() <= MAX_SUMMARY_LEN);
    }

    #[test]
    fn cnames() {
        assert_eq!(cname("example.com"), "example.com");
        let long = format!("{}.example.com", "a".repeat(63));
        let s = cname(&long);
        assert_eq!(s.len(), MAX_SUMMARY_LEN);
        assert!(s.ends_with("..."));
    }
}
