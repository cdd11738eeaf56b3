//! Safe bundle reader.
//!
//! Bundles come from strangers, so the reader treats every byte as hostile:
//! it only ever creates regular files and directories inside its own temp dir,
//! never follows or creates links or devices, rejects absolute and `..` paths,
//! caps the decompressed size and the number of entries (a zstd bomb is refused
//! with a message, not an out-of-memory), and checks every artifact against the
//! sha256 recorded in the manifest.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::layout;
use crate::manifest::{ArtifactRecord, FORMAT_MAJOR, FORMAT_VERSION, Manifest};

/// The largest `manifest.json` the reader accepts.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Errors of the reader. Every variant is a one-line message naming the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bundle file or directory cannot be opened.
    #[error("cannot open bundle {path}: {source}")]
    Open {
        /// Path given by the user.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The input is neither a zstd-compressed tar, a tar, nor a directory.
    #[error(
        "{path} is not a netsnap bundle (expected a .tar.zst, a .tar, or an extracted directory)"
    )]
    NotABundle {
        /// Path given by the user.
        path: PathBuf,
    },
    /// The zstd stream is corrupt or truncated.
    #[error("corrupt or truncated zstd data: {detail}")]
    Compression {
        /// Decoder message.
        detail: String,
    },
    /// The tar stream is corrupt or truncated.
    #[error("corrupt or truncated tar archive: {detail}")]
    Archive {
        /// Parser message.
        detail: String,
    },
    /// No `manifest.json` at the root of the bundle.
    #[error("bundle has no manifest.json at its root")]
    MissingManifest,
    /// `manifest.json` is not valid manifest JSON.
    #[error("malformed manifest.json: {detail}")]
    MalformedManifest {
        /// What is wrong.
        detail: String,
    },
    /// The bundle's major format version is newer than this reader.
    #[error(
        "bundle format version {found} is newer than this netsnap supports ({supported}); upgrade netsnap-analyze to a release that reads format {found}"
    )]
    UnsupportedVersion {
        /// Version found in the manifest.
        found: String,
        /// Version this reader writes.
        supported: String,
    },
    /// An entry would escape the extraction directory, or is a link or special file.
    #[error("refusing unsafe archive entry {path:?}: {reason}")]
    UnsafeEntry {
        /// Entry path as stored.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two entries have the same path.
    #[error("duplicate archive entry {path:?}")]
    DuplicateEntry {
        /// Entry path.
        path: String,
    },
    /// The decompressed content exceeds the cap.
    #[error(
        "bundle expands to more than {limit} bytes; refusing it as a possible decompression bomb (raise the limit with --max-unpacked-size if it is genuine)"
    )]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The archive has more entries than the cap.
    #[error("bundle has more than {limit} entries; refusing it")]
    TooManyEntries {
        /// The cap.
        limit: u64,
    },
    /// An artifact's bytes do not match the manifest's sha256 or size.
    #[error(
        "artifact {path} does not match the manifest (expected sha256 {expected}, got {actual}); the bundle is corrupt or was modified (--no-verify skips this check)"
    )]
    ChecksumMismatch {
        /// Artifact path.
        path: String,
        /// sha256 (and size) in the manifest.
        expected: String,
        /// sha256 (and size) of the bytes.
        actual: String,
    },
    /// The manifest records content for an artifact the archive does not hold.
    #[error("artifact {path} is listed in the manifest but missing from the bundle")]
    MissingArtifact {
        /// Artifact path.
        path: String,
    },
    /// Writing into the extraction directory failed.
    #[error("cannot extract bundle into {path}: {source}")]
    Extract {
        /// Path being written.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

/// Options of the reader.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Check each artifact against the manifest's sha256 (default true).
    pub verify: bool,
    /// Cap on the total decompressed bytes (default 8 GiB).
    pub max_unpacked_bytes: u64,
    /// Cap on the number of archive entries (default 1,000,000).
    pub max_entries: u64,
    /// Where to create the extraction temp dir (default: the system temp dir).
    pub temp_parent: Option<PathBuf>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            verify: true,
            max_unpacked_bytes: 8 << 30,
            max_entries: 1_000_000,
            temp_parent: None,
        }
    }
}

/// An opened bundle: a directory of artifacts plus its manifest.
#[derive(Debug)]
pub struct Bundle {
    source: PathBuf,
    root: PathBuf,
    manifest: Manifest,
    unknown_entries: Vec<String>,
    _temp: Option<std::sync::Arc<tempfile::TempDir>>,
    /// Artifacts taken from another bundle ([`Bundle::adopt_artifacts`]): path -> file.
    adopted: HashMap<String, PathBuf>,
    /// The extraction directories of the bundles adopted from, kept alive with this one.
    _adopted_from: Vec<std::sync::Arc<tempfile::TempDir>>,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Bundle {
    /// Opens a `.tar.zst`, a plain `.tar`, or an extracted bundle directory.
    pub fn open(path: impl AsRef<Path>, options: &ReaderOptions) -> Result<Bundle, ReadError> {
        let path = path.as_ref();
        let meta = fs::metadata(path).map_err(|source| ReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            return Self::open_dir(path, options);
        }
        let mut file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut head = [0u8; 512];
        let n = read_up_to(&mut file, &mut head).map_err(|source| ReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let kind = sniff(&head[..n]).ok_or_else(|| ReadError::NotABundle {
            path: path.to_path_buf(),
        })?;
        let mut bundle = Self::from_reader(file, kind, options)?;
        bundle.source = path.to_path_buf();
        Ok(bundle)
    }

    /// Opens a bundle from bytes already in memory (used by the fuzzer and tests).
    pub fn from_bytes(bytes: &[u8], options: &ReaderOptions) -> Result<Bundle, ReadError> {
        let kind = sniff(bytes).ok_or_else(|| ReadError::NotABundle {
            path: PathBuf::from("<memory>"),
        })?;
        Self::from_reader(bytes, kind, options)
    }

    fn from_reader<R: Read + Send>(
        input: R,
        kind: StreamKind,
        options: &ReaderOptions,
    ) -> Result<Bundle, ReadError> {
        let temp = match &options.temp_parent {
            Some(p) => tempfile::Builder::new().prefix("netsnap-").tempdir_in(p),
            None => tempfile::Builder::new().prefix("netsnap-").tempdir(),
        }
        .map_err(|source| ReadError::Extract {
            path: options
                .temp_parent
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            source,
        })?;
        let root = temp.path().to_path_buf();
        let entries = match kind {
            StreamKind::Zstd => {
                let decoder =
                    zstd::stream::read::Decoder::new(BufReader::new(input)).map_err(|e| {
                        ReadError::Compression {
                            detail: e.to_string(),
                        }
                    })?;
                // Decompression runs one step ahead on its own thread while this one
                // parses the tar stream and writes the files.
                std::thread::scope(|scope| {
                    let ahead = ReadAhead::start(scope, decoder);
                    extract(ahead, &root, options)
                })?
            }
            StreamKind::Tar => extract(input, &root, options)?,
        };
        let (base, prefix) = locate_manifest_root(&root, &entries)?;
        let manifest = load_manifest(&base)?;
        let mut unknown = Vec::new();
        let mut hashes: HashMap<String, (u64, String)> = HashMap::new();
        for (path, info) in entries {
            let Some(rel) = strip_prefix(&path, &prefix) else {
                unknown.push(path);
                continue;
            };
            hashes.insert(rel.to_string(), info);
        }
        for record in &manifest.artifacts {
            if !record.status.has_content() {
                continue;
            }
            let Some((size, sha)) = hashes.get(&record.path) else {
                return Err(ReadError::MissingArtifact {
                    path: record.path.clone(),
                });
            };
            if options.verify {
                check_digest(record, *size, sha)?;
            }
        }
        for rel in hashes.keys() {
            if rel != layout::MANIFEST && manifest.artifact(rel).is_none() {
                unknown.push(rel.clone());
            }
        }
        unknown.sort();
        Ok(Bundle {
            source: PathBuf::new(),
            root: base,
            manifest,
            unknown_entries: unknown,
            _temp: Some(std::sync::Arc::new(temp)),
            adopted: HashMap::new(),
            _adopted_from: Vec::new(),
        })
    }

    fn open_dir(dir: &Path, options: &ReaderOptions) -> Result<Bundle, ReadError> {
        let manifest = load_manifest(dir)?;
        for record in &manifest.artifacts {
            if !record.status.has_content() {
                continue;
            }
            let file = dir_artifact(dir, &record.path)?;
            if options.verify {
                let mut f = File::open(&file).map_err(|source| ReadError::Open {
                    path: file.clone(),
                    source,
                })?;
                let (size, sha) = hash_reader(&mut f).map_err(|source| ReadError::Open {
                    path: file.clone(),
                    source,
                })?;
                check_digest(record, size, &sha)?;
            }
        }
        Ok(Bundle {
            source: dir.to_path_buf(),
            root: dir.to_path_buf(),
            manifest,
            unknown_entries: Vec::new(),
            _temp: None,
            adopted: HashMap::new(),
            _adopted_from: Vec::new(),
        })
    }

    /// The path the bundle was opened from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The directory holding the artifacts (a temp dir for archives).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Archive entries the manifest does not know (ignored: forward compatibility).
    pub fn unknown_entries(&self) -> &[String] {
        &self.unknown_entries
    }

    /// The manifest record of `path`.
    pub fn record(&self, path: &str) -> Option<&ArtifactRecord> {
        self.manifest.artifact(path)
    }

    /// The on-disk file of an artifact that has content, or None.
    pub fn artifact_file(&self, path: &str) -> Option<PathBuf> {
        let record = self.record(path)?;
        if !record.status.has_content() {
            return None;
        }
        if let Some(file) = self.adopted.get(path) {
            return Some(file.clone());
        }
        dir_artifact(&self.root, path).ok()
    }

    /// Takes the artifacts at `paths` from `other` (e.g. the cluster bundle of the
    /// same collection run): `other`'s records replace this bundle's, marked with the
    /// attribute `joined_from` (`other`'s source), and reads of them return `other`'s
    /// (already verified) files, which stay on disk as long as this bundle lives.
    /// Paths `other` has no record of are left alone. Returns the paths taken.
    pub fn adopt_artifacts(&mut self, other: &Bundle, paths: &[&str]) -> Vec<String> {
        let mut taken = Vec::new();
        for path in paths {
            let Some(record) = other.record(path) else {
                continue;
            };
            let mut record = record.clone();
            if record.status.has_content() {
                let Some(file) = other.artifact_file(path) else {
                    continue;
                };
                self.adopted.insert(path.to_string(), file);
            } else {
                self.adopted.remove(*path);
            }
            record.attributes.insert(
                "joined_from".to_string(),
                other.source().display().to_string(),
            );
            let artifacts = &mut self.manifest.artifacts;
            match artifacts.binary_search_by(|a| a.path.as_str().cmp(path)) {
                Ok(i) => artifacts[i] = record,
                Err(i) => match artifacts.iter().position(|a| a.path == *path) {
                    Some(j) => artifacts[j] = record,
                    None => artifacts.insert(i, record),
                },
            }
            taken.push(path.to_string());
        }
        if !taken.is_empty()
            && let Some(t) = &other._temp
        {
            self._adopted_from.push(t.clone());
        }
        taken
    }

    /// Opens an artifact that has content for streaming, or None.
    pub fn open_artifact(&self, path: &str) -> Option<io::Result<File>> {
        self.artifact_file(path).map(File::open)
    }

    /// Reads an artifact that has content as (lossy) UTF-8 text, or None.
    pub fn read_text(&self, path: &str) -> Option<io::Result<String>> {
        self.artifact_file(path).map(|p| {
            fs::read(p).map(|b| match String::from_utf8(b) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })
        })
    }

    /// Records whose path starts with `prefix`.
    pub fn records_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a ArtifactRecord> + 'a {
        self.manifest
            .artifacts
            .iter()
            .filter(move |r| r.path.starts_with(prefix))
    }
}

#[derive(Clone, Copy)]
enum StreamKind {
    Zstd,
    Tar,
}

fn sniff(head: &[u8]) -> Option<StreamKind> {
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        return Some(StreamKind::Zstd);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Some(StreamKind::Tar);
    }
    None
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Remembers whether a read error came from the inner stream (the decompressor),
/// so it can be reported as a compression error rather than a tar error.
struct TrackErrors<R> {
    inner: R,
    failed: Rc<RefCell<Option<String>>>,
}

impl<R: Read> Read for TrackErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.failed
                .borrow_mut()
                .get_or_insert_with(|| e.to_string());
        })
    }
}

/// Extracts the archive into `root`; returns path -> (size, sha256) of regular files (the
/// digest is empty unless `options.verify`).
fn extract<R: Read>(
    input: R,
    root: &Path,
    options: &ReaderOptions,
) -> Result<HashMap<String, (u64, String)>, ReadError> {
    let failed = Rc::new(RefCell::new(None::<String>));
    let mut archive = tar::Archive::new(TrackErrors {
        inner: input,
        failed: failed.clone(),
    });
    let stream_failed = || failed.borrow().clone();
    let mut files: HashMap<String, (u64, String)> = HashMap::new();
    // Hashing costs as much as decompressing: only when verifying, and beside the writes.
    let hasher = options.verify.then(BackgroundHasher::start);
    let mut total: u64 = 0;
    let mut count: u64 = 0;
    let entries = archive.entries().map_err(|e| ReadError::Archive {
        detail: e.to_string(),
    })?;
    // Borrow dance: tar's Entries borrows the archive, so collect errors via a flag.
    let mut pending_error: Option<ReadError> = None;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                pending_error = Some(ReadError::Archive {
                    detail: e.to_string(),
                });
                break;
            }
        };
        count += 1;
        if count > options.max_entries {
            return Err(ReadError::TooManyEntries {
                limit: options.max_entries,
            });
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = safe_relative(&raw_path)?;
        let etype = entry.header().entry_type();
        match etype {
            tar::EntryType::Directory => {
                if rel.is_empty() {
                    continue;
                }
                let dir = root.join(&rel);
                if dir.exists() && !dir.is_dir() {
                    return Err(ReadError::DuplicateEntry { path: rel });
                }
                fs::create_dir_all(&dir).map_err(|source| ReadError::Extract {
                    path: dir.clone(),
                    source,
                })?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if rel.is_empty() {
                    return Err(ReadError::UnsafeEntry {
                        path: raw_path,
                        reason: "empty file name".into(),
                    });
                }
                let declared = entry.header().size().unwrap_or(u64::MAX);
                if total.saturating_add(declared) > options.max_unpacked_bytes {
                    return Err(ReadError::TooLarge {
                        limit: options.max_unpacked_bytes,
                    });
                }
                let dest = root.join(&rel);
                if let Some(parent) = dest.parent() {
                    if parent.exists() && !parent.is_dir() {
                        return Err(ReadError::DuplicateEntry { path: rel });
                    }
                    fs::create_dir_all(parent).map_err(|source| ReadError::Extract {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                let mut out = match OpenOptions::new().write(true).create_new(true).open(&dest) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(ReadError::DuplicateEntry { path: rel });
                    }
                    Err(source) => {
                        return Err(ReadError::Extract { path: dest, source });
                    }
                };
                let limit = options.max_unpacked_bytes - total;
                let mut buf = vec![0u8; 64 * 1024];
                let mut size: u64 = 0;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            pending_error = Some(ReadError::Archive {
                                detail: format!("{rel}: {e}"),
                            });
                            break;
                        }
                    };
                    size += n as u64;
                    if size > limit {
                        return Err(ReadError::TooLarge {
                            limit: options.max_unpacked_bytes,
                        });
                    }
                    if let Some(h) = &hasher {
                        h.update(&buf[..n]);
                    }
                    out.write_all(&buf[..n])
                        .map_err(|source| ReadError::Extract {
                            path: dest.clone(),
                            source,
                        })?;
                }
                if pending_error.is_some() {
                    break;
                }
                if size != declared {
                    pending_error = Some(ReadError::Archive {
                        detail: format!("{rel}: entry is truncated ({size} of {declared} bytes)"),
                    });
                    break;
                }
                total += size;
                if let Some(h) = &hasher {
                    h.finish_file(&rel);
                }
                files.insert(rel, (size, String::new()));
            }
            tar::EntryType::Symlink => {
                return Err(ReadError::UnsafeEntry {
                    path: raw_path,
                    reason: "symbolic links are not allowed in bundles".into(),
                });
            }
            tar::EntryType::Link => {
                return Err(ReadError::UnsafeEntry {
                    path: raw_path,
                    reason: "hard links are not allowed in bundles".into(),
                });
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(ReadError::UnsafeEntry {
                    path: raw_path,
                    reason: "device and fifo entries are not allowed in bundles".into(),
                });
            }
            // PAX and GNU long-name headers are consumed by the tar crate itself.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(ReadError::UnsafeEntry {
                    path: raw_path,
                    reason: format!("unsupported entry type {other:?}"),
                });
            }
        }
    }
    if let Some(err) = pending_error {
        return Err(match stream_failed() {
            Some(detail) => ReadError::Compression { detail },
            None => err,
        });
    }
    // Drain the rest of the stream so a corrupt tail of the compressed data is noticed.
    let mut inner = archive.into_inner();
    let mut sink = [0u8; 8192];
    loop {
        match inner.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(ReadError::Compression {
                    detail: stream_failed().unwrap_or_else(|| e.to_string()),
                });
            }
        }
    }
    if let Some(h) = hasher {
        let mut digests = h.finish().ok_or_else(|| ReadError::Archive {
            detail: "hashing the artifacts failed unexpectedly".into(),
        })?;
        for (rel, (_, digest)) in files.iter_mut() {
            *digest = digests.remove(rel).unwrap_or_default();
        }
    }
    Ok(files)
}

/// A reader whose source is read on another thread, a few blocks ahead of the consumer
/// (bounded: the source thread waits when [`READ_AHEAD_BLOCKS`] blocks are unread, and
/// stops when the consumer is dropped).
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<io::Result<Option<Vec<u8>>>>,
    block: Vec<u8>,
    pos: usize,
    done: bool,
}

/// Blocks in flight between the two threads.
const READ_AHEAD_BLOCKS: usize = 8;
/// Bytes per block.
const READ_AHEAD_BLOCK: usize = 1 << 20;

impl ReadAhead {
    fn start<'scope, R: Read + Send + 'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        mut source: R,
    ) -> ReadAhead {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD_BLOCKS);
        scope.spawn(move || {
            loop {
                let mut block = vec![0u8; READ_AHEAD_BLOCK];
                let mut filled = 0;
                while filled < block.len() {
                    match source.read(&mut block[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // What was read before the error still counts: a truncated
                            // bundle keeps every byte that can be salvaged.
                            block.truncate(filled);
                            if !block.is_empty() {
                                let _ = tx.send(Ok(Some(block)));
                            }
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if filled == 0 {
                    let _ = tx.send(Ok(None));
                    return;
                }
                block.truncate(filled);
                // The consumer is gone (it stopped on an error): stop reading.
                if tx.send(Ok(Some(block))).is_err() {
                    return;
                }
            }
        });
        ReadAhead {
            rx,
            block: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(Some(block))) => {
                    self.block = block;
                    self.pos = 0;
                }
                Ok(Ok(None)) => self.done = true,
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the decompression thread stopped"));
                }
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Hashes the extracted files on a helper thread, in the order they are written.
struct BackgroundHasher {
    tx: std::sync::mpsc::SyncSender<HashMsg>,
    handle: std::thread::JoinHandle<HashMap<String, String>>,
}

enum HashMsg {
    Data(Vec<u8>),
    EndOfFile(String),
}

impl BackgroundHasher {
    fn start() -> BackgroundHasher {
        // A few MB in flight at most: the writer waits when the hasher falls behind.
        let (tx, rx) = std::sync::mpsc::sync_channel::<HashMsg>(64);
        let handle = std::thread::spawn(move || {
            let mut digests = HashMap::new();
            let mut h = Sha256::new();
            for msg in rx {
                match msg {
                    HashMsg::Data(b) => h.update(&b),
                    HashMsg::EndOfFile(rel) => {
                        digests.insert(rel, hex::encode(h.finalize_reset()));
                    }
                }
            }
            digests
        });
        BackgroundHasher { tx, handle }
    }

    fn update(&self, data: &[u8]) {
        // A send fails only if the thread is gone; `finish` reports that.
        let _ = self.tx.send(HashMsg::Data(data.to_vec()));
    }

    fn finish_file(&self, rel: &str) {
        let _ = self.tx.send(HashMsg::EndOfFile(rel.to_string()));
    }

    /// path -> sha256 of every finished file; `None` if the thread failed.
    fn finish(self) -> Option<HashMap<String, String>> {
        drop(self.tx);
        self.handle.join().ok()
    }
}

/// Validates an archive path and returns it normalized (`a/b`), "" for the root.
fn safe_relative(raw: &str) -> Result<String, ReadError> {
    let unsafe_entry = |reason: &str| ReadError::UnsafeEntry {
        path: raw.to_string(),
        reason: reason.to_string(),
    };
    if raw.contains('\\') || raw.contains('\0') {
        return Err(unsafe_entry("backslash or NUL in path"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in Path::new(raw).components() {
        match comp {
            Component::Normal(c) => {
                let c = c.to_str().ok_or_else(|| unsafe_entry("non-UTF-8 path"))?;
                parts.push(c);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry("path contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry("absolute path"));
            }
        }
    }
    let joined = parts.join("/");
    if !joined.is_empty() {
        layout::validate_path(&joined).map_err(unsafe_entry)?;
    }
    Ok(joined)
}

/// Finds the manifest at the root, or inside a single top-level directory
/// (a bundle re-packed with `tar -czf x.tar dir/`).
fn locate_manifest_root(
    root: &Path,
    entries: &HashMap<String, (u64, String)>,
) -> Result<(PathBuf, String), ReadError> {
    if entries.contains_key(layout::MANIFEST) {
        return Ok((root.to_path_buf(), String::new()));
    }
    let nested: Vec<&String> = entries
        .keys()
        .filter(|k| k.ends_with("/manifest.json") && k.matches('/').count() == 1)
        .collect();
    if let [only] = nested.as_slice() {
        let dir = only.trim_end_matches("/manifest.json").to_string();
        return Ok((root.join(&dir), format!("{dir}/")));
    }
    Err(ReadError::MissingManifest)
}

fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)
}

fn load_manifest(dir: &Path) -> Result<Manifest, ReadError> {
    let path = dir.join(layout::MANIFEST);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::MissingManifest),
        Err(source) => return Err(ReadError::Open { path, source }),
    };
    if !meta.is_file() {
        return Err(ReadError::MalformedManifest {
            detail: "manifest.json is not a regular file".into(),
        });
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ReadError::MalformedManifest {
            detail: format!("manifest.json is larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    let bytes = fs::read(&path).map_err(|source| ReadError::Open { path, source })?;
    parse_manifest(&bytes)
}

/// Parses and checks a manifest: version first (so a newer major gets the right
/// message even if its shape changed), then the full structure.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ReadError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ReadError::MalformedManifest {
            detail: e.to_string(),
        })?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ReadError::MalformedManifest {
            detail: "missing string field format_version".into(),
        })?;
    let (major, _minor) =
        Manifest::parse_version(version).ok_or_else(|| ReadError::MalformedManifest {
            detail: format!("format_version {version:?} is not MAJOR.MINOR"),
        })?;
    if major > FORMAT_MAJOR {
        return Err(ReadError::UnsupportedVersion {
            found: version.to_string(),
            supported: FORMAT_VERSION.to_string(),
        });
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| ReadError::MalformedManifest {
            detail: e.to_string(),
        })?;
    let mut seen = std::collections::HashSet::new();
    for record in &manifest.artifacts {
        layout::validate_path(&record.path).map_err(|reason| ReadError::MalformedManifest {
            detail: format!("artifact path {:?}: {reason}", record.path),
        })?;
        if record.path == layout::MANIFEST {
            return Err(ReadError::MalformedManifest {
                detail: "manifest lists itself as an artifact".into(),
            });
        }
        if !seen.insert(record.path.as_str()) {
            return Err(ReadError::MalformedManifest {
                detail: format!("artifact path {:?} is listed twice", record.path),
            });
        }
    }
    Ok(manifest)
}

/// Resolves an artifact inside a directory bundle, refusing links on the way.
fn dir_artifact(dir: &Path, rel: &str) -> Result<PathBuf, ReadError> {
    layout::validate_path(rel).map_err(|reason| ReadError::UnsafeEntry {
        path: rel.to_string(),
        reason: reason.to_string(),
    })?;
    let mut cur = dir.to_path_buf();
    for comp in rel.split('/') {
        cur.push(comp);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ReadError::UnsafeEntry {
                    path: rel.to_string(),
                    reason: "symbolic links are not allowed in bundles".into(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ReadError::MissingArtifact {
                    path: rel.to_string(),
                });
            }
            Err(source) => return Err(ReadError::Open { path: cur, source }),
        }
    }
    if !cur.is_file() {
        return Err(ReadError::UnsafeEntry {
            path: rel.to_string(),
            reason: "not a regular file".into(),
        });
    }
    Ok(cur)
}

fn hash_reader(r: &mut impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn check_digest(record: &ArtifactRecord, size: u64, sha: &str) -> Result<(), ReadError> {
    let expected = record.sha256.as_deref().unwrap_or("");
    if expected != sha || record.size != size {
        return Err(ReadError::ChecksumMismatch {
            path: record.path.clone(),
            expected: format!("{expected} ({} bytes)", record.size),
            actual: format!("{sha} ({size} bytes)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that returns its bytes in odd-sized pieces, then an error.
    struct Choppy {
        data: Vec<u8>,
        pos: usize,
        fail_at_end: bool,
    }

    impl Read for Choppy {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::other("corrupted block"))
                } else {
                    Ok(0)
                };
            }
            let n = out.len().min(7919).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn read_ahead_yields_the_source_bytes_across_blocks() {
        for len in [
            0,
            1,
            READ_AHEAD_BLOCK - 1,
            READ_AHEAD_BLOCK,
            3 * READ_AHEAD_BLOCK + 17,
        ] {
            let want = data(len);
            let got = std::thread::scope(|scope| {
                let mut r = ReadAhead::start(
                    scope,
                    Choppy {
                        data: want.clone(),
                        pos: 0,
                        fail_at_end: false,
                    },
                );
                let mut got = Vec::new();
                r.read_to_end(&mut got).map(|_| got)
            });
            assert_eq!(got.ok(), Some(want), "length {len}");
        }
    }

    #[test]
    fn read_ahead_passes_the_source_error_on_after_the_data() {
        let want = data(READ_AHEAD_BLOCK + 5);
        let (got, err) = std::thread::scope(|scope| {
            let mut r = ReadAhead::start(
                scope,
                Choppy {
                    data: want.clone(),
                    pos: 0,
                    fail_at_end: true,
                },
            );
            let mut got = Vec::new();
            let err = r.read_to_end(&mut got).err();
            (got, err)
        });
        // Every byte read before the error is delivered, then the error.
        assert_eq!(got, want);
        assert_eq!(err.map(|e| e.to_string()), Some("corrupted block".into()));
    }

    #[test]
    fn read_ahead_stops_when_the_consumer_is_dropped() {
        // An endless source: the scope only ends if the source thread stops once the
        // reader is dropped.
        std::thread::scope(|scope| {
            let mut r = ReadAhead::start(scope, io::repeat(7));
            let mut buf = [0u8; 10];
            r.read_exact(&mut buf).unwrap();
            assert_eq!(buf, [7; 10]);
        });
    }
}
