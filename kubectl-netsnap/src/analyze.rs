//! `kubectl netsnap analyze DIR`: runs the `netsnap-analyze` binary over the
//! bundles of a `collect --all-nodes` directory.
//!
//! The plugin execs the analyzer rather than linking it: the analyzer's CLI
//! (rules flags, formats, exit codes) stays the one documented interface, and
//! the plugin binary stays small. The analyzer is looked up in
//! `$NETSNAP_ANALYZE`, next to the plugin, then on `PATH`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the analyzer binary.
pub const ANALYZE_ENV: &str = "NETSNAP_ANALYZE";
/// The analyzer's binary name.
pub const ANALYZE_BIN: &str = "netsnap-analyze";

/// The bundles in `dir`: every non-hidden `*.tar.zst`, sorted (partial downloads are hidden files).
pub fn bundles_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".tar.zst") && entry.file_type()?.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Where the analyzer is: `$NETSNAP_ANALYZE`, next to this executable, else the bare name (PATH).
pub fn analyzer_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(ANALYZE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let sibling = dir.join(ANALYZE_BIN);
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from(ANALYZE_BIN)
}

/// `netsnap-analyze analyze [EXTRA...] BUNDLES...`.
pub fn analyze_command(analyzer: &Path, extra: &[String], bundles: &[PathBuf]) -> Command {
    let mut cmd = Command::new(analyzer);
    cmd.arg("analyze").args(extra).args(bundles);
    cmd
}
