//! Renders parse coverage ([`crate::facts::coverage`]): per artifact, how many lines
//! its parser did not understand. Used by `manifest` (after the artifact list),
//! `inspect … parse` and the `analyze` report.

use std::fmt::Write as _;

use crate::facts::coverage::ArtifactCoverage;

/// The `manifest` text section: one line per parsed artifact.
pub fn render_text(cov: &[ArtifactCoverage]) -> String {
    let mut out = String::new();
    if cov.is_empty() {
        return out;
    }
    let bad = cov.iter().filter(|c| c.unparsed > 0).count();
    let _ = writeln!(
        out,
        "\nparsed {} text artifact(s): {}",
        cov.len(),
        if bad == 0 {
            "every line understood".to_string()
        } else {
            format!("{bad} with lines not understood")
        }
    );
    let width = cov.iter().map(|c| c.path.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>10}  FIRST",
        "PATH", "LINES", "UNPARSED"
    );
    for c in cov {
        let first = c
            .first
            .first()
            .map(|u| format!("line {}: {}", u.line, u.reason))
            .unwrap_or_default();
        let line = format!(
            "{:<width$}  {:>7}  {:>10}  {first}",
            c.path, c.lines, c.unparsed
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Adds `parse_coverage` to the `manifest --format json` document.
pub fn add_to_json(doc: &mut serde_json::Value, cov: &[ArtifactCoverage]) {
    if let (Some(obj), Ok(v)) = (doc.as_object_mut(), serde_json::to_value(cov)) {
        obj.insert("parse_coverage".to_string(), v);
    }
}
