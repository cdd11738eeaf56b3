//! `netsnap-analyze manifest`: a readable summary of what a bundle holds.

use std::fmt::Write as _;

use netsnap_bundle::{ArtifactStatus, Bundle, Manifest};
use serde::Serialize;

use crate::inert::terminal as inert;

/// JSON schema version of the `manifest` command's output.
pub const MANIFEST_SUMMARY_SCHEMA: u32 = 1;

/// Counts of artifacts per status.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct StatusCounts {
    /// Complete artifacts.
    pub ok: usize,
    /// Incomplete artifacts.
    pub partial: usize,
    /// Failed steps.
    pub failed: usize,
    /// Skipped on purpose.
    pub skipped: usize,
    /// Source absent on the node.
    pub unavailable: usize,
}

/// Counts artifacts by status.
pub fn status_counts(manifest: &Manifest) -> StatusCounts {
    let mut c = StatusCounts::default();
    for a in &manifest.artifacts {
        match a.status {
            ArtifactStatus::Ok => c.ok += 1,
            ArtifactStatus::Partial => c.partial += 1,
            ArtifactStatus::Failed => c.failed += 1,
            ArtifactStatus::Skipped => c.skipped += 1,
            ArtifactStatus::Unavailable => c.unavailable += 1,
        }
    }
    c
}

/// The `--format json` document of the `manifest` command.
#[derive(Debug, Serialize)]
pub struct ManifestSummary<'a> {
    /// Output schema version.
    pub schema_version: u32,
    /// Bundle path as given.
    pub bundle: String,
    /// Per-status counts.
    pub counts: StatusCounts,
    /// Archive entries the manifest does not list (ignored).
    pub unknown_entries: &'a [String],
    /// The manifest itself.
    pub manifest: &'a Manifest,
}

/// Builds the JSON summary.
pub fn summary(bundle: &Bundle) -> ManifestSummary<'_> {
    ManifestSummary {
        schema_version: MANIFEST_SUMMARY_SCHEMA,
        bundle: bundle.source().display().to_string(),
        counts: status_counts(bundle.manifest()),
        unknown_entries: bundle.unknown_entries(),
        manifest: bundle.manifest(),
    }
}

/// The outcome as written in the manifest (`complete`, `partial`, `deadline_exceeded`, `interrupted`).
fn outcome_name(outcome: netsnap_bundle::CollectionOutcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Renders the text summary: header, then one line per artifact.
pub fn render_text(manifest: &Manifest) -> String {
    let mut out = String::new();
    let c = &manifest.collection;
    // Missing core data decides whether the bundle can answer: it comes first.
    let incomplete = manifest.incomplete_core();
    if !incomplete.is_empty() {
        let _ = writeln!(
            out,
            "PARTIAL: {} core artifact(s) incomplete; the analysis cannot judge what needs them:",
            incomplete.len()
        );
        for a in &incomplete {
            let why = match (&a.error, &a.truncated) {
                (Some(e), _) => e.clone(),
                (None, Some(t)) => format!(
                    "cut at {} ({} kept)",
                    crate::facts::sources::cap_name(t.reason),
                    human_size(t.kept_bytes)
                ),
                (None, None) => format!("{:?}", a.status).to_lowercase(),
            };
            // The collector's note names the option that would get it (format 1.2).
            let prefix = format!("incomplete: {}", a.path);
            match c.notes.iter().find(|n| n.starts_with(&prefix)) {
                Some(n) => {
                    let _ = writeln!(out, "  {}", n.trim_start_matches("incomplete: "));
                }
                None => {
                    let _ = writeln!(out, "  {}: {why}", a.path);
                }
            }
        }
    }
    let node = manifest.node.name.as_deref().unwrap_or("(unknown node)");
    let _ = writeln!(
        out,
        "bundle format {}  written by {} {}",
        inert(&manifest.format_version),
        inert(&manifest.tool.name),
        inert(&manifest.tool.version)
    );
    let _ = writeln!(
        out,
        "node {}  hostname {}  kernel {}",
        inert(node),
        inert(&manifest.node.hostname),
        inert(&manifest.node.kernel_release)
    );
    if let Some(r) = &manifest.redaction {
        let _ = writeln!(
            out,
            "REDACTED by {} {} (key fingerprint {}): {}; {} secret value(s) removed, {} artifact(s) withheld, {} kept unredacted",
            inert(&r.tool.name),
            inert(&r.tool.version),
            inert(&r.key_fingerprint),
            inert(&r.classes.join(", ")),
            r.secrets_removed.len(),
            r.withheld.len(),
            r.not_redacted.len()
        );
    }
    let secs = (c.finished_at - c.started_at).num_milliseconds() as f64 / 1000.0;
    let _ = writeln!(
        out,
        "collected {} .. {} ({secs:.1} s), outcome {}",
        c.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        c.finished_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        outcome_name(c.outcome)
    );
    if let Some(r) = &c.resource_usage {
        let _ = writeln!(
            out,
            "collector peak RSS {:.1} MiB (largest child {:.1} MiB), CPU {:.2} s user + {:.2} s system",
            r.peak_rss_kib as f64 / 1024.0,
            r.children_peak_rss_kib as f64 / 1024.0,
            r.user_cpu_ms as f64 / 1000.0,
            r.system_cpu_ms as f64 / 1000.0
        );
    }
    for note in &c.notes {
        let _ = writeln!(out, "note: {}", inert(note));
    }
    let counts = status_counts(manifest);
    let _ = writeln!(
        out,
        "{} artifacts: {} ok, {} partial, {} failed, {} skipped, {} unavailable",
        manifest.artifacts.len(),
        counts.ok,
        counts.partial,
        counts.failed,
        counts.skipped,
        counts.unavailable
    );
    let _ = writeln!(out);
    let width = manifest
        .artifacts
        .iter()
        .map(|a| inert(&a.path).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:<11}  {:>9}  DETAIL",
        "PATH", "STATUS", "SIZE"
    );
    for a in &manifest.artifacts {
        let status = format!("{:?}", a.status).to_lowercase();
        let size = if a.status.has_content() {
            human_size(a.size)
        } else {
            "-".to_string()
        };
        let mut detail = String::new();
        if let Some(t) = &a.truncated {
            let _ = write!(
                detail,
                "cut at {} ({} kept) ",
                crate::facts::sources::cap_name(t.reason),
                human_size(t.kept_bytes)
            );
        }
        if let Some(e) = &a.error {
            detail.push_str(e);
        }
        let line = format!(
            "{:<width$}  {:<11}  {:>9}  {}",
            inert(&a.path),
            status,
            size,
            inert(detail.trim_end())
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
