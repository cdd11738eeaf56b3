//! `-o -`: the bundle goes to standard output, for `kubectl exec … -o -` and pipes.
//!
//! The bundle writer needs a real file (it spools artifacts and renames the
//! finished bundle into place), so with `-o -` the bundle is written as usual
//! into a private directory under `$TMPDIR` (default `/tmp`), and only once it
//! is complete is it copied to stdout, which receives nothing else. An
//! interrupted or failed run therefore never puts half a bundle on stdout, and
//! the spool directory is removed whatever happens.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The `--output` value that means standard output.
pub const STDOUT_PATH: &str = "-";

/// True when `path` is `-` (standard output).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == STDOUT_PATH
}

/// A private directory holding the bundle until it is sent to stdout.
#[derive(Debug)]
pub struct StdoutSpool {
    dir: tempfile::TempDir,
}

impl StdoutSpool {
    /// Creates the spool directory under the system temporary directory.
    pub fn new() -> io::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    /// Creates the spool directory under `parent`.
    pub fn new_in(parent: &Path) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".netsnap-stdout-")
            .tempdir_in(parent)?;
        Ok(StdoutSpool { dir })
    }

    /// Where the bundle writer must put the bundle.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.path().join("bundle.tar.zst")
    }

    /// Copies the finished bundle to `out`, flushes it and removes the spool
    /// directory. Returns the number of bytes sent.
    pub fn send(self, out: &mut impl Write) -> io::Result<u64> {
        let mut file = std::fs::File::open(self.bundle_path())?;
        let n = io::copy(&mut file, out)?;
        out.flush()?;
        drop(file);
        self.dir.close()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_is_stdout_and_nothing_else_is() {
        assert!(is_stdout(Path::new("-")));
        assert!(!is_stdout(Path::new("./-")));
        assert!(!is_stdout(Path::new("bundle.tar.zst")));
    }

    #[test]
    fn send_copies_the_bytes_and_removes_the_spool() {
        let parent = tempfile::tempdir().expect("tempdir");
        let spool = StdoutSpool::new_in(parent.path()).expect("spool");
        let bundle = spool.bundle_path();
        std::fs::write(&bundle, b"frame bytes").expect("write");
        let mut out = Vec::new();
        let n = spool.send(&mut out).expect("send");
        assert_eq!(n, 11);
        assert_eq!(out, b"frame bytes");
        assert!(!bundle.exists());
        assert_eq!(std::fs::read_dir(parent.path()).expect("ls").count(), 0);
    }

    #[test]
    fn send_without_a_finished_bundle_fails_and_sends_nothing() {
        let parent = tempfile::tempdir().expect("tempdir");
        let spool = StdoutSpool::new_in(parent.path()).expect("spool");
        let mut out = Vec::new();
        assert!(spool.send(&mut out).is_err());
        assert!(out.is_empty());
    }
}
