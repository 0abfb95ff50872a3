//! The report's JSON: keys prefixed and merged, medians.

use super::flips::percentile;

/// `summary` (a JSON object) with every key prefixed.
pub(crate) fn prefixed(prefix: &str, summary: serde_json::Value) -> serde_json::Value {
    match summary {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other,
    }
}

/// Adds the keys of `extra` (a JSON object) to `report` (one too).
pub(crate) fn extend(report: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(report), serde_json::Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
}

/// The median of `values` (sorts them).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0)
}
