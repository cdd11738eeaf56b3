//! Streaming, atomic bundle writer.
//!
//! How the manifest comes first although it is known last: zstd frames
//! concatenate, so the writer compresses every artifact's tar entry into a
//! *body* file as it finishes, and at the end writes the final file as
//! `frame(manifest entry) ++ body ++ frame(end-of-archive)`. Each artifact is
//! spooled to its own temp file while it is produced (its size must be known
//! before its tar header), so memory stays bounded whatever the sizes: the
//! largest buffer is a fixed copy buffer.
//!
//! Atomicity: everything is written under a hidden spool directory
//! `.netsnap-<pid>-*.partial` in the target directory and renamed to the final
//! name only after a successful fsync. An interrupted run leaves no file that
//! looks like a complete bundle.
//!
//! Confidentiality and cleanup: the spool directory is created 0700 and every
//! file in it 0600 (the bundle itself ends up 0600), so no other local user
//! can read artifacts during a run. The spool is removed when the writer is
//! dropped (success, error, panic unwinding); [`remove_live_spools`] removes
//! the spools of this process for exit paths that skip destructors (a second
//! Ctrl-C); the `<pid>` in the name lets the next run find and remove the
//! spool of a process that was killed ([`spool_owner_pid`]).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::layout;
use crate::manifest::{
    ArtifactKind, ArtifactRecord, ArtifactSource, ArtifactStatus, CollectionInfo, FORMAT_VERSION,
    Manifest, NodeInfo, ToolInfo, Truncation, TruncationReason,
};

/// Name prefix of spool directories (`.netsnap-<pid>-XXXXXX.partial`).
pub const SPOOL_PREFIX: &str = ".netsnap-";
/// Name suffix of spool directories.
pub const SPOOL_SUFFIX: &str = ".partial";

/// Spool directories of live writers of this process.
static LIVE_SPOOLS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes the spool directories of every writer of this process still alive;
/// for exit paths that skip destructors (`std::process::exit` after a second
/// interrupt). Best effort: errors are ignored.
pub fn remove_live_spools() {
    let paths = LIVE_SPOOLS
        .lock()
        .map(|g| g.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    for p in paths {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// The pid of the process that created spool directory `name`
/// (`.netsnap-<pid>-XXXXXX.partial`), if `name` is one.
pub fn spool_owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(SPOOL_PREFIX)?
        .strip_suffix(SPOOL_SUFFIX)?;
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() || random.contains('.') {
        return None;
    }
    pid.parse().ok()
}

/// Cap on the stderr excerpt kept in a record.
pub const STDERR_EXCERPT_BYTES: usize = 4096;

/// Errors of the writer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// An I/O operation on the output or spool files failed.
    #[error("cannot write bundle {path}: {source}")]
    Io {
        /// File being written.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The artifact path is not a valid relative bundle path.
    #[error("invalid artifact path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Two artifacts were given the same path.
    #[error("artifact path {path:?} was used twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// Serializing a native artifact or the manifest failed.
    #[error("cannot serialize {path}: {source}")]
    Json {
        /// Artifact path.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// The writer's lock was poisoned by a panic in another thread.
    #[error("bundle writer state is poisoned (a producer thread panicked)")]
    Poisoned,
}

/// Options of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Per-artifact cap on stored bytes (None = unlimited).
    pub max_artifact_bytes: Option<u64>,
    /// Cap on the sum of stored artifact bytes, before compression (None = unlimited).
    pub max_total_bytes: Option<u64>,
    /// zstd level (1..=19). Default 3: fast, and text compresses well at it.
    pub compression_level: i32,
    /// Replace a file already at the final path (default). When false, `finish`
    /// fails with `AlreadyExists` instead (checked atomically at the rename).
    pub replace_existing: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_artifact_bytes: Some(1 << 30),
            max_total_bytes: Some(4 << 30),
            compression_level: 3,
            replace_existing: true,
        }
    }
}

/// What an artifact is, given when it is started.
#[derive(Debug, Clone)]
pub struct ArtifactSpec {
    /// Bundle path (see [`crate::layout`]).
    pub path: String,
    /// Raw or native.
    pub kind: ArtifactKind,
    /// Content identifier ([`crate::layout::content`]).
    pub content: String,
    /// Source.
    pub source: ArtifactSource,
    /// Command line, if any.
    pub command: Option<Vec<String>>,
    /// Namespace id, if the artifact describes one namespace.
    pub netns: Option<String>,
    /// Extra attributes (backend, …).
    pub attributes: BTreeMap<String, String>,
}

impl ArtifactSpec {
    /// A raw artifact read from a file.
    pub fn raw_file(path: impl Into<String>, content: &str) -> Self {
        Self::new(path, ArtifactKind::Raw, content, ArtifactSource::File)
    }

    /// A raw artifact produced by a command.
    pub fn raw_command(path: impl Into<String>, content: &str, argv: &[&str]) -> Self {
        let mut s = Self::new(path, ArtifactKind::Raw, content, ArtifactSource::Command);
        s.command = Some(argv.iter().map(|a| a.to_string()).collect());
        s
    }

    /// A native JSON artifact.
    pub fn native(path: impl Into<String>, source: ArtifactSource) -> Self {
        let path = path.into();
        let content = if path.ends_with(".jsonl") {
            layout::content::NATIVE_JSONL
        } else {
            layout::content::NATIVE_JSON
        };
        Self::new(path, ArtifactKind::Native, content, source)
    }

    /// Generic constructor.
    pub fn new(
        path: impl Into<String>,
        kind: ArtifactKind,
        content: &str,
        source: ArtifactSource,
    ) -> Self {
        ArtifactSpec {
            path: path.into(),
            kind,
            content: content.to_string(),
            source,
            command: None,
            netns: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Sets the namespace id.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }

    /// Adds an attribute.
    pub fn with_attribute(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_string(), value.into());
        self
    }

    fn record(
        self,
        status: ArtifactStatus,
        duration: Duration,
        exit_status: Option<i32>,
    ) -> ArtifactRecord {
        ArtifactRecord {
            path: self.path,
            kind: self.kind,
            content: self.content,
            source: self.source,
            command: self.command,
            netns: self.netns,
            status,
            exit_status,
            duration_ms: duration.as_millis().try_into().unwrap_or(u64::MAX),
            size: 0,
            sha256: None,
            error: None,
            truncated: None,
            stderr: None,
            attributes: self.attributes,
        }
    }
}

/// How an artifact's producing step ended.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// Exit status of the command, if any.
    pub exit_status: Option<i32>,
    /// Wall time of the step.
    pub duration: Duration,
    /// Set when the step did not end cleanly (timeout, non-zero exit, read error);
    /// the content kept is then recorded as `partial`.
    pub error: Option<String>,
    /// The command's stderr (an excerpt is kept).
    pub stderr: Option<Vec<u8>>,
}

struct Body {
    encoder: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    records: Vec<ArtifactRecord>,
    paths: HashSet<String>,
}

struct Shared {
    final_path: PathBuf,
    spool: tempfile::TempDir,
    body_path: PathBuf,
    body: Mutex<Option<Body>>,
    total_used: AtomicU64,
    options: WriterOptions,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The TempDir removes the directory itself; forget it here.
        if let Ok(mut g) = LIVE_SPOOLS.lock() {
            let p = self.spool.path();
            g.retain(|q| q != p);
        }
    }
}

/// Writes one bundle. Cheap to clone; clones share the same bundle, so
/// concurrent steps can each stream their own artifact.
#[derive(Clone)]
pub struct BundleWriter {
    shared: Arc<Shared>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BundleWriter {
    /// Starts a bundle that will be renamed to `final_path` by [`BundleWriter::finish`].
    pub fn create(
        final_path: impl Into<PathBuf>,
        options: WriterOptions,
    ) -> Result<Self, WriteError> {
        let final_path = final_path.into();
        let dir = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut builder = tempfile::Builder::new();
        let prefix = format!("{SPOOL_PREFIX}{}-", std::process::id());
        builder.prefix(&prefix).suffix(SPOOL_SUFFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let spool = builder.tempdir_in(&dir).map_err(io_err(&dir))?;
        if let Ok(mut g) = LIVE_SPOOLS.lock() {
            g.push(spool.path().to_path_buf());
        }
        let body_path = spool.path().join("body.tar.zst");
        let mut open = std::fs::OpenOptions::new();
        open.read(true).write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        let file = open.open(&body_path).map_err(io_err(&body_path))?;
        let mut encoder =
            zstd::stream::write::Encoder::new(BufWriter::new(file), options.compression_level)
                .map_err(io_err(&body_path))?;
        // Frame checksums make a flipped byte a decompression error, not silent garbage.
        encoder.include_checksum(true).map_err(io_err(&body_path))?;
        Ok(BundleWriter {
            shared: Arc::new(Shared {
                final_path,
                spool,
                body_path,
                body: Mutex::new(Some(Body {
                    encoder,
                    records: Vec::new(),
                    paths: HashSet::new(),
                })),
                total_used: AtomicU64::new(0),
                options,
            }),
        })
    }

    /// The path the bundle will have once finished.
    pub fn final_path(&self) -> &Path {
        &self.shared.final_path
    }

    /// Starts streaming an artifact. Write its bytes to the returned sink, then call
    /// [`ArtifactSink::finish`].
    pub fn artifact(&self, spec: ArtifactSpec) -> Result<ArtifactSink, WriteError> {
        layout::validate_path(&spec.path).map_err(|reason| WriteError::InvalidPath {
            path: spec.path.clone(),
            reason,
        })?;
        self.reserve_path(&spec.path)?;
        let file = tempfile::tempfile_in(self.shared.spool.path())
            .map_err(io_err(self.shared.spool.path()))?;
        Ok(ArtifactSink {
            writer: self.clone(),
            spec,
            file: BufWriter::with_capacity(64 * 1024, file),
            hasher: Sha256::new(),
            kept: 0,
            truncated: None,
            io_error: None,
        })
    }

    /// Stores a whole in-memory artifact.
    pub fn add_bytes(
        &self,
        spec: ArtifactSpec,
        bytes: &[u8],
        completion: Completion,
    ) -> Result<ArtifactRecord, WriteError> {
        let mut sink = self.artifact(spec)?;
        sink.write_all(bytes).map_err(io_err(self.final_path()))?;
        sink.finish(completion)
    }

    /// Serializes `value` as pretty JSON into a native artifact.
    pub fn add_json<T: serde::Serialize>(
        &self,
        spec: ArtifactSpec,
        value: &T,
        duration: Duration,
    ) -> Result<ArtifactRecord, WriteError> {
        let path = spec.path.clone();
        let mut sink = self.artifact(spec)?;
        serde_json::to_writer_pretty(&mut sink, value)
            .map_err(|source| WriteError::Json { path, source })?;
        sink.write_all(b"\n").map_err(io_err(self.final_path()))?;
        sink.finish(Completion {
            duration,
            ..Completion::default()
        })
    }

    /// Records an artifact that has no content: the step failed, was skipped, or its
    /// source does not exist here. `status` must not be `Ok`/`Partial`.
    pub fn record_missing(
        &self,
        spec: ArtifactSpec,
        status: ArtifactStatus,
        reason: impl Into<String>,
        completion: Completion,
    ) -> Result<ArtifactRecord, WriteError> {
        layout::validate_path(&spec.path).map_err(|reason| WriteError::InvalidPath {
            path: spec.path.clone(),
            reason,
        })?;
        self.reserve_path(&spec.path)?;
        let status = if status.has_content() {
            ArtifactStatus::Failed
        } else {
            status
        };
        let mut record = spec.record(status, completion.duration, completion.exit_status);
        record.error = Some(reason.into());
        record.stderr = completion.stderr.as_deref().and_then(stderr_excerpt);
        let mut guard = self.lock()?;
        let body = guard.as_mut().ok_or(WriteError::Poisoned)?;
        body.records.push(record.clone());
        Ok(record)
    }

    /// The records written so far (in the order they finished).
    pub fn records(&self) -> Vec<ArtifactRecord> {
        self.lock()
            .ok()
            .and_then(|g| g.as_ref().map(|b| b.records.clone()))
            .unwrap_or_default()
    }

    /// True when a record (with or without content) exists or is in progress for `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.lock()
            .ok()
            .and_then(|g| g.as_ref().map(|b| b.paths.contains(path)))
            .unwrap_or(false)
    }

    /// Writes the manifest and renames the bundle into place. Returns the final path.
    pub fn finish(
        self,
        tool: ToolInfo,
        node: NodeInfo,
        collection: CollectionInfo,
    ) -> Result<(PathBuf, Manifest), WriteError> {
        self.finish_with(|records| Manifest {
            format_version: FORMAT_VERSION.to_string(),
            tool,
            node,
            collection,
            artifacts: records,
            redaction: None,
        })
    }

    /// Like [`BundleWriter::finish`], but the caller builds the manifest from the
    /// records written (sorted by path): a rewriter (redaction) keeps the
    /// original records' statuses and reasons with the new sizes and hashes.
    pub fn finish_with(
        self,
        build: impl FnOnce(Vec<ArtifactRecord>) -> Manifest,
    ) -> Result<(PathBuf, Manifest), WriteError> {
        let body = self.lock()?.take().ok_or(WriteError::Poisoned)?;
        let Body {
            encoder,
            mut records,
            ..
        } = body;
        let mut body_file = encoder
            .finish()
            .map_err(io_err(&self.shared.body_path))?
            .into_inner()
            .map_err(|e| WriteError::Io {
                path: self.shared.body_path.clone(),
                source: e.into_error(),
            })?;
        body_file.flush().map_err(io_err(&self.shared.body_path))?;
        records.sort_by(|a, b| a.path.cmp(&b.path));
        let mut manifest = build(records);
        manifest.artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest_json =
            serde_json::to_vec_pretty(&manifest).map_err(|source| WriteError::Json {
                path: layout::MANIFEST.to_string(),
                source,
            })?;

        let final_path = &self.shared.final_path;
        // Inside the spool (same directory as the final path, so the rename is
        // atomic): removing the spool removes a half-written bundle too. 0600.
        let spool = self.shared.spool.path();
        let tmp = tempfile::Builder::new()
            .prefix("bundle-")
            .suffix(".tar.zst")
            .tempfile_in(spool)
            .map_err(io_err(spool))?;
        {
            let mut out = BufWriter::new(tmp.as_file());
            let level = self.shared.options.compression_level;
            // Frame 1: the manifest entry.
            let mut entry = Vec::with_capacity(manifest_json.len() + 1024);
            tar_entry_header(layout::MANIFEST, manifest_json.len() as u64, &mut entry)
                .map_err(io_err(final_path))?;
            entry.extend_from_slice(&manifest_json);
            pad_to_block(&mut entry, manifest_json.len() as u64);
            let frame = compress_frame(&entry, level).map_err(io_err(final_path))?;
            out.write_all(&frame).map_err(io_err(final_path))?;
            // Frame(s) 2: the artifacts, already compressed.
            body_file
                .seek(SeekFrom::Start(0))
                .map_err(io_err(&self.shared.body_path))?;
            io::copy(&mut body_file, &mut out).map_err(io_err(final_path))?;
            // Frame 3: tar end-of-archive (two zero blocks).
            let eoa = compress_frame(&[0u8; 1024], level).map_err(io_err(final_path))?;
            out.write_all(&eoa).map_err(io_err(final_path))?;
            out.flush().map_err(io_err(final_path))?;
        }
        tmp.as_file().sync_all().map_err(io_err(final_path))?;
        let persisted = if self.shared.options.replace_existing {
            tmp.persist(final_path)
        } else {
            tmp.persist_noclobber(final_path)
        };
        persisted.map_err(|e| WriteError::Io {
            path: final_path.clone(),
            source: e.error,
        })?;
        Ok((final_path.clone(), manifest))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<Body>>, WriteError> {
        self.shared.body.lock().map_err(|_| WriteError::Poisoned)
    }

    fn reserve_path(&self, path: &str) -> Result<(), WriteError> {
        let mut guard = self.lock()?;
        let body = guard.as_mut().ok_or(WriteError::Poisoned)?;
        if !body.paths.insert(path.to_string()) {
            return Err(WriteError::DuplicatePath {
                path: path.to_string(),
            });
        }
        Ok(())
    }

    /// Takes up to `want` bytes from the total budget; returns how many were granted.
    fn take_budget(&self, want: u64) -> u64 {
        let Some(max) = self.shared.options.max_total_bytes else {
            self.shared.total_used.fetch_add(want, Ordering::Relaxed);
            return want;
        };
        let mut granted = 0;
        let _ = self
            .shared
            .total_used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                granted = want.min(max.saturating_sub(used));
                Some(used + granted)
            });
        granted
    }
}

/// A streaming sink for one artifact; bytes past a cap are counted and dropped.
pub struct ArtifactSink {
    writer: BundleWriter,
    spec: ArtifactSpec,
    file: BufWriter<File>,
    hasher: Sha256,
    kept: u64,
    truncated: Option<TruncationReason>,
    io_error: Option<io::Error>,
}

impl ArtifactSink {
    /// True once a cap was hit: producers may stop early (further bytes are dropped).
    pub fn is_truncated(&self) -> bool {
        self.truncated.is_some()
    }

    /// Bytes kept so far.
    pub fn bytes_kept(&self) -> u64 {
        self.kept
    }

    /// Sets a record attribute known only once the content is written (e.g. what it cost).
    pub fn set_attribute(&mut self, key: &str, value: impl Into<String>) {
        self.spec.attributes.insert(key.to_string(), value.into());
    }

    /// Marks the artifact as cut by a producer-side cap (e.g. at most N lines).
    pub fn mark_entry_cap(&mut self) {
        self.truncated.get_or_insert(TruncationReason::EntryCap);
    }

    /// Ends the artifact and appends it to the bundle.
    pub fn finish(mut self, completion: Completion) -> Result<ArtifactRecord, WriteError> {
        if let Some(e) = self.io_error.take() {
            return Err(WriteError::Io {
                path: self.writer.shared.spool.path().to_path_buf(),
                source: e,
            });
        }
        let spool_path = self.writer.shared.spool.path().to_path_buf();
        let mut file = self.file.into_inner().map_err(|e| WriteError::Io {
            path: spool_path.clone(),
            source: e.into_error(),
        })?;
        file.seek(SeekFrom::Start(0)).map_err(io_err(&spool_path))?;
        let sha = hex::encode(self.hasher.finalize());
        let partial = completion.error.is_some() || self.truncated.is_some();
        let status = if partial {
            ArtifactStatus::Partial
        } else {
            ArtifactStatus::Ok
        };
        let mut record = self
            .spec
            .record(status, completion.duration, completion.exit_status);
        record.size = self.kept;
        record.sha256 = Some(sha);
        record.error = completion.error;
        record.stderr = completion.stderr.as_deref().and_then(stderr_excerpt);
        record.truncated = self.truncated.map(|reason| Truncation {
            kept_bytes: self.kept,
            reason,
        });

        let mut guard = self.writer.lock()?;
        let body = guard.as_mut().ok_or(WriteError::Poisoned)?;
        let final_path = self.writer.shared.final_path.clone();
        let mut header = Vec::with_capacity(512);
        tar_entry_header(&record.path, self.kept, &mut header).map_err(io_err(&final_path))?;
        body.encoder
            .write_all(&header)
            .map_err(io_err(&final_path))?;
        let copied = io::copy(&mut (&mut file).take(self.kept), &mut body.encoder)
            .map_err(io_err(&final_path))?;
        if copied != self.kept {
            return Err(WriteError::Io {
                path: spool_path,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "spool file shrank"),
            });
        }
        let pad = padding(self.kept);
        body.encoder
            .write_all(&[0u8; 512][..pad])
            .map_err(io_err(&final_path))?;
        body.records.push(record.clone());
        Ok(record)
    }
}

impl Write for ArtifactSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.io_error.is_some() || self.truncated.is_some() {
            return Ok(buf.len());
        }
        let mut allowed = buf.len() as u64;
        if let Some(max) = self.writer.shared.options.max_artifact_bytes {
            let room = max.saturating_sub(self.kept);
            if room < allowed {
                allowed = room;
                self.truncated = Some(TruncationReason::ArtifactCap);
            }
        }
        let granted = self.writer.take_budget(allowed);
        if granted < allowed {
            allowed = granted;
            self.truncated = Some(TruncationReason::TotalCap);
        }
        let part = &buf[..allowed as usize];
        if let Err(e) = self.file.write_all(part) {
            // Remember the error for finish(); keep the producer draining its pipe.
            self.io_error = Some(e);
            return Ok(buf.len());
        }
        self.hasher.update(part);
        self.kept += allowed;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One independent zstd frame with a content checksum.
fn compress_frame(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut enc =
        zstd::stream::write::Encoder::new(Vec::with_capacity(data.len() / 2 + 64), level)?;
    enc.include_checksum(true)?;
    enc.write_all(data)?;
    enc.finish()
}

fn stderr_excerpt(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let cut = &bytes[..bytes.len().min(STDERR_EXCERPT_BYTES)];
    Some(String::from_utf8_lossy(cut).trim_end().to_string())
}

fn padding(size: u64) -> usize {
    ((512 - (size % 512)) % 512) as usize
}

fn pad_to_block(buf: &mut Vec<u8>, size: u64) {
    buf.extend(std::iter::repeat_n(0u8, padding(size)));
}

/// A ustar header for a regular file (paths up to 255 bytes via the prefix field).
fn tar_entry_header(path: &str, size: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    Ok(())
}
