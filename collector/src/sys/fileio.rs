//! Every file the collector reads from the node goes through this module.
//!
//! Guarantees (see docs/collector.md, "Security model"):
//! - **Inside the right root.** A path under `--host-root` or under a
//!   container's root (`/proc/<pid>/root`) is opened with `openat2(2)`
//!   relative to a directory fd of that root, never by joining strings: the
//!   host root resolves with `RESOLVE_IN_ROOT` (an absolute symlink such as
//!   `/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf` means the
//!   node's file, not the collector's), a container root with
//!   `RESOLVE_BENEATH` (a symlink or `..` that leaves the pod's root is
//!   *refused*, so a pod can never make the collector read a host file). Both
//!   forbid magic links (`/proc/<pid>/fd/*`, `/proc/<pid>/root`).
//! - **Regular files only.** Files are opened `O_NONBLOCK|O_NOCTTY` (a FIFO
//!   cannot block the open) and `fstat`ed before any byte is read: FIFOs,
//!   sockets, devices and directories are refused with the reason.
//! - **Bounded.** Every read has a size cap; a file larger than its cap is
//!   refused (in-memory reads) or cut and marked (streamed copies), and
//!   blocking reads run on their own thread raced against the timeout and the
//!   run's cancellation, so the deadline always wins.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netsnap_bundle::{
    ArtifactRecord, ArtifactSpec, ArtifactStatus, BundleWriter, Completion, WriteError,
};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::options::HostPaths;
use crate::sys::cancel::Cancel;

/// Cap of small reads: sysctls, `/proc/<pid>/comm|cgroup|status`, sysfs attributes.
pub const SMALL_FILE_CAP: u64 = 64 * 1024;
/// Cap of a `resolv.conf` (the libc resolver reads far less).
pub const RESOLV_CONF_CAP: u64 = 64 * 1024;
/// Cap of one configuration file (CNI config, kubelet config, IPAM reservation).
pub const CONFIG_FILE_CAP: u64 = 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file (or a directory on its path) does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The file exists but reading it was refused on purpose (the text says why).
    #[error("refused: {0}")]
    Refused(String),
    /// The file is larger than the cap of this read.
    #[error("refused: {path} is larger than the {cap}-byte cap")]
    TooLarge {
        /// The file.
        path: String,
        /// The cap in bytes.
        cap: u64,
    },
    /// The read did not finish in time (it was abandoned on its thread).
    #[error("{0}")]
    TimedOut(String),
    /// Any other OS error.
    #[error("cannot read {path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The OS error text.
        err: String,
    },
}

impl ReadError {
    /// The status an artifact record gets for this error: `unavailable` for an
    /// absent file, `failed` otherwise.
    pub fn status(&self) -> ArtifactStatus {
        match self {
            ReadError::NotFound(_) => ArtifactStatus::Unavailable,
            _ => ArtifactStatus::Failed,
        }
    }

    /// True when the read was refused on purpose (not a regular file, escaping symlink, too large).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ReadError::Refused(_) | ReadError::TooLarge { .. })
    }
}

/// How paths resolve under a [`RootDir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// The node's filesystem (`/` or `--host-root`): symlinks resolve inside it.
    Host,
    /// A container's root (`/proc/<pid>/root`), controlled by the pod: any path
    /// component that would leave it is refused.
    Container,
}

/// An open directory that paths are resolved in, never outside.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    shown: PathBuf,
    kind: RootKind,
}

fn errno_text(e: Errno) -> String {
    std::io::Error::from_raw_os_error(e as i32).to_string()
}

impl RootDir {
    /// Opens `dir` as a root of the given kind.
    pub fn open(dir: &Path, kind: RootKind) -> Result<RootDir, ReadError> {
        let shown = dir.display().to_string();
        // O_PATH: no read permission needed and it never blocks; the kernel follows
        // the magic link of `/proc/<pid>/root` here, which is exactly the pod's root.
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOENT => ReadError::NotFound(shown.clone()),
            e => ReadError::Io {
                path: shown.clone(),
                err: errno_text(e),
            },
        })?;
        Ok(RootDir {
            fd,
            shown: dir.to_path_buf(),
            kind,
        })
    }

    /// The node's root: `--host-root` when set, else `/`.
    pub fn host(host: &HostPaths) -> Result<RootDir, ReadError> {
        RootDir::open(host.root().unwrap_or(Path::new("/")), RootKind::Host)
    }

    /// The root filesystem of process `pid` (`<host-root>/proc/<pid>/root`).
    pub fn container(host: &HostPaths, pid: u32) -> Result<RootDir, ReadError> {
        RootDir::open(
            &host.path(&format!("/proc/{pid}/root")),
            RootKind::Container,
        )
    }

    /// How paths resolve under it.
    pub fn kind(&self) -> RootKind {
        self.kind
    }

    /// `abs` as shown in messages: `<root>/<abs>`, or `abs` for the real `/`.
    pub fn display(&self, abs: &str) -> String {
        if self.shown == Path::new("/") {
            format!("/{}", abs.trim_start_matches('/'))
        } else {
            format!(
                "{}/{}",
                self.shown.display().to_string().trim_end_matches('/'),
                abs.trim_start_matches('/')
            )
        }
    }

    fn openat(&self, abs: &str, flags: OFlag) -> Result<OwnedFd, ReadError> {
        let rel = abs.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let resolve = match self.kind {
            RootKind::Host => ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            RootKind::Container => {
                ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
            }
        };
        // openat2 refuses O_PATH combined with anything but O_DIRECTORY/O_NOFOLLOW/O_CLOEXEC.
        let extra = if flags.contains(OFlag::O_PATH) {
            OFlag::O_CLOEXEC
        } else {
            OFlag::O_CLOEXEC | OFlag::O_NOCTTY
        };
        let how = OpenHow::new().flags(flags | extra).resolve(resolve);
        let shown = self.display(abs);
        // EAGAIN: a concurrent rename raced the scoped lookup; the kernel asks for a retry.
        let mut tries = 0;
        loop {
            match openat2(&self.fd, rel, how) {
                Ok(fd) => return Ok(fd),
                Err(Errno::EAGAIN) | Err(Errno::EINTR) if tries < 8 => tries += 1,
                Err(Errno::ENOENT) => return Err(ReadError::NotFound(shown)),
                Err(Errno::EXDEV) => {
                    return Err(ReadError::Refused(format!(
                        "{shown}: a symbolic link or `..` on the path escapes the container root"
                    )));
                }
                Err(Errno::ELOOP) => {
                    return Err(ReadError::Refused(format!(
                        "{shown}: a magic link or a symbolic link loop on the path"
                    )));
                }
                Err(Errno::ENOSYS) => {
                    return Err(ReadError::Refused(format!(
                        "{shown}: the kernel has no openat2(2) (Linux >= 5.6 needed to read inside a root safely)"
                    )));
                }
                Err(e) => {
                    return Err(ReadError::Io {
                        path: shown,
                        err: errno_text(e),
                    });
                }
            }
        }
    }

    /// Opens regular file `abs` (absolute inside this root) for reading.
    ///
    /// Non-blocking open, then `fstat`: anything but a regular file is refused.
    pub fn open_regular(&self, abs: &str) -> Result<File, ReadError> {
        let fd = self.openat(abs, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        let f = File::from(fd);
        let shown = self.display(abs);
        let md = f.metadata().map_err(|e| ReadError::Io {
            path: shown.clone(),
            err: e.to_string(),
        })?;
        let ft = md.file_type();
        if !ft.is_file() {
            let what = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_char_device() {
                "a character device"
            } else if ft.is_block_device() {
                "a block device"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(ReadError::Refused(format!(
                "{shown} is not a regular file ({what})"
            )));
        }
        Ok(f)
    }

    /// Reads regular file `abs` whole, refusing it when larger than `cap` bytes.
    pub fn read_capped(&self, abs: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
        let f = self.open_regular(abs)?;
        read_all_capped(f, &self.display(abs), cap)
    }

    /// A small text file (sysctl, sysfs attribute), trimmed; None when absent, refused or unreadable.
    pub fn read_small(&self, abs: &str) -> Option<String> {
        let bytes = self.read_capped(abs, SMALL_FILE_CAP).ok()?;
        Some(String::from_utf8_lossy(&bytes).trim_end().to_string())
    }

    /// Entries of directory `abs`: (name, is_dir, is_regular_file), unsorted; `.`
    /// and `..` left out. Symlinks are neither (they are not followed).
    pub fn read_dir(&self, abs: &str) -> Result<Vec<(String, bool, bool)>, ReadError> {
        let fd = self.openat(
            abs,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NONBLOCK,
        )?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| ReadError::Io {
            path: self.display(abs),
            err: errno_text(e),
        })?;
        let raw: Vec<(String, Option<nix::dir::Type>)> = dir
            .iter()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type()))
            .filter(|(n, _)| n != "." && n != "..")
            .collect();
        let mut out = Vec::with_capacity(raw.len());
        for (name, ty) in raw {
            use nix::dir::Type;
            let (is_dir, is_file) = match ty {
                Some(Type::Directory) => (true, false),
                Some(Type::File) => (false, true),
                Some(_) => (false, false),
                // Filesystems without d_type: fstat the entry itself, never following it.
                None => {
                    let path = format!("{}/{name}", abs.trim_end_matches('/'));
                    match self
                        .openat(&path, OFlag::O_PATH | OFlag::O_NOFOLLOW)
                        .map(File::from)
                        .and_then(|f| {
                            f.metadata().map_err(|e| ReadError::Io {
                                path: path.clone(),
                                err: e.to_string(),
                            })
                        }) {
                        Ok(md) => (md.is_dir(), md.file_type().is_file()),
                        Err(_) => (false, false),
                    }
                }
            };
            out.push((name, is_dir, is_file));
        }
        Ok(out)
    }

    /// True when `abs` is a directory inside this root.
    pub fn is_dir(&self, abs: &str) -> bool {
        self.openat(abs, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok()
    }

    /// Everything but directories under directory `abs` (recursively; symlinked
    /// directories are not descended), as paths relative to it, sorted; at most
    /// `max`. Symlinks, FIFOs and devices are listed too, so that reading them
    /// (inside the root) or refusing them is recorded, never silently skipped.
    pub fn list_tree(&self, abs: &str, max: usize) -> Result<Vec<String>, ReadError> {
        let base = abs.trim_end_matches('/').to_string();
        // Fails only for the top directory; an unreadable subdirectory is skipped.
        let mut stack = vec![(self.read_dir(&base)?, String::new())];
        let mut out = Vec::new();
        while let Some((mut entries, rel)) = stack.pop() {
            // Sorted, so the cap keeps the same files on every run.
            entries.sort();
            for (name, is_dir, _) in entries {
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if is_dir {
                    if let Ok(sub) = self.read_dir(&format!("{base}/{r}")) {
                        stack.push((sub, r));
                    }
                } else if out.len() < max {
                    out.push(r);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn read_all_capped(f: File, shown: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    let mut limited = f.take(cap.saturating_add(1));
    loop {
        match limited.read_to_end(&mut buf) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A regular file opened O_NONBLOCK never says EAGAIN; treat it as an error anyway.
            Err(e) => {
                return Err(ReadError::Io {
                    path: shown.to_string(),
                    err: e.to_string(),
                });
            }
        }
    }
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            path: shown.to_string(),
            cap,
        });
    }
    Ok(buf)
}

/// Reads a small text file at an absolute path of the collector's own view
/// (`/proc/sys/...` of the calling thread, `/proc/self/status`), trimmed: the same
/// non-blocking, regular-file-only, capped open as [`RootDir::read_small`].
/// None when absent, refused or unreadable.
pub fn read_small(path: &Path) -> Option<String> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .ok()?;
    let f = File::from(fd);
    if !f.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let bytes = read_all_capped(f, &path.display().to_string(), SMALL_FILE_CAP).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

/// Runs blocking `work` on its own thread and waits at most `timeout`: when
/// the time is up the thread is abandoned (it ends on its own; nothing waits
/// for it) and the caller gets [`ReadError::TimedOut`].
pub fn run_bounded<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    work: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("netsnap-read".into())
        .spawn(move || {
            let _ = tx.send(work());
        });
    if let Err(e) = spawned {
        return Err(ReadError::Io {
            path: what.to_string(),
            err: format!("cannot start a reader thread: {e}"),
        });
    }
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(ReadError::TimedOut(format!(
            "{what}: read abandoned after {:.1}s",
            timeout.as_secs_f64()
        ))),
    }
}

/// Async [`run_bounded`]; with `cancel`, also abandoned when the run is stopped
/// (deadline, signal). Work that must still land after a stop (the small reads
/// of steps that run when stopped) passes None.
pub async fn run_bounded_async<'a, T: Send + 'static>(
    what: &str,
    timeout: Duration,
    cancel: impl Into<Option<&'a Cancel>>,
    work: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    let cancel: Option<&Cancel> = cancel.into();
    let stopped = async {
        match cancel {
            Some(c) => c.stopped().await,
            None => std::future::pending().await,
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("netsnap-read".into())
        .spawn(move || {
            let _ = tx.send(work());
        });
    if let Err(e) = spawned {
        return Err(ReadError::Io {
            path: what.to_string(),
            err: format!("cannot start a reader thread: {e}"),
        });
    }
    tokio::select! {
        r = rx => r.unwrap_or_else(|_| Err(ReadError::Io { path: what.to_string(), err: "reader thread died".into() })),
        _ = tokio::time::sleep(timeout) => Err(ReadError::TimedOut(format!(
            "{what}: read abandoned after {:.1}s", timeout.as_secs_f64()
        ))),
        r = stopped => Err(ReadError::TimedOut(format!("{what}: read abandoned: {}", r.as_str()))),
    }
}

/// Records a failed read as an artifact without content (`unavailable` when absent,
/// `failed` with the reason otherwise; refusals carry `refused=true`).
pub fn record_read_error(
    writer: &BundleWriter,
    mut spec: ArtifactSpec,
    err: &ReadError,
    duration: Duration,
) -> Result<ArtifactRecord, WriteError> {
    if err.is_refusal() {
        spec = spec.with_attribute("refused", "true");
    }
    writer.record_missing(
        spec,
        err.status(),
        err.to_string(),
        Completion {
            duration,
            ..Completion::default()
        },
    )
}

/// Copies node file `abs` (resolved inside the host root) into artifact `spec`,
/// streamed, keeping at most `max_lines` lines if set. Only regular files are
/// read; the copy stops at the per-unit timeout or when the run is stopped
/// (what was read is kept and marked partial).
pub async fn copy_file(
    writer: &BundleWriter,
    spec: ArtifactSpec,
    host: &HostPaths,
    abs: &str,
    max_lines: Option<u64>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<ArtifactRecord, WriteError> {
    let start = Instant::now();
    let spec = spec.with_attribute("source_path", abs);
    let root = match RootDir::host(host) {
        Ok(r) => r,
        Err(e) => return record_read_error(writer, spec, &e, start.elapsed()),
    };
    // Opening cannot block (O_NONBLOCK, no FIFO is ever read), but a hung
    // filesystem under --host-root could: bounded like the read.
    let opened = {
        let abs = abs.to_string();
        run_bounded_async(&root.display(abs.as_str()), timeout, cancel, move || {
            root.open_regular(&abs)
        })
        .await
    };
    let f = match opened {
        Ok(f) => f,
        Err(e) => return record_read_error(writer, spec, &e, start.elapsed()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let why: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let writer = writer.clone();
        let stop = stop.clone();
        let why = why.clone();
        let spawned = std::thread::Builder::new()
            .name("netsnap-copy".into())
            .spawn(move || {
                let _ = tx.send(copy_blocking(
                    &writer, spec, f, start, max_lines, &stop, &why,
                ));
            });
        if let Err(e) = spawned {
            return Err(WriteError::Io {
                path: PathBuf::from(abs),
                source: e,
            });
        }
    }
    let abort = async {
        tokio::select! {
            _ = tokio::time::sleep(timeout) => format!("timed out after {:.1}s", timeout.as_secs_f64()),
            r = cancel.stopped() => r.as_str().to_string(),
        }
    };
    tokio::pin!(rx);
    tokio::select! {
        r = &mut rx => return r.map_err(|_| WriteError::Poisoned)?,
        reason = abort => {
            if let Ok(mut g) = why.lock() {
                *g = Some(reason);
            }
            stop.store(true, Ordering::Relaxed);
        }
    }
    // The copy checks `stop` between reads; a read stuck in the kernel is abandoned
    // after a second (its record then never lands; the step's tally says so).
    match tokio::time::timeout(Duration::from_secs(1), rx).await {
        Ok(r) => r.map_err(|_| WriteError::Poisoned)?,
        Err(_) => Err(WriteError::Io {
            path: PathBuf::from(abs),
            source: std::io::Error::new(
                ErrorKind::TimedOut,
                "a read did not return after the stop; abandoned",
            ),
        }),
    }
}

fn copy_blocking(
    writer: &BundleWriter,
    spec: ArtifactSpec,
    mut f: File,
    start: Instant,
    max_lines: Option<u64>,
    stop: &AtomicBool,
    why: &std::sync::Mutex<Option<String>>,
) -> Result<ArtifactRecord, WriteError> {
    let mut sink = writer.artifact(spec)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = max_lines;
    let mut error = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            error = why
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .or(Some("stopped".into()));
            break;
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                error = Some(format!("read error: {e}"));
                break;
            }
        };
        let chunk = &buf[..n];
        if left == Some(0) {
            sink.mark_entry_cap();
            break;
        }
        let mut part = chunk;
        if let Some(l) = left.as_mut() {
            for pos in memchr::memchr_iter(b'\n', chunk) {
                *l -= 1;
                if *l == 0 {
                    part = &chunk[..pos + 1];
                    break;
                }
            }
        }
        let _ = sink.write_all(part);
        if part.len() < chunk.len() {
            sink.mark_entry_cap();
            break;
        }
        if sink.is_truncated() {
            break;
        }
    }
    sink.finish(Completion {
        duration: start.elapsed(),
        error,
        ..Completion::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).expect("mkdir");
        std::fs::create_dir_all(r.join("run")).expect("mkdir");
        std::fs::write(r.join("etc/real.conf"), "inside\n").expect("write");
        std::fs::write(r.join("run/target.conf"), "via absolute link\n").expect("write");
        std::os::unix::fs::symlink("/run/target.conf", r.join("etc/abs-link")).expect("ln");
        std::os::unix::fs::symlink("../../../../../../etc/hostname", r.join("etc/up-link"))
            .expect("ln");
        std::os::unix::fs::symlink("real.conf", r.join("etc/rel-link")).expect("ln");
        nix::unistd::mkfifo(&r.join("etc/fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");
        std::fs::write(r.join("etc/big"), vec![b'x'; 100]).expect("write");
        t
    }

    #[test]
    fn host_root_resolves_symlinks_inside_it() {
        let t = tree();
        let root = RootDir::open(t.path(), RootKind::Host).expect("root");
        assert_eq!(
            root.read_capped("/etc/abs-link", 1024).expect("read"),
            b"via absolute link\n"
        );
        assert_eq!(
            root.read_capped("/etc/rel-link", 1024).expect("read"),
            b"inside\n"
        );
        // `..` above the root stays at the root: /etc/hostname of the tree, absent.
        assert!(matches!(
            root.read_capped("/etc/up-link", 1024),
            Err(ReadError::NotFound(_))
        ));
    }

    #[test]
    fn container_root_refuses_escapes() {
        let t = tree();
        let root = RootDir::open(t.path(), RootKind::Container).expect("root");
        for p in ["/etc/abs-link", "/etc/up-link", "/../etc/real.conf"] {
            let e = root.read_capped(p, 1024).expect_err(p);
            assert!(e.is_refusal(), "{p}: {e}");
            assert!(e.to_string().contains("escapes the container root"), "{e}");
        }
        assert_eq!(
            root.read_capped("/etc/rel-link", 1024).expect("read"),
            b"inside\n"
        );
    }

    #[test]
    fn only_regular_files_within_the_cap() {
        let t = tree();
        let root = RootDir::open(t.path(), RootKind::Container).expect("root");
        let e = root.read_capped("/etc/fifo", 1024).expect_err("fifo");
        assert_eq!(
            e.to_string(),
            format!(
                "refused: {}/etc/fifo is not a regular file (a FIFO)",
                t.path().display()
            )
        );
        let e = root.read_capped("/etc", 1024).expect_err("dir");
        assert!(e.to_string().contains("(a directory)"), "{e}");
        assert!(matches!(
            root.read_capped("/etc/big", 99),
            Err(ReadError::TooLarge { cap: 99, .. })
        ));
        assert_eq!(root.read_capped("/etc/big", 100).map(|b| b.len()), Ok(100));
        let dev = RootDir::open(Path::new("/dev"), RootKind::Host).expect("dev");
        let e = dev.read_capped("/zero", 1024).expect_err("zero");
        assert!(e.to_string().contains("a character device"), "{e}");
        assert_eq!(read_small(&t.path().join("etc/fifo")), None);
    }

    #[test]
    fn trees_list_everything_but_directories() {
        let t = tree();
        std::fs::create_dir_all(t.path().join("etc/sub")).expect("mkdir");
        std::fs::write(t.path().join("etc/sub/x.conf"), "{}").expect("write");
        let root = RootDir::open(t.path(), RootKind::Host).expect("root");
        assert_eq!(
            root.list_tree("/etc", 100).expect("list"),
            vec![
                "abs-link",
                "big",
                "fifo",
                "real.conf",
                "rel-link",
                "sub/x.conf",
                "up-link"
            ]
        );
        assert_eq!(root.list_tree("/etc", 1).expect("list"), vec!["abs-link"]);
        assert!(root.is_dir("/etc/sub") && !root.is_dir("/etc/big") && !root.is_dir("/nope"));
        assert!(matches!(
            root.list_tree("/nope", 10),
            Err(ReadError::NotFound(_))
        ));
    }

    #[test]
    fn bounded_reads_are_abandoned_in_time() {
        let t0 = Instant::now();
        let r: Result<(), ReadError> = run_bounded("slow", Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        });
        assert!(matches!(r, Err(ReadError::TimedOut(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(run_bounded("fast", Duration::from_secs(5), || Ok(7)), Ok(7));
    }
}
