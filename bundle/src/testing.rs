//! Test support (feature `testing`): one way to close a bundle that tests and benches
//! write by hand, instead of a dozen copies of the same `ToolInfo`/`NodeInfo`/
//! `CollectionInfo` block. Not for producers: a real collector records what it measured.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::{
    BundleWriter, CollectionInfo, CollectionOutcome, Manifest, NodeInfo, ToolInfo, WriteError,
};

/// A UTC time from RFC 3339 text (panics on bad text: test data only).
pub fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("test time {rfc3339:?}: {e}"))
        .with_timezone(&Utc)
}

/// The node and run a test bundle says it comes from.
#[derive(Debug, Clone)]
pub struct TestNode {
    /// Kubernetes node name (also the hostname unless [`TestNode::hostname`] says otherwise).
    pub name: Option<String>,
    /// `uname -n`.
    pub hostname: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// `uname -m`.
    pub machine: Option<String>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the run ended (the bundle's capture time).
    pub finished_at: DateTime<Utc>,
    /// How the run ended.
    pub outcome: CollectionOutcome,
    /// The collector options recorded.
    pub options: serde_json::Value,
    /// Run-level notes.
    pub notes: Vec<String>,
}

impl TestNode {
    /// Node `name` (its hostname too), kernel `6.1.0`, no machine, a run of no duration
    /// ending at `finished_at`, complete, no options, no notes.
    pub fn new(name: &str, finished_at: DateTime<Utc>) -> TestNode {
        TestNode {
            name: Some(name.to_string()),
            hostname: name.to_string(),
            kernel_release: "6.1.0".into(),
            machine: None,
            started_at: finished_at,
            finished_at,
            outcome: CollectionOutcome::Complete,
            options: serde_json::json!({}),
            notes: Vec::new(),
        }
    }

    /// A bundle of a collector that knew no Kubernetes node name, only the hostname.
    pub fn without_node_name(mut self) -> TestNode {
        self.name = None;
        self
    }

    /// Another hostname than the node name.
    pub fn hostname(mut self, hostname: &str) -> TestNode {
        self.hostname = hostname.to_string();
        self
    }

    /// `uname -r`.
    pub fn kernel(mut self, release: &str) -> TestNode {
        self.kernel_release = release.to_string();
        self
    }

    /// `uname -m`.
    pub fn machine(mut self, machine: &str) -> TestNode {
        self.machine = Some(machine.to_string());
        self
    }

    /// The run took `seconds` (it started that long before it finished).
    pub fn took(mut self, seconds: i64) -> TestNode {
        self.started_at = self.finished_at - chrono::Duration::seconds(seconds);
        self
    }

    /// How the run ended.
    pub fn outcome(mut self, outcome: CollectionOutcome) -> TestNode {
        self.outcome = outcome;
        self
    }

    /// The collector options recorded in the manifest.
    pub fn options(mut self, options: serde_json::Value) -> TestNode {
        self.options = options;
        self
    }

    /// Run-level notes.
    pub fn notes(mut self, notes: &[&str]) -> TestNode {
        self.notes = notes.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The producer the bundle names: `netsnap-collect 0.1.0`.
    pub fn tool() -> ToolInfo {
        ToolInfo {
            name: "netsnap-collect".into(),
            version: "0.1.0".into(),
        }
    }

    /// The manifest's node section.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            kernel_release: self.kernel_release.clone(),
            machine: self.machine.clone(),
        }
    }

    /// The manifest's collection section.
    pub fn collection_info(&self) -> CollectionInfo {
        CollectionInfo {
            started_at: self.started_at,
            finished_at: self.finished_at,
            outcome: self.outcome,
            options: self.options.clone(),
            notes: self.notes.clone(),
            resource_usage: None,
        }
    }

    /// Closes `writer` as a bundle of this node and run.
    pub fn finish(&self, writer: BundleWriter) -> Result<(PathBuf, Manifest), WriteError> {
        writer.finish(Self::tool(), self.node_info(), self.collection_info())
    }
}

impl BundleWriter {
    /// Closes this writer as a bundle of `node` ([`TestNode::finish`]), for tests that
    /// chain on the writer.
    pub fn finish_as(self, node: &TestNode) -> Result<(PathBuf, Manifest), WriteError> {
        node.finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bundle, ReaderOptions, WriterOptions};

    #[test]
    fn a_test_bundle_says_what_it_was_told() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.tar.zst");
        let w = BundleWriter::create(&path, WriterOptions::default()).expect("writer");
        let at = time("2026-11-28T03:00:04Z");
        TestNode::new("worker-1", at)
            .kernel("6.1.0-27-amd64")
            .machine("x86_64")
            .took(4)
            .outcome(CollectionOutcome::Partial)
            .notes(&["deadline hit"])
            .finish(w)
            .expect("finish");
        let b = Bundle::open(&path, &ReaderOptions::default()).expect("a valid bundle");
        let m = b.manifest();
        assert_eq!(m.node.name.as_deref(), Some("worker-1"));
        assert_eq!(m.node.kernel_release, "6.1.0-27-amd64");
        assert_eq!(m.collection.started_at, time("2026-11-28T03:00:00Z"));
        assert_eq!(m.collection.finished_at, at);
        assert_eq!(m.collection.outcome, CollectionOutcome::Partial);
        assert_eq!(m.collection.notes, vec!["deadline hit".to_string()]);
        assert_eq!(m.tool.name, "netsnap-collect");
    }
}
