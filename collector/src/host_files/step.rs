//! The node configuration files [`Step`] (CNI, kubelet, kube-proxy, resolv.conf):
//! each tree read inside the node's root and filtered for secrets before it is stored.

use std::sync::Arc;
use std::time::Instant;

use netsnap_bundle::{ArtifactSpec, ArtifactStatus, Completion, layout};

use crate::options::HostPaths;
use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::fileio::{
    CONFIG_FILE_CAP, ReadError, RootDir, record_read_error, run_bounded_async,
};

use super::{MAX_FILES_PER_TREE, store_config};

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
