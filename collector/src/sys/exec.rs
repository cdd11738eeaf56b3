//! The only place that spawns processes.
//!
//! Guarantees for every command the collector runs:
//! - the program is resolved explicitly on `$PATH` (then under `--host-root`);
//!   a missing program is reported as [`Ran::Missing`] so callers can fall back
//!   to a kernel interface, and is recorded `unavailable`, never `failed`;
//! - under `--host-root`, the node's own netfilter tools (iptables family, nft,
//!   conntrack, ipset, ipvsadm: see [`HOST_FIRST`]) come before the collector's:
//!   an `iptables-save` built against another iptables than the node's misreads
//!   its rules. A program found under the host root runs *chrooted* into it, so
//!   it loads the node's own libraries and plugins; each artifact records the
//!   binary, where it came from and its version (`program_path`,
//!   `program_origin`, `program_version`);
//! - stdin is `/dev/null`, `LC_ALL=C`, the child leads its own process group;
//! - it runs at the collector's lowered priority: [`lower_priority`] is called
//!   once at start-up, before any thread exists, so every thread and child
//!   inherits nice 10 and best-effort I/O priority 7;
//! - a silence timeout (and the run's cancellation token) kills the whole
//!   process group with SIGKILL, so a tool that forks or hangs never outlives it:
//!   a command is cut when it has printed nothing for its [`Kind`]'s budget
//!   (`--timeout`, or [`DUMP_TIMEOUT_FACTOR`] times it for the big dumps), so one
//!   that is still producing output runs on while the run's deadline allows;
//! - big dumps ([`Kind::Dump`]: rulesets, the conntrack table) take a slot of a
//!   small semaphore before they start, so on a small node they run one after
//!   another instead of starving each other (waiting for a slot is not counted
//!   against the command's budget, and lasts at most `--timeout`: then the dump
//!   starts anyway, so one that hangs cannot hold the others back for long);
//! - stdout streams straight into an [`ArtifactSink`] in 64 KiB chunks (never
//!   whole in memory); stderr is kept as a 4 KiB excerpt.

#![allow(clippy::disallowed_methods)] // this module is the sanctioned spawner

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use netsnap_bundle::writer::STDERR_EXCERPT_BYTES;
use netsnap_bundle::{
    ArtifactRecord, ArtifactSink, ArtifactSpec, ArtifactStatus, BundleWriter, Completion,
    WriteError,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::sys::cancel::{Cancel, StopReason};

/// Default search path when `$PATH` is unset.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Directories searched under `--host-root` when the program is not on `$PATH`.
const HOST_DIRS: &[&str] = &["usr/sbin", "usr/bin", "sbin", "bin", "usr/local/sbin"];

/// Programs looked up under `--host-root` before `$PATH`: their output is only
/// right when their version matches the node's kernel-side configuration
/// (kube-proxy's iptables-wrapper problem), so the node's own copy wins.
pub const HOST_FIRST: &[&str] = &["nft", "conntrack", "ipset", "ipvsadm"];

/// True when `program` is one of the node's netfilter tools ([`HOST_FIRST`] or
/// any `iptables*` / `ip6tables*` / `ebtables*` / `arptables*` binary).
pub fn is_host_first(program: &str) -> bool {
    ["iptables", "ip6tables", "ebtables", "arptables"]
        .iter()
        .any(|p| program.starts_with(p))
        || HOST_FIRST.contains(&program)
}

/// Where a program was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// On the collector's own `$PATH` (its container or host).
    Container,
    /// Under `--host-root`; it runs chrooted into the host root.
    HostRoot,
}

impl Origin {
    /// The manifest's word for it (`program_origin` attribute).
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Container => "container",
            Origin::HostRoot => "host-root",
        }
    }
}

/// A program resolved by [`Exec::locate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Located {
    /// The file as the collector sees it (under the host root for [`Origin::HostRoot`]).
    pub path: PathBuf,
    /// Where it was found.
    pub origin: Origin,
    /// For [`Origin::HostRoot`]: the host root and the program's path inside it.
    chroot: Option<(PathBuf, PathBuf)>,
}

impl Located {
    /// The tokio command for `args`: chrooted into the host root for a host
    /// program, with arguments naming paths under the host root rewritten to
    /// the path the chrooted program sees.
    #[allow(unsafe_code)]
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let Some((root, inside)) = &self.chroot else {
            let mut cmd = tokio::process::Command::new(&self.path);
            cmd.args(args);
            return cmd;
        };
        let mut cmd = tokio::process::Command::new(inside);
        cmd.args(args.iter().map(|a| inside_root(root, a)));
        // Built before fork: the child may only make async-signal-safe calls.
        let root_c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).ok();
        // SAFETY: the closure runs in the forked child before exec and only
        // calls chroot(2) and chdir(2) on C strings allocated before the fork;
        // it neither allocates nor takes locks.
        unsafe {
            cmd.pre_exec(move || {
                let Some(root) = root_c.as_ref() else {
                    return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
                };
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

/// `arg` as a program chrooted into `root` must see it: a leading `ROOT/…`,
/// or one right after `=` (`--net=ROOT/proc/1/ns/net`), becomes `/…`.
fn inside_root(root: &Path, arg: &str) -> String {
    let Some(r) = root.to_str().map(|r| r.trim_end_matches('/')) else {
        return arg.to_string();
    };
    if r.is_empty() {
        return arg.to_string();
    }
    let strip = |s: &str| -> Option<String> {
        let rest = s.strip_prefix(r)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| {
            if rest.is_empty() {
                "/".to_string()
            } else {
                rest.to_string()
            }
        })
    };
    if let Some(inner) = strip(arg) {
        return inner;
    }
    if let Some((flag, value)) = arg.split_once('=')
        && let Some(inner) = strip(value)
    {
        return format!("{flag}={inner}");
    }
    arg.to_string()
}

/// Resolves `inside` (absolute or relative) within `root` the way a process
/// chrooted there would: absolute symlink targets restart at `root`, `..` never
/// leaves it. Returns the path as seen from outside, or None when it does not exist.
fn resolve_in_root(root: &Path, inside: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut pending: Vec<std::ffi::OsString> = inside
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let meta = std::fs::symlink_metadata(root.join(&next)).ok()?;
        if !meta.file_type().is_symlink() {
            cur = next;
            continue;
        }
        hops += 1;
        if hops > 40 {
            return None;
        }
        let target = std::fs::read_link(root.join(&next)).ok()?;
        if target.is_absolute() {
            cur = PathBuf::new();
        }
        pending.extend(target.components().rev().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        }));
    }
    Some(root.join(cur))
}

/// One version lookup per program, shared by concurrent users.
type VersionCache =
    std::collections::HashMap<Located, std::sync::Arc<tokio::sync::OnceCell<Option<String>>>>;

/// Arguments that make `program` print its version (first line kept), for
/// the programs the collector runs; None for programs without a safe one.
fn version_args(program: &str) -> Option<&'static [&'static str]> {
    Some(match program {
        p if is_host_first(p) && p != "ipset" => &["--version"],
        "ipset" => &["version"],
        "ip" => &["-V"],
        "crictl" | "dmesg" | "uname" | "nsenter" | "docker" => &["--version"],
        _ => return None,
    })
}

/// Lowers the whole process to nice 10 and best-effort I/O class, level 7.
///
/// Call once at start-up before any thread is spawned: on Linux both settings
/// are per thread and inherited by threads and children created afterwards.
/// Best effort: failure is returned for logging, never fatal.
#[allow(unsafe_code)]
pub fn lower_priority() -> Result<(), String> {
    // SAFETY: setpriority(PRIO_PROCESS, 0, n) only changes the calling thread's
    // nice value; it takes no pointers.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    if rc != 0 {
        return Err(format!("setpriority: {}", std::io::Error::last_os_error()));
    }
    // IOPRIO_WHO_PROCESS = 1, IOPRIO_CLASS_BE = 2 (shifted by 13), level 7 = lowest.
    let ioprio: libc::c_long = (2 << 13) | 7;
    // SAFETY: ioprio_set(which, who, ioprio) takes three integers, no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            1 as libc::c_long,
            0 as libc::c_long,
            ioprio,
        )
    };
    if rc != 0 {
        return Err(format!("ioprio_set: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Big dumps may stay silent this many `--timeout`s (`iptables-save` and `nft list`
/// print nothing until they have fetched a whole table; 55,000 rules take 2-3 s on an
/// idle 2-core node and several times that on a loaded one).
pub const DUMP_TIMEOUT_FACTOR: u32 = 4;

/// What kind of work a command is, which sets its budget and scheduling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// A small query (`ip`, `uname`, `conntrack -S`): silent for `--timeout` = cut.
    #[default]
    Light,
    /// A dump that grows with the node (iptables/nft rulesets, the conntrack table,
    /// ipsets): silent for [`DUMP_TIMEOUT_FACTOR`] x `--timeout` = cut, and at most
    /// [`Exec::dump_slots`] run at once.
    Dump,
}

/// Finds programs and runs them under the guarantees of this module.
#[derive(Clone, Debug)]
pub struct Exec {
    search: Vec<PathBuf>,
    host_root: Option<PathBuf>,
    /// First version line of each program run so far (shared by clones).
    versions: std::sync::Arc<std::sync::Mutex<VersionCache>>,
    /// Silence timeout of a [`Kind::Light`] command (`--timeout`).
    pub timeout: Duration,
    cancel: Cancel,
    dumps: std::sync::Arc<Semaphore>,
    dump_slots: usize,
}

/// How many big dumps run at once by default: half the CPUs (at least one), so on a
/// 2-core node the dumps take turns on one core and the other stays free for the
/// namespace reads, the API lists and the compression of what the dumps print.
pub fn default_dump_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

/// What to do with one chunk of stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The program exited (see the status).
    Exited,
    /// Killed after printing nothing for `silent`; it had run `ran` and printed
    /// something before (`any_output`) or not.
    TimedOut {
        /// The silence budget that ran out.
        silent: Duration,
        /// Wall time when it was killed.
        ran: Duration,
        /// Whether it had printed anything.
        any_output: bool,
    },
    /// Killed because the run was stopped.
    Stopped(StopReason),
    /// Killed on purpose after the consumer had enough (line or size cap).
    CapReached,
    /// Could not be started.
    SpawnFailed(String),
    /// Reading its output failed.
    ReadFailed(String),
}

/// The result of running a command.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub end: End,
    /// Exit code, when it exited normally.
    pub exit_status: Option<i32>,
    /// Signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Wall time.
    pub duration: Duration,
    /// First bytes of stderr.
    pub stderr: Vec<u8>,
}

impl Report {
    /// Why the run is not a clean success, for the manifest (`None` = success).
    pub fn error(&self) -> Option<String> {
        match &self.end {
            End::Exited => match (self.exit_status, self.signal) {
                (Some(0), _) => None,
                (Some(code), _) => Some(format!("exited with status {code}")),
                (None, Some(sig)) => Some(format!("killed by signal {sig}")),
                (None, None) => Some("ended without an exit status".into()),
            },
            End::TimedOut {
                silent,
                any_output: false,
                ..
            } => Some(format!("timed out after {}s", fmt_secs(*silent))),
            End::TimedOut {
                silent,
                ran,
                any_output: true,
            } => Some(format!(
                "timed out after {}s (no output for {}s)",
                fmt_secs(*ran),
                fmt_secs(*silent)
            )),
            End::Stopped(r) => Some(r.as_str().to_string()),
            End::CapReached => None,
            End::SpawnFailed(e) => Some(format!("could not start: {e}")),
            End::ReadFailed(e) => Some(format!("reading output failed: {e}")),
        }
    }

    fn completion(&self) -> Completion {
        Completion {
            exit_status: self.exit_status,
            duration: self.duration,
            error: self.error(),
            stderr: (!self.stderr.is_empty()).then(|| self.stderr.clone()),
        }
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 1e-9 {
        format!("{}", s.round() as u64)
    } else {
        format!("{s:.1}")
    }
}

/// Outcome of [`Exec::to_artifact`].
#[derive(Debug, Clone)]
pub enum Ran {
    /// The program is not installed; an `unavailable` record was written.
    Missing(ArtifactRecord),
    /// It ran (successfully or not); the record says how it ended.
    Ran(ArtifactRecord, Report),
}

impl Ran {
    /// The manifest record written for it.
    pub fn record(&self) -> &ArtifactRecord {
        match self {
            Ran::Missing(r) | Ran::Ran(r, _) => r,
        }
    }

    /// True when the program was missing.
    pub fn is_missing(&self) -> bool {
        matches!(self, Ran::Missing(_))
    }
}

/// Outcome of [`Exec::capture`].
#[derive(Debug, Clone)]
pub enum Captured {
    /// Not installed.
    Missing,
    /// It ran; stdout is capped at the requested size.
    Output(Vec<u8>, Report),
}

/// Optional limits of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// The kind of work (budget and scheduling).
    pub kind: Kind,
    /// Override of the silence timeout the kind gives.
    pub timeout: Option<Duration>,
    /// Keep at most this many lines, then kill the program and mark the artifact entry-capped.
    pub max_lines: Option<u64>,
}

impl Limits {
    /// A big dump ([`Kind::Dump`]) with no other limit.
    pub fn dump() -> Self {
        Limits {
            kind: Kind::Dump,
            ..Limits::default()
        }
    }
}

impl Exec {
    /// An executor searching `$PATH` (then `host_root`'s usual bin dirs), with
    /// [`default_dump_slots`] dump slots.
    pub fn new(host_root: Option<PathBuf>, timeout: Duration, cancel: Cancel) -> Self {
        Self::with_dump_slots(host_root, timeout, cancel, default_dump_slots())
    }

    /// Like [`Exec::new`] with `slots` big dumps at once.
    pub fn with_dump_slots(
        host_root: Option<PathBuf>,
        timeout: Duration,
        cancel: Cancel,
        slots: usize,
    ) -> Self {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
        let slots = slots.max(1);
        Exec {
            search: std::env::split_paths(&path).collect(),
            host_root,
            versions: Default::default(),
            timeout,
            cancel,
            dumps: std::sync::Arc::new(Semaphore::new(slots)),
            dump_slots: slots,
        }
    }

    /// How many [`Kind::Dump`] commands may run at once.
    pub fn dump_slots(&self) -> usize {
        self.dump_slots
    }

    /// The silence budget of a command of `kind`.
    pub fn budget(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Light => self.timeout,
            Kind::Dump => self.timeout * DUMP_TIMEOUT_FACTOR,
        }
    }

    /// The cancellation token commands honour.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Resolves `program` to an executable file, or None when it is not installed.
    pub fn resolve(&self, program: &str) -> Option<PathBuf> {
        self.locate(program).map(|l| l.path)
    }

    /// Finds `program` and says where: under `--host-root` first for the node's
    /// netfilter tools ([`is_host_first`]), on `$PATH` first for the rest.
    pub fn locate(&self, program: &str) -> Option<Located> {
        if program.contains('/') {
            let p = PathBuf::from(program);
            return is_executable(&p).then_some(Located {
                path: p,
                origin: Origin::Container,
                chroot: None,
            });
        }
        let on_path = || {
            self.search
                .iter()
                .map(|d| d.join(program))
                .find(|p| is_executable(p))
                .map(|path| Located {
                    path,
                    origin: Origin::Container,
                    chroot: None,
                })
        };
        let on_host = || {
            let root = self.host_root.as_ref()?;
            HOST_DIRS.iter().find_map(|d| {
                let inside = Path::new("/").join(d).join(program);
                let real = resolve_in_root(root, &inside)?;
                is_executable(&real).then(|| Located {
                    path: root.join(d).join(program),
                    origin: Origin::HostRoot,
                    chroot: Some((root.clone(), inside)),
                })
            })
        };
        if is_host_first(program) {
            on_host().or_else(on_path)
        } else {
            on_path().or_else(on_host)
        }
    }

    /// First line of `found`'s version output (cached), when it has a known
    /// version flag and prints one.
    pub async fn version_of(&self, program: &str, found: &Located) -> Option<String> {
        let args = version_args(program)?;
        // The lock only guards the map; the lookup itself runs unlocked, once.
        let cell = self
            .versions
            .lock()
            .ok()?
            .entry(found.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let mut out = Vec::new();
            let report = self
                .run_core(found, args, Kind::Light, None, |chunk| {
                    let room = 4096usize.saturating_sub(out.len());
                    out.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if out.len() >= 4096 {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    }
                })
                .await;
            // Some tools print their version on stderr.
            let text = if out.iter().all(u8::is_ascii_whitespace) {
                report.stderr
            } else {
                out
            };
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .await
        .clone()
    }

    /// Runs `argv` and streams its stdout into the artifact `spec` (whose `command`
    /// is set to `argv`). Writes exactly one record for `spec.path`.
    pub async fn to_artifact(
        &self,
        writer: &BundleWriter,
        spec: ArtifactSpec,
        argv: &[&str],
        limits: Limits,
    ) -> Result<Ran, WriteError> {
        self.to_artifact_seq(writer, spec, &[argv], limits, &mut |_| {})
            .await
    }

    /// Runs the commands `argvs` one after another and streams their stdout, in
    /// order, into the one artifact `spec`; `observe` sees every chunk kept. The
    /// record's `command` is the first command line; with more than one, the
    /// attribute `commands` lists them all (`; `-separated). The first command that
    /// fails ends the sequence (the record says why; what came before is kept).
    /// Writes exactly one record for `spec.path`; `limits` apply to each command,
    /// `max_lines` to the artifact as a whole.
    pub async fn to_artifact_seq(
        &self,
        writer: &BundleWriter,
        mut spec: ArtifactSpec,
        argvs: &[&[&str]],
        limits: Limits,
        observe: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Ran, WriteError> {
        spec.command = argvs
            .first()
            .map(|argv| argv.iter().map(|s| s.to_string()).collect());
        if argvs.len() > 1 {
            spec.attributes.insert(
                "commands".into(),
                argvs
                    .iter()
                    .map(|a| a.join(" "))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        let mut resolved = Vec::with_capacity(argvs.len());
        for argv in argvs {
            let Some((program, args)) = argv.split_first() else {
                let rec = writer.record_missing(
                    spec,
                    ArtifactStatus::Failed,
                    "empty command line",
                    Completion::default(),
                )?;
                return Ok(Ran::Missing(rec));
            };
            let Some(found) = self.locate(program) else {
                let rec = writer.record_missing(
                    spec,
                    ArtifactStatus::Unavailable,
                    format!("program not installed: {program}"),
                    Completion::default(),
                )?;
                return Ok(Ran::Missing(rec));
            };
            resolved.push((found, args));
        }
        let Some((first, _)) = resolved.first() else {
            let rec = writer.record_missing(
                spec,
                ArtifactStatus::Failed,
                "empty command line",
                Completion::default(),
            )?;
            return Ok(Ran::Missing(rec));
        };
        if first.path.is_absolute() {
            spec.attributes
                .insert("program_path".into(), first.path.display().to_string());
        }
        spec.attributes
            .insert("program_origin".into(), first.origin.as_str().into());
        let first_program = argvs.first().and_then(|a| a.first()).copied().unwrap_or("");
        if let Some(v) = self.version_of(first_program, first).await {
            spec.attributes.insert("program_version".into(), v);
        }
        let mut sink: Option<ArtifactSink> = None;
        let mut write_err: Option<WriteError> = None;
        let mut lines_left = limits.max_lines;
        let mut total = Duration::ZERO;
        let mut last: Option<Report> = None;
        for (path, args) in &resolved {
            let mut report = self
                .run_core(path, args, limits.kind, limits.timeout, |chunk| {
                    if sink.is_none() {
                        match writer.artifact(spec.clone()) {
                            Ok(s) => sink = Some(s),
                            Err(e) => {
                                write_err = Some(e);
                                return Flow::Stop;
                            }
                        }
                    }
                    let Some(s) = sink.as_mut() else {
                        return Flow::Stop;
                    };
                    if lines_left == Some(0) {
                        // More output after the last line we keep: that is a real cut.
                        s.mark_entry_cap();
                        return Flow::Stop;
                    }
                    let mut part = chunk;
                    if let Some(left) = lines_left.as_mut() {
                        for pos in memchr::memchr_iter(b'\n', chunk) {
                            *left = left.saturating_sub(1);
                            if *left == 0 {
                                part = &chunk[..pos + 1];
                                break;
                            }
                        }
                    }
                    observe(part);
                    // Writes to the sink never fail (errors are deferred to finish()).
                    let _ = std::io::Write::write_all(s, part);
                    if part.len() < chunk.len() {
                        s.mark_entry_cap();
                        return Flow::Stop;
                    }
                    if s.is_truncated() {
                        return Flow::Stop;
                    }
                    Flow::Continue
                })
                .await;
            total += report.duration;
            report.duration = total;
            let stop =
                report.error().is_some() || report.end == End::CapReached || write_err.is_some();
            last = Some(report);
            if stop {
                break;
            }
        }
        if let Some(e) = write_err {
            return Err(e);
        }
        let Some(report) = last else {
            return Err(WriteError::Poisoned);
        };
        let completion = report.completion();
        let record = match sink {
            Some(s) => tokio::task::spawn_blocking(move || s.finish(completion))
                .await
                .map_err(|_| WriteError::Poisoned)??,
            None => match completion.error.clone() {
                Some(err) => {
                    writer.record_missing(spec, ArtifactStatus::Failed, err, completion)?
                }
                None => writer.add_bytes(spec, &[], completion)?,
            },
        };
        Ok(Ran::Ran(record, report))
    }

    /// Runs `argv` and returns up to `max_bytes` of its stdout (for small outputs
    /// such as version strings).
    pub async fn capture(&self, argv: &[&str], max_bytes: usize) -> Captured {
        let Some((program, args)) = argv.split_first() else {
            return Captured::Missing;
        };
        let Some(found) = self.locate(program) else {
            return Captured::Missing;
        };
        let mut out = Vec::new();
        let report = self
            .run_core(&found, args, Kind::Light, None, |chunk| {
                let room = max_bytes.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if out.len() >= max_bytes {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })
            .await;
        Captured::Output(out, report)
    }

    /// Runs `argv` and hands its stdout to `on_chunk` as it arrives (bounded
    /// memory for large outputs that are filtered rather than stored). None when
    /// the program is not installed.
    pub async fn stream(&self, argv: &[&str], mut on_chunk: impl FnMut(&[u8])) -> Option<Report> {
        let (program, args) = argv.split_first()?;
        let found = self.locate(program)?;
        Some(
            self.run_core(&found, args, Kind::Light, None, |chunk| {
                on_chunk(chunk);
                Flow::Continue
            })
            .await,
        )
    }

    async fn run_core(
        &self,
        program: &Located,
        args: &[&str],
        kind: Kind,
        timeout: Option<Duration>,
        mut on_stdout: impl FnMut(&[u8]) -> Flow,
    ) -> Report {
        let path = program.path.as_path();
        let timeout = timeout.unwrap_or(self.budget(kind));
        let mut report = Report {
            end: End::Exited,
            exit_status: None,
            signal: None,
            duration: Duration::ZERO,
            stderr: Vec::new(),
        };
        // A dump waits for a slot first (not part of its budget), but at most
        // `--timeout`: a dump that hangs cannot hold the others back longer than that.
        let _slot = match kind {
            Kind::Light => None,
            Kind::Dump => tokio::select! {
                p = tokio::time::timeout(self.timeout, self.dumps.clone().acquire_owned()) => {
                    p.ok().and_then(Result::ok)
                }
                r = self.cancel.stopped() => {
                    report.end = End::Stopped(r);
                    return report;
                }
            },
        };
        let start = Instant::now();
        if let Some(r) = self.cancel.reason() {
            report.end = End::Stopped(r);
            return report;
        }
        let mut cmd = program.command(args);
        // stdin is a pipe closed at once, not /dev/null: a collector in a bare root (a
        // scratch image, a libc-less debug container) has no /dev to open.
        cmd.env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                report.end = End::SpawnFailed(e.to_string());
                report.duration = start.elapsed();
                return report;
            }
        };
        // End of input for the tool: no tool the collector runs reads stdin.
        drop(child.stdin.take());
        tracing::debug!(program = %path.display(), ?args, "spawned");
        // Kills the group if this future is dropped (task aborted) before the end.
        let mut guard = GroupGuard(child.id().map(|id| id as i32));
        let stderr_task = child.stderr.take().map(|mut err| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match err.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let room = STDERR_EXCERPT_BYTES.saturating_sub(kept.len());
                            kept.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                }
                kept
            })
        });
        // The silence timer: reset by every chunk of stdout.
        let silence = tokio::time::sleep(timeout);
        tokio::pin!(silence);
        let mut any_output = false;
        let timed_out = |any_output: bool| End::TimedOut {
            silent: timeout,
            ran: start.elapsed(),
            any_output,
        };
        let mut end: Option<End> = None;
        if let Some(mut out) = child.stdout.take() {
            let mut buf = vec![0u8; 64 * 1024];
            end = loop {
                tokio::select! {
                    r = out.read(&mut buf) => match r {
                        Ok(0) => break None,
                        Ok(n) => {
                            any_output = true;
                            silence
                                .as_mut()
                                .reset(tokio::time::Instant::now() + timeout);
                            if on_stdout(&buf[..n]) == Flow::Stop {
                                break Some(End::CapReached);
                            }
                        }
                        Err(e) => break Some(End::ReadFailed(e.to_string())),
                    },
                    _ = &mut silence => break Some(timed_out(any_output)),
                    r = self.cancel.stopped() => break Some(End::Stopped(r)),
                }
            };
        }
        if end.is_none() {
            tokio::select! {
                st = child.wait() => match st {
                    Ok(st) => {
                        use std::os::unix::process::ExitStatusExt;
                        report.exit_status = st.code();
                        report.signal = st.signal();
                        end = Some(End::Exited);
                    }
                    Err(e) => end = Some(End::ReadFailed(e.to_string())),
                },
                _ = &mut silence => end = Some(timed_out(any_output)),
                r = self.cancel.stopped() => end = Some(End::Stopped(r)),
            }
        }
        let end = end.unwrap_or(End::Exited);
        // Whatever happened, nothing of the group may survive us.
        guard.kill();
        if end != End::Exited {
            let _ = child.start_kill();
            if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                use std::os::unix::process::ExitStatusExt;
                report.signal = st.signal();
            }
        }
        if let Some(task) = stderr_task
            && let Ok(Ok(kept)) = tokio::time::timeout(Duration::from_millis(500), task).await
        {
            report.stderr = kept;
        }
        report.end = end;
        report.duration = start.elapsed();
        tracing::debug!(program = %path.display(), end = ?report.end, ms = report.duration.as_millis() as u64, "finished");
        report
    }
}

/// SIGKILLs a process group when dropped (unless already done).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (group already gone) is the normal case after a clean exit.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        let mut r = Report {
            end: End::TimedOut {
                silent: Duration::from_secs(5),
                ran: Duration::from_secs(5),
                any_output: false,
            },
            exit_status: None,
            signal: Some(9),
            duration: Duration::ZERO,
            stderr: vec![],
        };
        assert_eq!(r.error().as_deref(), Some("timed out after 5s"));
        r.end = End::Exited;
        r.exit_status = Some(1);
        assert_eq!(r.error().as_deref(), Some("exited with status 1"));
        r.exit_status = Some(0);
        assert_eq!(r.error(), None);
        r.end = End::TimedOut {
            silent: Duration::from_millis(1500),
            ran: Duration::from_millis(1500),
            any_output: false,
        };
        assert_eq!(r.error().as_deref(), Some("timed out after 1.5s"));
        r.end = End::TimedOut {
            silent: Duration::from_secs(20),
            ran: Duration::from_millis(31_300),
            any_output: true,
        };
        assert_eq!(
            r.error().as_deref(),
            Some("timed out after 31.3s (no output for 20s)")
        );
    }

    fn exe(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn exec_with(path_dir: &Path, host_root: &Path) -> Exec {
        let mut e = Exec::new(
            Some(host_root.to_path_buf()),
            Duration::from_secs(1),
            Cancel::new(),
        );
        e.search = vec![path_dir.to_path_buf()];
        e
    }

    #[test]
    fn netfilter_tools_come_from_the_host_root_first_and_others_from_path() {
        let own = tempfile::tempdir().expect("tempdir");
        let host = tempfile::tempdir().expect("tempdir");
        for p in ["iptables-save", "nft", "ip"] {
            exe(&own.path().join(p));
        }
        // Debian's layout: an absolute symlink through /etc/alternatives, which only
        // resolves inside the host root.
        exe(&host.path().join("usr/sbin/xtables-nft-multi"));
        std::fs::create_dir_all(host.path().join("etc/alternatives")).expect("mkdir");
        std::os::unix::fs::symlink(
            "/usr/sbin/xtables-nft-multi",
            host.path().join("etc/alternatives/iptables-save"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink(
            "/etc/alternatives/iptables-save",
            host.path().join("usr/sbin/iptables-save"),
        )
        .expect("symlink");
        exe(&host.path().join("usr/bin/ip"));
        exe(&host.path().join("usr/bin/conntrack"));
        let e = exec_with(own.path(), host.path());

        let ipt = e.locate("iptables-save").expect("iptables-save");
        assert_eq!(ipt.origin, Origin::HostRoot);
        assert_eq!(ipt.path, host.path().join("usr/sbin/iptables-save"));
        assert_eq!(
            ipt.chroot,
            Some((
                host.path().to_path_buf(),
                PathBuf::from("/usr/sbin/iptables-save")
            ))
        );
        // Not on the host: the container's own copy is used.
        let nft = e.locate("nft").expect("nft");
        assert_eq!(
            (nft.origin, nft.path),
            (Origin::Container, own.path().join("nft"))
        );
        // Not a netfilter tool: the container's copy wins over the host's.
        let ip = e.locate("ip").expect("ip");
        assert_eq!(ip.origin, Origin::Container);
        // Only on the host.
        assert_eq!(
            e.locate("conntrack").map(|l| l.origin),
            Some(Origin::HostRoot)
        );
        assert!(e.locate("ipvsadm").is_none());
    }

    #[test]
    fn a_dangling_symlink_in_the_host_root_is_not_a_program() {
        let own = tempfile::tempdir().expect("tempdir");
        let host = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(host.path().join("usr/sbin")).expect("mkdir");
        std::os::unix::fs::symlink("/nowhere/nft", host.path().join("usr/sbin/nft"))
            .expect("symlink");
        let e = exec_with(own.path(), host.path());
        assert!(e.locate("nft").is_none());
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_never_above_it() {
        let host = tempfile::tempdir().expect("tempdir");
        exe(&host.path().join("usr/sbin/tool"));
        std::os::unix::fs::symlink("usr/sbin", host.path().join("sbin")).expect("symlink");
        std::os::unix::fs::symlink("../../../../usr/sbin/tool", host.path().join("up"))
            .expect("symlink");
        assert_eq!(
            resolve_in_root(host.path(), Path::new("/sbin/tool")),
            Some(host.path().join("usr/sbin/tool"))
        );
        // `..` stops at the root, as it does for a chrooted process.
        assert_eq!(
            resolve_in_root(host.path(), Path::new("/up")),
            Some(host.path().join("usr/sbin/tool"))
        );
        assert_eq!(resolve_in_root(host.path(), Path::new("/sbin/none")), None);
    }

    #[test]
    fn host_root_paths_in_arguments_are_seen_from_inside_the_chroot() {
        let root = Path::new("/host");
        assert_eq!(
            inside_root(root, "--net=/host/proc/1/ns/net"),
            "--net=/proc/1/ns/net"
        );
        assert_eq!(inside_root(root, "/host/run/netns/a"), "/run/netns/a");
        assert_eq!(inside_root(root, "/host"), "/");
        assert_eq!(inside_root(root, "/hostile/x"), "/hostile/x");
        assert_eq!(inside_root(root, "-c"), "-c");
        assert_eq!(inside_root(Path::new("/host/"), "/host/etc"), "/etc");
    }

    #[test]
    fn version_flags_are_known_for_the_netfilter_tools() {
        assert_eq!(
            version_args("iptables-legacy-save"),
            Some(&["--version"][..])
        );
        assert_eq!(version_args("ip6tables-nft-save"), Some(&["--version"][..]));
        assert_eq!(version_args("nft"), Some(&["--version"][..]));
        assert_eq!(version_args("ipset"), Some(&["version"][..]));
        assert_eq!(version_args("ip"), Some(&["-V"][..]));
        assert_eq!(version_args("some-tool"), None);
    }
}
