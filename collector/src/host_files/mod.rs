//! CNI and node configuration files: `/etc/cni/net.d/*`, host-local IPAM
//! state under `/var/lib/cni/networks/`, `/run/flannel/subnet.env`,
//! `/var/lib/kubelet/config.yaml`, `/etc/os-release`.
//!
//! Every file is read inside the host root (see `fileio`: regular files only,
//! at most [`CONFIG_FILE_CAP`](crate::sys::fileio::CONFIG_FILE_CAP) bytes, abandoned at the per-unit timeout) and
//! passed through [`crate::secrets`] before it is stored: a file without
//! credentials lands byte for byte, one with credentials lands with them
//! replaced by `<withheld: …>` markers, a kubeconfig does not land at all; the
//! record's `withheld*` attributes say what and why.
//!
//! Symlinks in the trees resolve inside the host root; FIFOs, sockets and
//! devices are recorded as refused. An absent file or directory is recorded `unavailable` (a node without
//! flannel has no subnet.env: information, not an error).

pub mod step;

use std::time::Instant;

use netsnap_bundle::{ArtifactSpec, ArtifactStatus, BundleWriter, Completion, WriteError};

use crate::secrets::{Filtered, filter_config};
use crate::sys::fileio::{ReadError, record_read_error};

/// At most this many files are copied from one directory tree.
pub const MAX_FILES_PER_TREE: usize = 2000;

/// At most this many withheld locations are listed in one record's `withheld` attribute.
const MAX_WITHHELD_LISTED: usize = 50;

/// Stores one filtered configuration file, or records why it was not stored.
pub fn store_config(
    writer: &BundleWriter,
    spec: ArtifactSpec,
    read: Result<Vec<u8>, ReadError>,
    started: Instant,
) -> Result<netsnap_bundle::ArtifactRecord, WriteError> {
    let bytes = match read {
        Ok(b) => b,
        Err(e) => return record_read_error(writer, spec, &e, started.elapsed()),
    };
    let done = Completion {
        duration: started.elapsed(),
        ..Completion::default()
    };
    match filter_config(&bytes) {
        Filtered::Verbatim => writer.add_bytes(spec, &bytes, done),
        Filtered::Redacted {
            content,
            withheld,
            format,
        } => {
            let mut listed: Vec<String> = withheld
                .iter()
                .take(MAX_WITHHELD_LISTED)
                .map(|w| format!("{} ({})", w.location, w.what))
                .collect();
            if withheld.len() > MAX_WITHHELD_LISTED {
                listed.push(format!("… {} more", withheld.len() - MAX_WITHHELD_LISTED));
            }
            let how = if format == "text" {
                "secret values replaced by <withheld: …> markers, other lines as read".to_string()
            } else {
                format!(
                    "secret values replaced by <withheld: …> markers; re-serialized as {format} (comments and key order not kept)"
                )
            };
            let spec = spec
                .with_attribute("withheld", listed.join("; "))
                .with_attribute("withheld_count", withheld.len().to_string())
                .with_attribute("withheld_reason", "credentials never leave the node")
                .with_attribute("redaction", how);
            writer.add_bytes(spec, &content, done)
        }
        Filtered::WithheldWhole { reason, servers } => {
            let mut spec = spec
                .with_attribute("withheld", "whole file")
                .with_attribute("withheld_reason", reason.clone());
            if !servers.is_empty() {
                spec = spec.with_attribute("kubeconfig_servers", servers.join(","));
            }
            writer.record_missing(
                spec,
                ArtifactStatus::Skipped,
                format!("withheld: {reason}; credentials never leave the node"),
                done,
            )
        }
    }
}
