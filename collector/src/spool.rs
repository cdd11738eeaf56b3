//! Leftover spools of killed runs.
//!
//! The bundle writer spools under `.netsnap-<pid>-XXXXXX.partial` in the
//! output directory (0700) and removes it on every exit path it sees (drop,
//! error, signal; the CLI calls `remove_live_spools` before a hard exit). A
//! run killed with SIGKILL, or a machine that lost power, leaves it behind:
//! the next run in the same directory removes every spool whose process is
//! gone (no `/proc/<pid>`, or a pid reused by another program).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netsnap_bundle::spool_owner_pid;

/// True when `pid` is a running netsnap collector (`comm` is cut at 15 bytes).
fn is_live_collector(pid: u32) -> bool {
    crate::sys::fileio::read_small(Path::new(&format!("/proc/{pid}/comm")))
        .is_some_and(|c| "netsnap-collect".starts_with(c.as_str()) && !c.is_empty())
}

/// Removes spool directories in `dir` left by collector processes that no
/// longer run; only directories (never symlinks) owned by the current user.
/// Returns the removed paths.
pub fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let me = std::process::id();
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = spool_owner_pid(&name) else {
            continue;
        };
        if pid == me || is_live_collector(pid) {
            continue;
        }
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() && md.uid() == uid && std::fs::remove_dir_all(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_owners_spools_go() {
        let t = tempfile::tempdir().expect("tempdir");
        // pid_max is at most 2^22: this pid cannot exist.
        let dead = t.path().join(".netsnap-99999999-abcdef.partial");
        std::fs::create_dir(&dead).expect("mkdir");
        std::fs::write(dead.join("body.tar.zst"), b"x").expect("write");
        let mine = t
            .path()
            .join(format!(".netsnap-{}-abcdef.partial", std::process::id()));
        std::fs::create_dir(&mine).expect("mkdir");
        // A live process that is not a collector (pid 1): its pid was reused, the spool is stale.
        let reused = t.path().join(".netsnap-1-abcdef.partial");
        std::fs::create_dir(&reused).expect("mkdir");
        let other = t.path().join("unrelated.partial");
        std::fs::create_dir(&other).expect("mkdir");
        let link = t.path().join(".netsnap-99999998-abcdef.partial");
        std::os::unix::fs::symlink(&other, &link).expect("ln");
        let mut removed = remove_stale(t.path());
        removed.sort();
        assert_eq!(removed, vec![reused.clone(), dead.clone()]);
        assert!(mine.exists() && other.exists() && link.exists());
        assert!(!dead.exists() && !reused.exists());
    }
}
