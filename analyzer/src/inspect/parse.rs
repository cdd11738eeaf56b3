//! `parse`: per text artifact, how many lines its parser did not understand, and the
//! first of them with line number and reason (what the other views silently lack).

use netsnap_bundle::Bundle;
use serde::Serialize;

use super::table::Table;
use super::{InspectArgs, InspectError, Outcome, emit};
use crate::facts::coverage::parse_coverage;

/// One unparsed line, or one artifact's summary when all its lines were understood.
#[derive(Debug, Serialize)]
pub struct ParseRow {
    /// Artifact path.
    pub path: String,
    /// Content id.
    pub content: String,
    /// Lines in the artifact.
    pub lines: usize,
    /// Lines not understood.
    pub unparsed: usize,
    /// 1-based line of a quoted unparsed line (`None` on a summary row).
    pub line: Option<usize>,
    /// Why that line was not understood.
    pub reason: Option<String>,
    /// The line's text.
    pub text: Option<String>,
}

/// `inspect parse`.
pub fn parse(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let mut rows = Vec::new();
    for c in parse_coverage(bundle) {
        let row = |line, reason, text| ParseRow {
            path: c.path.clone(),
            content: c.content.clone(),
            lines: c.lines,
            unparsed: c.unparsed,
            line,
            reason,
            text,
        };
        if c.first.is_empty() {
            rows.push(row(None, None, None));
        }
        for u in &c.first {
            rows.push(row(
                Some(u.line),
                Some(u.reason.clone()),
                Some(u.text.clone()),
            ));
        }
    }
    if rows.is_empty() {
        return Ok(Outcome::NoData(
            "parse: the bundle has no text artifact a parser reads".to_string(),
        ));
    }
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["ARTIFACT", "LINES", "UNPARSED", "LINE", "REASON", "TEXT"]);
        for r in rows {
            let text: String = r.text.as_deref().unwrap_or("").chars().take(60).collect();
            t.row(vec![
                r.path.clone(),
                r.lines.to_string(),
                r.unparsed.to_string(),
                r.line.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                r.reason.clone().unwrap_or_else(|| "-".into()),
                if text.is_empty() { "-".into() } else { text },
            ]);
        }
        t.render()
    })
}
