//! `manifest.json`: what was collected, how, and what could not be.
//!
//! Every artifact the collector tried to produce has exactly one
//! [`ArtifactRecord`], whether or not it produced content, so a reader can tell
//! "not collected, because …" ([`ArtifactStatus::Failed`], `Skipped`,
//! `Unavailable`) from "collected, empty" (`Ok` with `size == 0`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The format version this crate writes.
pub const FORMAT_VERSION: &str = "1.2";
/// Major part of [`FORMAT_VERSION`]: readers refuse bundles with a larger major.
pub const FORMAT_MAJOR: u32 = 1;
/// Minor part of [`FORMAT_VERSION`]: additions that old readers may ignore.
pub const FORMAT_MINOR: u32 = 2;
/// The format version of a redacted bundle: 1.3 added the optional
/// [`Manifest::redaction`] record, which only redacted bundles carry.
pub const REDACTED_FORMAT_VERSION: &str = "1.3";

/// The whole manifest, stored as the first tar entry `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// `MAJOR.MINOR`, e.g. `1.0`.
    pub format_version: String,
    /// The program that wrote the bundle.
    pub tool: ToolInfo,
    /// The node the bundle describes.
    pub node: NodeInfo,
    /// When and how the collection ran.
    pub collection: CollectionInfo,
    /// One record per artifact the collector attempted, sorted by path.
    pub artifacts: Vec<ArtifactRecord>,
    /// Present when the bundle was redacted (format 1.3): what was replaced,
    /// with which key, and what was withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Redaction>,
}

/// The redaction record of a redacted bundle (`docs/bundle-format.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Redaction {
    /// The program that redacted the bundle.
    pub tool: ToolInfo,
    /// A short public fingerprint of the key (never the key): bundles redacted
    /// with the same fingerprint use the same mappings and can be joined.
    pub key_fingerprint: String,
    /// The classes of values replaced (`ipv4`, `ipv6`, `mac`, `names`, …).
    pub classes: Vec<String>,
    /// Paths of artifacts that could not be redacted and were withheld (their
    /// record says `failed` with the reason).
    #[serde(default)]
    pub withheld: Vec<String>,
    /// Paths of artifacts that could not be redacted and were kept as they
    /// were because the user asked for it (`--keep-unredactable`).
    #[serde(default)]
    pub not_redacted: Vec<String>,
    /// Secret values removed from configuration files: `path: location (what)`.
    #[serde(default)]
    pub secrets_removed: Vec<String>,
    /// Earlier redactions of the same bundle with other keys, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Redaction>,
}

impl Manifest {
    /// The record for `path`, if the collector attempted it.
    pub fn artifact(&self, path: &str) -> Option<&ArtifactRecord> {
        self.artifacts.iter().find(|a| a.path == path)
    }

    /// The record holding `path`'s data: `path`'s own record, or, when it was skipped
    /// because another artifact already holds the same output (attribute
    /// [`SAME_AS_ATTRIBUTE`]), that artifact's record (one hop).
    pub fn resolve(&self, path: &str) -> Option<&ArtifactRecord> {
        resolve(&self.artifacts, path)
    }

    /// Core artifacts that failed or are incomplete (see [`incomplete_core`]).
    pub fn incomplete_core(&self) -> Vec<&ArtifactRecord> {
        incomplete_core(&self.artifacts)
    }

    /// Records whose status says the content is missing (failed, skipped, unavailable).
    pub fn missing(&self) -> impl Iterator<Item = &ArtifactRecord> {
        self.artifacts.iter().filter(|a| !a.status.has_content())
    }

    /// Parses `MAJOR.MINOR` out of a version string.
    pub fn parse_version(v: &str) -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }
}

/// Attribute of a `skipped` record whose output would have been byte for byte the
/// output of another artifact (the same program under two names, e.g.
/// `iptables-nft-save` when `iptables-save` is the nft variant): its value is that
/// artifact's path. Readers look there ([`Manifest::resolve`]).
pub const SAME_AS_ATTRIBUTE: &str = "same_as";

/// [`Manifest::resolve`] over a list of records.
pub fn resolve<'a>(records: &'a [ArtifactRecord], path: &str) -> Option<&'a ArtifactRecord> {
    let find = |p: &str| records.iter().find(|a| a.path == p);
    let rec = find(path)?;
    if rec.status == ArtifactStatus::Skipped
        && let Some(target) = rec.attributes.get(SAME_AS_ATTRIBUTE)
        && let Some(t) = find(target)
    {
        return Some(t);
    }
    Some(rec)
}

/// Core artifacts ([`crate::layout::CORE`]) among `records` that failed or are
/// incomplete (status `failed` or `partial`), leaving out those whose group still
/// holds a complete artifact (the conntrack table read from `/proc` after
/// `conntrack -L` failed).
pub fn incomplete_core(records: &[ArtifactRecord]) -> Vec<&ArtifactRecord> {
    let mut out = Vec::new();
    for group in crate::layout::CORE {
        if group
            .iter()
            .filter_map(|p| resolve(records, p))
            .any(|r| r.status == ArtifactStatus::Ok)
        {
            continue;
        }
        out.extend(
            records
                .iter()
                .filter(|r| group.contains(&r.path.as_str()))
                .filter(|r| matches!(r.status, ArtifactStatus::Failed | ArtifactStatus::Partial)),
        );
    }
    out
}

/// Name and version of the producing program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolInfo {
    /// Program name, e.g. `netsnap-collect`.
    pub name: String,
    /// Program version (semver).
    pub version: String,
}

/// Identity of the node the bundle was collected on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfo {
    /// Kubernetes node name, when known (`--node-name`, `$NODE_NAME`, or matched via the API).
    pub name: Option<String>,
    /// `uname -n` of the node.
    pub hostname: String,
    /// `uname -r` of the node.
    pub kernel_release: String,
    /// `uname -m` of the node.
    #[serde(default)]
    pub machine: Option<String>,
}

/// When the collection ran, with which options, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CollectionInfo {
    /// UTC start time (RFC 3339).
    pub started_at: DateTime<Utc>,
    /// UTC end time (RFC 3339). Time-dependent analysis uses this, never the analysis clock.
    pub finished_at: DateTime<Utc>,
    /// How the run ended.
    pub outcome: CollectionOutcome,
    /// The options the collector ran with (free-form JSON object, producer-defined).
    #[serde(default)]
    pub options: serde_json::Value,
    /// Run-level notes: missing privileges, deadline hit, and so on.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The collector's own resource usage at the end of the run (format 1.1; absent in
    /// older bundles and from producers that do not measure it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_usage: Option<ResourceUsage>,
}

/// Resource usage of the collecting process, from `getrusage(2)` just before the
/// manifest is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceUsage {
    /// Peak resident set size of the collector process itself (`RUSAGE_SELF` `ru_maxrss`), KiB.
    pub peak_rss_kib: u64,
    /// Peak RSS of the largest waited-for child (`RUSAGE_CHILDREN` `ru_maxrss`: nft,
    /// iptables-save, conntrack, ...), KiB; 0 when no child ran. Linux counts a child's
    /// pre-exec image (the collector's own pages), so it is at least the collector's RSS
    /// when that child was spawned.
    pub children_peak_rss_kib: u64,
    /// User CPU time of the collector process, milliseconds.
    pub user_cpu_ms: u64,
    /// System CPU time of the collector process, milliseconds.
    pub system_cpu_ms: u64,
}

/// How a collection run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectionOutcome {
    /// Every step ran to its end (some may still have failed; see the records).
    Complete,
    /// The global deadline cut some steps off.
    DeadlineExceeded,
    /// The run was interrupted (Ctrl-C / SIGTERM); what finished is in the bundle.
    Interrupted,
    /// Every step ran to its end, but a core artifact ([`crate::layout::CORE`]: a
    /// ruleset dump, the conntrack table, an API list) failed, timed out or was cut;
    /// `collection.notes` name each one, why, and the option that would get it.
    Partial,
}

/// One artifact the collector attempted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactRecord {
    /// Path inside the bundle, `/`-separated, relative (see `layout`).
    pub path: String,
    /// `raw` (a tool's output, byte for byte) or `native` (JSON the collector produced).
    pub kind: ArtifactKind,
    /// Content identifier telling readers which parser applies, e.g. `iptables-save`.
    pub content: String,
    /// Where the bytes came from.
    pub source: ArtifactSource,
    /// Command line, when the artifact is a command's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Network namespace id (`layout::HOST_NETNS` or `ns-<inode>`) the artifact describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Whether content is present and complete.
    pub status: ArtifactStatus,
    /// Exit status of the command, when there was one and it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// Wall time of the step, in milliseconds.
    pub duration_ms: u64,
    /// Bytes stored in the bundle (0 when there is no content).
    pub size: u64,
    /// Lower-case hex sha256 of the stored bytes; absent when there is no content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why the step failed, was skipped, or is partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when the content was cut at a size cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
    /// The first bytes of the command's stderr (lossy UTF-8, capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Producer-defined extra facts about this artifact (backend name, sample number, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// `raw` or `native`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A program's output or a file's content, exactly as printed or read.
    Raw,
    /// JSON (or JSON Lines) the collector produced itself, typed in this crate.
    Native,
}

/// Where an artifact's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactSource {
    /// The stdout of a program.
    Command,
    /// A file read from the node (including `/proc` and `/sys`).
    File,
    /// Kernel state read over netlink.
    Netlink,
    /// The Kubernetes API.
    KubernetesApi,
    /// The container runtime (crictl, docker).
    Runtime,
    /// Active probes the collector sent (DNS queries).
    Probe,
    /// Computed by the collector from other artifacts (correlations).
    Derived,
}

/// Content status of an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStatus {
    /// Content present and complete.
    Ok,
    /// Content present but incomplete: truncated, timed out mid-stream, or the command failed after printing.
    Partial,
    /// Not collected: the step failed (`error` says why).
    Failed,
    /// Not collected on purpose (an option such as `--no-api`).
    Skipped,
    /// Not collected because the source does not exist on this node (no IPVS in the kernel,
    /// program not installed). Information, not an error.
    Unavailable,
}

impl ArtifactStatus {
    /// True when the bundle holds bytes for this artifact.
    pub fn has_content(self) -> bool {
        matches!(self, ArtifactStatus::Ok | ArtifactStatus::Partial)
    }
}

/// Records a cut at a size cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Truncation {
    /// Bytes kept.
    pub kept_bytes: u64,
    /// Which cap cut it.
    pub reason: TruncationReason,
}

/// Which size cap truncated an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncationReason {
    /// The per-artifact cap (`--max-artifact-size`).
    ArtifactCap,
    /// The whole-bundle cap (`--max-bundle-size`).
    TotalCap,
    /// A producer-side cap on entries (e.g. `ipvsadm -Lnc` capped at N lines).
    EntryCap,
}
