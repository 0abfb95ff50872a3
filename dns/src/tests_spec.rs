//! Unit tests of the specification's records that `tests.rs` does not cover: `dns-version`,
//! PTR names, reverse zones, answer rotation, headless Services without ready endpoints.

use serde_json::json;
use signpost_crds::DNSRecord;

use super::table::{Data, QueryType, SCHEMA_VERSION, Status, Table, VERSION_TTL};

const NS: &str = "demo";

fn record(name: &str, version: &str, spec: serde_json::Value) -> DNSRecord {
    serde_json::from_value(json!({
        "apiVersion": "signpost.dev/v1alpha1",
        "kind": "DNSRecord",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": version},
        "spec": spec,
    }))
    .expect("a DNSRecord")
}

fn fqdn(service: &str) -> String {
    format!("{service}.{NS}.svc.cluster.local")
}

fn table() -> Table {
    Table::new("cluster.local").expect("a valid domain")
}

#[test]
fn dns_version_is_a_txt_record_at_the_apex() {
    let t = table();
    for name in ["dns-version.cluster.local", "DNS-Version.Cluster.Local."] {
        let got = t.lookup(name, QueryType::Txt);
        assert_eq!(got.status, Status::NoError);
        assert_eq!(got.answers.len(), 1);
        assert_eq!(got.answers[0].name, "dns-version.cluster.local");
        assert_eq!(got.answers[0].ttl, VERSION_TTL);
        assert_eq!(got.answers[0].data, Data::Txt(SCHEMA_VERSION.into()));
    }
    assert_eq!(SCHEMA_VERSION, "1.1.0");
    // Other types at that name: NODATA, not NXDOMAIN.
    let a = t.lookup("dns-version.cluster.local", QueryType::A);
    assert_eq!(a.status, Status::NoError);
    assert!(a.answers.is_empty());
    // TXT of a Service name: NODATA.
    let mut t = table();
    t.apply(&record(
        "web",
        "1",
        json!({"fqdn": fqdn("web"), "type": "ClusterIP", "ttl": 5, "ipv4": ["10.96.0.10"]}),
    ));
    let txt = t.lookup(&fqdn("web"), QueryType::Txt);
    assert_eq!(txt.status, Status::NoError);
    assert!(txt.answers.is_empty());
    assert_eq!(
        t.lookup("x.dns-version.cluster.local", QueryType::Txt)
            .status,
        Status::NxDomain
    );
}
