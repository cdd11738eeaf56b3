//! CNI and node configuration files: `/etc/cni/net.d/*`, host-local IPAM
//! state under `/var/lib/cni/networks/`, `/run/flannel/subnet.env`,
//! `/var/lib/kubelet/config.yaml`, `/etc/os-release`.
//!
//! Every file is read inside the host root (see `fileio`: regular files only,
//! at most [`CONFIG_FILE_CAP`] bytes, abandoned at the per-unit timeout) and
//! passed through [`crate::secrets`] before it is stored: a file without
//! credentials lands byte for byte, one with credentials lands with them
//! replaced by `<withheld: …>` markers, a kubeconfig does not land at all; the
//! record's `withheld*` attributes say what and why.
//!
//! Symlinks in the trees resolve inside the host root; FIFOs, sockets and
//! devices are recorded as refused. An absent file or directory is recorded `unavailable` (a node without
//! flannel has no subnet.env: information, not an error).

use std::sync::Arc;
use std::time::Instant;

use netsnap_bundle::{ArtifactSpec, ArtifactStatus, BundleWriter, Completion, WriteError, layout};

use crate::options::HostPaths;
use crate::secrets::{Filtered, filter_config};
use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::fileio::{
    CONFIG_FILE_CAP, ReadError, RootDir, record_read_error, run_bounded_async,
};

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

/// All configuration files.
#[derive(Debug, Clone, Copy)]
pub struct FilesStep;

impl Step for FilesStep {
    fn name(&self) -> &'static str {
        "config-files"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let host: HostPaths = ctx.host.clone();
            let root = match RootDir::host(&host) {
                Ok(r) => Arc::new(r),
                Err(e) => return Err(StepError::Other(format!("host root: {e}"))),
            };
            // (bundle path, absolute node path)
            let mut copies: Vec<(String, String)> = Vec::new();
            for (prefix, dir) in [
                (layout::config::CNI_NET_D, "/etc/cni/net.d"),
                (layout::config::CNI_NETWORKS, "/var/lib/cni/networks"),
            ] {
                let listed = {
                    let root = root.clone();
                    run_bounded_async(dir, ctx.options.timeout, &ctx.cancel, move || {
                        root.list_tree(dir, MAX_FILES_PER_TREE)
                    })
                    .await
                };
                let files = match listed {
                    Ok(f) => f,
                    Err(e) => {
                        let spec = ArtifactSpec::raw_file(prefix, layout::content::FILE)
                            .with_attribute("source_path", dir);
                        let e = match e {
                            ReadError::NotFound(_) => {
                                ReadError::NotFound(format!("{dir} on this node"))
                            }
                            e => e,
                        };
                        tally.add_result(record_read_error(
                            &ctx.writer,
                            spec,
                            &e,
                            Default::default(),
                        ));
                        continue;
                    }
                };
                if files.len() >= MAX_FILES_PER_TREE {
                    ctx.note(format!(
                        "{dir}: only the first {MAX_FILES_PER_TREE} files were copied"
                    ));
                }
                for rel in files {
                    let bundle_path = format!("{prefix}/{rel}");
                    if layout::validate_path(&bundle_path).is_err() {
                        continue;
                    }
                    copies.push((bundle_path, format!("{dir}/{rel}")));
                }
            }
            copies.push((
                layout::config::FLANNEL_SUBNET.into(),
                "/run/flannel/subnet.env".into(),
            ));
            copies.push((
                layout::config::KUBELET_CONFIG.into(),
                "/var/lib/kubelet/config.yaml".into(),
            ));
            let os_release = if root.open_regular("/etc/os-release").is_err()
                && root.open_regular("/usr/lib/os-release").is_ok()
            {
                "/usr/lib/os-release"
            } else {
                "/etc/os-release"
            };
            copies.push((layout::node::OS_RELEASE.into(), os_release.into()));
            for (bundle_path, abs) in copies {
                if let Some(r) = ctx.cancel.reason() {
                    tally.add_result(
                        ctx.writer.record_missing(
                            ArtifactSpec::raw_file(bundle_path, layout::content::FILE)
                                .with_attribute("source_path", abs),
                            ArtifactStatus::Failed,
                            format!("not read: {}", r.as_str()),
                            Completion::default(),
                        ),
                    );
                    continue;
                }
                let started = Instant::now();
                let read = {
                    let root = root.clone();
                    let abs = abs.clone();
                    run_bounded_async(&root.display(&abs), ctx.options.timeout, &ctx.cancel, {
                        let root = root.clone();
                        move || root.read_capped(&abs, CONFIG_FILE_CAP)
                    })
                    .await
                };
                let spec = ArtifactSpec::raw_file(&bundle_path, layout::content::FILE)
                    .with_attribute("source_path", &abs);
                tally.add_result(store_config(&ctx.writer, spec, read, started));
            }
            Ok(tally)
        })
    }
}
