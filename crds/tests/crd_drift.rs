//! The chart's CRDs must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/signpost/crds");
    let mut stale = Vec::new();
    for (file, expected) in signpost_crds::rendered_crds().unwrap() {
        let path = dir.join(&file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != expected {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "CRD YAML is out of date with the Rust types: {stale:?}; run `just crds` and commit the result"
    );
}

#[test]
fn schemas_are_structural() {
    for (file, yaml) in signpost_crds::rendered_crds().unwrap() {
        assert!(
            !yaml.contains("x-kubernetes-preserve-unknown-fields"),
            "{file} has a free-form field; every Signpost field has a schema"
        );
        assert!(
            !yaml.contains("anyOf") && !yaml.contains("oneOf"),
            "{file} is not structural"
        );
    }
}
