//! Verifying a received bundle and saying whether it is complete.
//!
//! The file is opened with the bundle crate's safe reader, which checks the
//! manifest and every artifact's sha256; a stream cut anywhere fails here even
//! if the transport did not notice.

use std::path::Path;

use netsnap_bundle::{
    ArtifactStatus, Bundle, CollectionOutcome, Manifest, ReadError, ReaderOptions,
};

/// A verified bundle's completeness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// True when the run completed and no artifact failed or was cut.
    pub complete: bool,
    /// One line: artifact counts and, when partial, why.
    pub summary: String,
    /// Node name recorded in the manifest.
    pub node: Option<String>,
}

/// Opens and verifies the bundle at `path` (blocking: run it off the async threads).
pub fn verify_file(path: &Path) -> Result<Verdict, ReadError> {
    let bundle = Bundle::open(path, &ReaderOptions::default())?;
    Ok(judge(bundle.manifest()))
}

/// Completeness of a manifest.
pub fn judge(m: &Manifest) -> Verdict {
    let count = |s: ArtifactStatus| m.artifacts.iter().filter(|a| a.status == s).count();
    let failed = count(ArtifactStatus::Failed);
    let partial = count(ArtifactStatus::Partial);
    let mut why = Vec::new();
    match m.collection.outcome {
        CollectionOutcome::Complete => {}
        CollectionOutcome::DeadlineExceeded => why.push("deadline exceeded".to_string()),
        CollectionOutcome::Interrupted => why.push("collector interrupted".to_string()),
        CollectionOutcome::Partial => {
            let core = m.incomplete_core();
            let first = core.first().map(|a| a.path.as_str()).unwrap_or_default();
            why.push(format!(
                "{} core artifact(s) incomplete (first: {first})",
                core.len()
            ));
        }
    }
    if failed > 0 {
        let first = m
            .artifacts
            .iter()
            .find(|a| a.status == ArtifactStatus::Failed)
            .map(|a| a.path.as_str())
            .unwrap_or_default();
        why.push(format!("{failed} failed (first: {first})"));
    }
    if partial > 0 {
        why.push(format!("{partial} cut short"));
    }
    let complete = why.is_empty();
    let mut summary = format!("{} artifacts", m.artifacts.len());
    if !complete {
        summary.push_str(": ");
        summary.push_str(&why.join(", "));
    }
    Verdict {
        complete,
        summary,
        node: m.node.name.clone(),
    }
}
