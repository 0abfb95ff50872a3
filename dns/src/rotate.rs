//! Answer rotation: each answer gives a name's addresses starting one further along, so
//! clients that connect to the first address (most of them: `getaddrinfo` callers, Java,
//! Go's dialer for one family) spread over a headless Service's pods, or a dual VIP's
//! addresses, instead of all picking the lowest.
//!
//! Round-robin by a per-server query counter rather than a shuffle: every address comes first
//! equally often, and a test can tell the order apart from chance. Only runs of A, or of AAAA,
//! records at one name move; CNAMEs (whose order is the chain's), SRV records (clients pick by
//! weight) and the additional section keep their order.

use crate::table::{Answer, Data};

/// Rotates, by `by` places to the left, every maximal run of consecutive A (or AAAA) answers
/// at the same name.
pub fn rotate(answers: &mut [Answer], by: usize) {
    let mut start = 0;
    while start < answers.len() {
        let mut end = start + 1;
        while end < answers.len() && same_rrset(&answers[start], &answers[end]) {
            end += 1;
        }
        let run = &mut answers[start..end];
        if run.len() > 1 && matches!(run[0].data, Data::A(_) | Data::Aaaa(_)) {
            let len = run.len();
            run.rotate_left(by % len);
        }
        start = end;
    }
}

fn same_rrset(a: &Answer, b: &Answer) -> bool {
    a.name == b.name
        && matches!(
            (&a.data, &b.data),
            (Data::A(_), Data::A(_)) | (Data::Aaaa(_), Data::Aaaa(_))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, ip: &str) -> Answer {
        Answer {
            name: name.into(),
            ttl: 5,
            data: Data::A(ip.parse().unwrap()),
        }
    }

    fn aaaa(name: &str, ip: &str) -> Answer {
        Answer {
            name: name.into(),
            ttl: 5,
            data: Data::Aaaa(ip.parse().unwrap()),
        }
    }

    fn firsts(answers: &[Answer]) -> Vec<String> {
        answers
            .iter()
            .map(|a| match &a.data {
                Data::A(ip) => ip.to_string(),
                Data::Aaaa(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_address_comes_first_equally_often() {
        let base = vec![a("w", "10.0.0.1"), a("w", "10.0.0.2"), a("w", "10.0.0.3")];
        let mut first = std::collections::BTreeMap::new();
        for n in 0..300 {
            let mut got = base.clone();
            rotate(&mut got, n);
            // A rotation, never a reordering: the cyclic order is kept.
            let pos = got.iter().position(|x| *x == base[0]).unwrap();
            for i in 0..3 {
                assert_eq!(got[(pos + i) % 3], base[i]);
            }
            *first.entry(firsts(&got)[0].clone()).or_insert(0) += 1;
        }
        assert_eq!(first.values().copied().collect::<Vec<_>>(), vec![100; 3]);
    }

    #[test]
    fn runs_rotate_separately_and_other_records_stay() {
        let cname = Answer {
            name: "alias".into(),
            ttl: 5,
            data: Data::Cname("w".into()),
        };
        let mut got = vec![
            cname.clone(),
            a("w", "10.0.0.1"),
            a("w", "10.0.0.2"),
            aaaa("w", "fd00::1"),
            aaaa("w", "fd00::2"),
            aaaa("w", "fd00::3"),
        ];
        rotate(&mut got, 1);
        assert_eq!(got[0], cname);
        assert_eq!(
            firsts(&got[1..]),
            ["10.0.0.2", "10.0.0.1", "fd00::2", "fd00::3", "fd00::1"]
        );
        // One address, or none: nothing to do.
        let mut one = vec![a("w", "10.0.0.1")];
        rotate(&mut one, 7);
        assert_eq!(firsts(&one), ["10.0.0.1"]);
        rotate(&mut [], 3);
        // Different names are different runs.
        let mut two = vec![a("x", "10.0.0.1"), a("y", "10.0.0.2")];
        rotate(&mut two, 1);
        assert_eq!(firsts(&two), ["10.0.0.1", "10.0.0.2"]);
    }
}
