//! Entering a network namespace: the one way the collector does it.
//!
//! A namespace is named by its inode plus the files that refer to it (named
//! bind mounts, `/proc/<pid>/ns/net`), tried in order. A path is used only if
//! it still refers to that inode, so a recycled pid never sends a thread into
//! another namespace. A thread already in the namespace (a fresh thread and the
//! host) does not call `setns`, which would need `CAP_SYS_ADMIN` even for one's
//! own namespace.
//!
//! Call these only on a dedicated thread, never on a tokio worker: the switch
//! is per thread and must not leak into unrelated tasks.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Opens the first of `paths` that still refers to the namespace with `inode`.
pub fn open(inode: u64, paths: &[PathBuf]) -> Result<File, String> {
    let mut last = String::from("no path to the namespace");
    for p in paths {
        match File::open(p) {
            Ok(f) => match f.metadata() {
                Ok(md) if md.ino() == inode => return Ok(f),
                Ok(_) => last = format!("{} now refers to another namespace", p.display()),
                Err(e) => last = format!("{}: {e}", p.display()),
            },
            Err(e) => last = format!("{}: {e}", p.display()),
        }
    }
    Err(format!("namespace gone or not accessible ({last})"))
}

/// Moves the calling thread into the namespace with `inode` (see [`open`]);
/// nothing to do when it is already there.
pub fn enter(inode: u64, paths: &[PathBuf]) -> Result<(), String> {
    if inode_of(Path::new("/proc/thread-self/ns/net")) == Some(inode) {
        return Ok(());
    }
    let f = open(inode, paths)?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))
}

/// The inode a namespace file refers to now.
pub fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_now_names_another_namespace_is_refused() {
        let own = PathBuf::from("/proc/self/ns/net");
        let inode = inode_of(&own).expect("own namespace");
        assert!(open(inode, std::slice::from_ref(&own)).is_ok());
        let e = open(inode + 1, std::slice::from_ref(&own)).unwrap_err();
        assert!(e.contains("now refers to another namespace"), "{e}");
        assert!(enter(inode + 1, &[own]).is_err());
        // Already there: no setns (which would need CAP_SYS_ADMIN).
        assert_eq!(enter(inode, &[]), Ok(()));
    }
}
