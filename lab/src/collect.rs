//! Running `netsnap-collect` inside a lab node, and `PATH` overrides that make
//! a tool hang or disappear for it.
//!
//! The collector is another package's binary, which Cargo does not build for
//! this crate's tests, so its path comes from `NETSNAP_COLLECT_BIN` or the
//! workspace's `target/debug/netsnap-collect` (build it first:
//! `cargo build -p netsnap-collector`). A binary older than the collector's or
//! the bundle crate's sources is refused, so a test never passes on stale code.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::node::LabNode;
use crate::util::{CmdOutput, LabError, LabResult, rand_hex};

/// Environment variable naming the `netsnap-collect` binary to test.
pub const COLLECT_BIN_ENV: &str = "NETSNAP_COLLECT_BIN";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The workspace's cargo target directory (`CARGO_TARGET_DIR` when set, as cargo itself
/// does), where the binaries under test are built.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The `netsnap-analyze` binary lab tests drive (`NETSNAP_ANALYZE_BIN`, else the debug
/// build in [`target_dir`]); None (with a SKIP line) when it is missing, a panic under
/// `NETSNAP_REQUIRE_LAB=1`.
pub fn analyzer_bin() -> Option<PathBuf> {
    let p = std::env::var_os("NETSNAP_ANALYZE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/netsnap-analyze"));
    if p.is_file() {
        return Some(p);
    }
    let msg = format!("no analyzer binary at {}", p.display());
    if crate::lab_required() {
        panic!("{msg}");
    }
    eprintln!("SKIP lab test: {msg}");
    None
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(Some(m));
            }
        }
    }
    newest
}

/// Locates the `netsnap-collect` binary (see the module docs).
pub fn collector_bin() -> LabResult<PathBuf> {
    if let Some(p) = std::env::var_os(COLLECT_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LabError::Unsupported(format!(
                "{COLLECT_BIN_ENV}={} is not a file",
                p.display()
            )))
        };
    }
    let root = workspace_root();
    let bin = target_dir().join("debug").join("netsnap-collect");
    let built = fs::metadata(&bin).and_then(|m| m.modified()).map_err(|_| {
        LabError::Unsupported(format!(
            "{} not found: run `cargo build -p netsnap-collector` first (or set {COLLECT_BIN_ENV})",
            bin.display()
        ))
    })?;
    for src in ["collector", "bundle"] {
        if let Some(newest) = newest_mtime(&root.join(src).join("src"))
            && newest > built
        {
            return Err(LabError::Unsupported(format!(
                "{} is older than {src}/src: run `cargo build -p netsnap-collector` first",
                bin.display()
            )));
        }
    }
    Ok(bin)
}

/// Options of one collector run.
#[derive(Debug, Clone, Default)]
pub struct CollectOptions {
    /// Extra arguments (`-o <bundle>` is added by the harness).
    pub args: Vec<String>,
    /// Extra environment (e.g. a `PATH` from [`ToolDir`]).
    pub env: Vec<(String, String)>,
    /// Kill the collector after this long (default 120 s).
    pub timeout: Option<Duration>,
}

/// What one collector run produced.
#[derive(Debug, Clone)]
pub struct CollectRun {
    /// Exit status, stdout and stderr, wall time.
    pub output: CmdOutput,
    /// Where the bundle was asked to go.
    pub bundle: PathBuf,
    /// Peak RSS of the collector in KiB (from `/usr/bin/time`), when measurable.
    pub max_rss_kib: Option<u64>,
}

impl LabNode {
    /// Runs `netsnap-collect <args> -o <tmp>/bundle-<id>.tar.zst` inside the node.
    pub fn collect(&self, args: &[&str]) -> LabResult<CollectRun> {
        self.collect_with(&CollectOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    /// Runs the collector inside the node with options; measures peak RSS via `/usr/bin/time -f %M`.
    pub fn collect_with(&self, opts: &CollectOptions) -> LabResult<CollectRun> {
        let bin = collector_bin()?;
        let id = rand_hex(8);
        let bundle = self.tmp_dir().join(format!("bundle-{id}.tar.zst"));
        let rss_file = self.tmp_dir().join(format!("rss-{id}.txt"));
        let bin_s = bin.to_string_lossy().into_owned();
        let bundle_s = bundle.to_string_lossy().into_owned();
        let rss_s = rss_file.to_string_lossy().into_owned();
        let time = Path::new("/usr/bin/time");
        let use_time = time.is_file() && std::env::var_os("NETSNAP_LAB_RSS_SAMPLING").is_none();
        let mut argv: Vec<&str> = Vec::new();
        if use_time {
            argv.extend(["/usr/bin/time", "-f", "%M", "-o", &rss_s]);
        }
        argv.push(&bin_s);
        argv.extend(opts.args.iter().map(String::as_str));
        argv.extend(["-o", &bundle_s]);
        let env: Vec<(&str, &str)> = opts
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Without /usr/bin/time, sample the collector's VmHWM (a high-water mark, so sparse
        // samples still see the peak, except growth in its last few milliseconds).
        let mut hwm: Option<u64> = None;
        let mut tick = |nsenter_pid: u32| {
            if use_time {
                return;
            }
            let kids =
                fs::read_to_string(format!("/proc/{nsenter_pid}/task/{nsenter_pid}/children"))
                    .unwrap_or_default();
            for pid in kids.split_whitespace() {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
                if let Some(k) = kib {
                    hwm = Some(hwm.map_or(k, |h| h.max(k)));
                }
            }
        };
        let output = self.run_in_node_with(
            &argv,
            &env,
            opts.timeout.unwrap_or(Duration::from_secs(120)),
            &mut tick,
        )?;
        let max_rss_kib = fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
            .or(hwm);
        Ok(CollectRun {
            output,
            bundle,
            max_rss_kib,
        })
    }
}

/// A directory of symlinks to the real tools, usable as `PATH`, in which chosen tools are
/// missing or replaced by a script that hangs.
#[derive(Debug)]
pub struct ToolDir {
    dir: tempfile::TempDir,
}

impl ToolDir {
    /// Links every program of the usual system directories, except those in `without`.
    pub fn new(without: &[&str]) -> LabResult<ToolDir> {
        let dir = tempfile::Builder::new()
            .prefix("netsnap-lab-path-")
            .tempdir()
            .map_err(|e| LabError::io("creating tool dir", e))?;
        for sys in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            let Ok(rd) = fs::read_dir(sys) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(n) = name.to_str() else { continue };
                if without.contains(&n) {
                    continue;
                }
                let link = dir.path().join(n);
                if link.symlink_metadata().is_err() {
                    // Absolute targets: the collector resolves programs relative to PATH only.
                    let _ = symlink(e.path(), &link);
                }
            }
        }
        Ok(ToolDir { dir })
    }

    /// Replaces `tool` with a shell script that sleeps `secs` seconds (a hung tool).
    pub fn hang(self, tool: &str, secs: u32) -> LabResult<ToolDir> {
        let p = self.dir.path().join(tool);
        let _ = fs::remove_file(&p);
        fs::write(&p, format!("#!/bin/sh\nexec sleep {secs}\n"))
            .map_err(|e| LabError::io(format!("writing {}", p.display()), e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io("chmod hang script", e))?;
        Ok(self)
    }

    /// The directory, to use as the whole `PATH`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `("PATH", dir)` for [`CollectOptions::env`].
    pub fn env(&self) -> (String, String) {
        (
            "PATH".into(),
            self.dir.path().to_string_lossy().into_owned(),
        )
    }
}
