//! CNI and node configuration files, copied verbatim (capped): `/etc/cni/net.d/*`,
//! host-local IPAM state under `/var/lib/cni/networks/`, `/run/flannel/subnet.env`,
//! `/var/lib/kubelet/config.yaml`, `/etc/os-release`.
//!
//! An absent file or directory is recorded `unavailable` (a node without
//! flannel has no subnet.env: information, not an error).

use std::path::Path;
use std::sync::Arc;

use netsnap_bundle::{ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::fileio::copy_file;
use crate::runner::{BoxFuture, RunContext, Step, StepError, Tally};

/// At most this many files are copied from one directory tree.
pub const MAX_FILES_PER_TREE: usize = 2000;

/// Regular files under `dir` (recursively, no symlink following), relative paths, sorted.
pub fn list_tree(dir: &Path, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&abs) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if ft.is_dir() {
                stack.push((e.path(), r));
            } else if ft.is_file() && out.len() < max {
                out.push(r);
            }
        }
    }
    out.sort();
    out
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
            let mut copies: Vec<(String, String, std::path::PathBuf)> = Vec::new();
            for (prefix, dir) in [
                (layout::config::CNI_NET_D, "/etc/cni/net.d"),
                (layout::config::CNI_NETWORKS, "/var/lib/cni/networks"),
            ] {
                let abs = ctx.host.path(dir);
                if !abs.is_dir() {
                    tally.add_result(
                        ctx.writer.record_missing(
                            ArtifactSpec::raw_file(prefix, layout::content::FILE)
                                .with_attribute("source_path", dir),
                            ArtifactStatus::Unavailable,
                            format!("{dir} does not exist on this node"),
                            Completion::default(),
                        ),
                    );
                    continue;
                }
                let files = list_tree(&abs, MAX_FILES_PER_TREE);
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
                    copies.push((bundle_path, layout::content::FILE.into(), abs.join(&rel)));
                }
            }
            for (bundle_path, abs) in [
                (layout::config::FLANNEL_SUBNET, "/run/flannel/subnet.env"),
                (
                    layout::config::KUBELET_CONFIG,
                    "/var/lib/kubelet/config.yaml",
                ),
            ] {
                copies.push((
                    bundle_path.into(),
                    layout::content::FILE.into(),
                    ctx.host.path(abs),
                ));
            }
            let os_release = ["/etc/os-release", "/usr/lib/os-release"]
                .iter()
                .map(|p| ctx.host.path(p))
                .find(|p| p.exists())
                .unwrap_or_else(|| ctx.host.path("/etc/os-release"));
            copies.push((
                layout::node::OS_RELEASE.into(),
                layout::content::FILE.into(),
                os_release,
            ));
            for (bundle_path, content, src) in copies {
                let rec = copy_file(
                    &ctx.writer,
                    ArtifactSpec::raw_file(bundle_path, &content),
                    &src,
                    None,
                    ctx.options.timeout,
                    &ctx.cancel,
                )
                .await?;
                tally.add(&rec);
            }
            Ok(tally)
        })
    }
}
