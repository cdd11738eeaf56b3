//! Redacting a whole bundle: collect the names, rewrite every artifact (and
//! every string of the manifest) line by line, write a new bundle with the
//! original records (statuses, reasons) and recomputed sizes and sha256s, and
//! add the manifest's redaction record.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use netsnap_bundle::{
    ArtifactKind, ArtifactRecord, ArtifactSpec, ArtifactStatus, Bundle, BundleWriter, Completion,
    Manifest, REDACTED_FORMAT_VERSION, ReaderOptions, Redaction, ToolInfo, WriterOptions, layout,
};
use serde_json::Value;

use crate::RedactError;
use crate::key::Key;
use crate::map::Map;
use crate::names::NameSet;
use crate::secrets::{self, Filtered};
use crate::text::{Rewriter, TextMode};

/// The classes of values a redaction replaces (recorded in the manifest).
pub const CLASSES: &[&str] = &[
    "ipv4",
    "ipv6",
    "mac",
    "names",
    "uids",
    "dns-names",
    "kube-proxy-hashes",
    "secrets",
];

/// Options of one redaction.
#[derive(Debug, Clone)]
pub struct RedactOptions {
    /// The key.
    pub key: Key,
    /// The redacting program (recorded in the manifest).
    pub tool: ToolInfo,
    /// Keep artifacts that cannot be redacted (not UTF-8, malformed JSON) as
    /// they are instead of withholding them. Off by default: they may leak.
    pub keep_unredactable: bool,
}

/// What a redaction did.
#[derive(Debug, Clone)]
pub struct RedactOutcome {
    /// The redacted bundle's path.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The owner's map.
    pub map: Map,
    /// True when the input was already redacted with this key (the output is
    /// then the same bundle, artifact for artifact).
    pub already_redacted: bool,
}

/// Largest configuration file read whole for the secret filter.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

fn is_config(record: &ArtifactRecord) -> bool {
    record.path.starts_with("cni/")
        || record.path.starts_with("kubelet/")
        || record.content == layout::content::FILE && !record.path.starts_with("node/")
}

fn is_json(record: &ArtifactRecord) -> bool {
    record.kind == ArtifactKind::Native
        || record.path.ends_with(".json")
        || record.path.ends_with(".jsonl")
}

fn mode_of(record: &ArtifactRecord) -> TextMode {
    TextMode {
        json: is_json(record),
        hex_addrs: matches!(record.content.as_str(), "proc-ip_vs" | "proc-ip_vs_conn"),
    }
}

/// Collects the names of a bundle (see [`crate::names`]).
pub fn collect_names(bundle: &Bundle) -> NameSet {
    let mut set = NameSet::default();
    let m = bundle.manifest();
    if let Some(n) = &m.node.name {
        set.add(n);
    }
    set.add(&m.node.hostname);
    set.add_paths_in(&m.collection.options.to_string());
    if let Some(r) = &m.redaction {
        // Not a name source: a redacted bundle's names are already replaced.
        let _ = r;
    }
    for record in &m.artifacts {
        if !record.status.has_content() {
            continue;
        }
        let p = record.path.as_str();
        let structured = p.starts_with("k8s/")
            || p == layout::NETNS_INDEX
            || p.starts_with("correlation/")
            || p.starts_with("dns/");
        let resolv = record.content == "resolv-conf" || p.ends_with("/resolv.conf");
        if !structured && !resolv {
            continue;
        }
        let Some(Ok(file)) = bundle.open_artifact(p) else {
            continue;
        };
        let reader = BufReader::new(file);
        if resolv {
            let mut text = String::new();
            if reader
                .take(MAX_CONFIG_BYTES)
                .read_to_string(&mut text)
                .is_ok()
            {
                set.add_resolv_conf(&text);
            }
        } else if p.ends_with(".jsonl") {
            for line in reader.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    set.add_json(&v);
                }
            }
        } else if let Ok(v) = serde_json::from_reader::<_, Value>(reader) {
            set.add_json(&v);
        }
    }
    set
}

fn rewrite_value(r: &mut Rewriter, v: &mut Value) {
    match v {
        Value::String(s) => *s = r.rewrite(s, TextMode::default()),
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_value(r, i)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite_value(r, i)),
        _ => {}
    }
}

fn rewrite_opt(r: &mut Rewriter, s: &mut Option<String>) {
    if let Some(v) = s {
        *v = r.rewrite(v, TextMode::default());
    }
}

/// The record's strings (command, error, stderr, attributes, path) rewritten.
fn rewrite_record(r: &mut Rewriter, rec: &ArtifactRecord) -> ArtifactRecord {
    let mut out = rec.clone();
    out.path = r.rewrite(&rec.path, TextMode::default());
    if let Some(cmd) = &mut out.command {
        for a in cmd.iter_mut() {
            *a = r.rewrite(a, TextMode::default());
        }
    }
    rewrite_opt(r, &mut out.netns);
    rewrite_opt(r, &mut out.error);
    rewrite_opt(r, &mut out.stderr);
    for v in out.attributes.values_mut() {
        *v = r.rewrite(v, TextMode::default());
    }
    out
}

/// Why an artifact cannot be redacted, if it cannot.
fn check_redactable(path: &Path, record: &ArtifactRecord) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut n = 0u64;
    let jsonl = record.path.ends_with(".jsonl");
    let json_whole = is_json(record) && !jsonl;
    let mut whole = Vec::new();
    loop {
        line.clear();
        let k = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read: {e}"))?;
        if k == 0 {
            break;
        }
        n += 1;
        let text = std::str::from_utf8(&line).map_err(|_| format!("line {n} is not UTF-8 text"))?;
        if jsonl && !text.trim().is_empty() {
            serde_json::from_str::<Value>(text)
                .map_err(|e| format!("line {n} is not JSON: {e}"))?;
        }
        if json_whole {
            whole.extend_from_slice(&line);
        }
    }
    if json_whole && !whole.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<Value>(&whole).map_err(|e| format!("not JSON: {e}"))?;
    }
    Ok(())
}

/// Redacts `input` into `output`.
pub fn redact_bundle(
    input: &Path,
    output: &Path,
    options: &RedactOptions,
) -> Result<RedactOutcome, RedactError> {
    let bundle = Bundle::open(input, &ReaderOptions::default())?;
    redact_opened(&bundle, output, options)
}

/// Redacts an opened bundle into `output`.
pub fn redact_opened(
    bundle: &Bundle,
    output: &Path,
    options: &RedactOptions,
) -> Result<RedactOutcome, RedactError> {
    let key = &options.key;
    let m = bundle.manifest();
    let writer = BundleWriter::create(
        output,
        WriterOptions {
            max_artifact_bytes: None,
            max_total_bytes: None,
            ..WriterOptions::default()
        },
    )?;
    let already = m
        .redaction
        .as_ref()
        .is_some_and(|r| r.key_fingerprint == key.fingerprint());
    if already {
        // Same key: every value is already a replacement; a second pass would
        // re-anonymize the addresses. Copy the bundle as it is.
        for record in &m.artifacts {
            if let Some(file) = bundle.artifact_file(&record.path) {
                let spec = ArtifactSpec::new(
                    record.path.clone(),
                    record.kind,
                    &record.content,
                    record.source,
                );
                let mut sink = writer.artifact(spec)?;
                let mut f = File::open(&file).map_err(|e| RedactError::io(&file, e))?;
                std::io::copy(&mut f, &mut sink).map_err(|e| RedactError::io(&file, e))?;
                sink.finish(Completion::default())?;
            }
        }
        let original = m.clone();
        let (path, manifest) = writer.finish_with(|_| original)?;
        return Ok(RedactOutcome {
            path,
            manifest,
            map: Map::new(key),
            already_redacted: true,
        });
    }

    let names = collect_names(bundle);
    let mut rw = Rewriter::new(key, &names.dictionary(key));
    let mut withheld = Vec::new();
    let mut not_redacted = Vec::new();
    let mut secrets_removed = Vec::new();
    let mut records = Vec::new();
    for path in bundle.unknown_entries() {
        withheld.push(format!(
            "{}: an archive entry the manifest does not list",
            rw.rewrite(path, TextMode::default())
        ));
    }

    for (index, record) in m.artifacts.iter().enumerate() {
        let mut new = rewrite_record(&mut rw, record);
        // A replacement longer than the name can push a path past the tar
        // limit: keep a record under a neutral path, withhold the content
        // (never fail the whole bundle).
        if let Err(why) = layout::validate_path(&new.path).and_then(|()| fits_ustar(&new.path)) {
            new.path = format!("redacted/invalid-path-{index}");
            if record.status.has_content() {
                new.status = ArtifactStatus::Failed;
                new.size = 0;
                new.sha256 = None;
                new.truncated = None;
                new.error = Some(format!(
                    "withheld by redaction: redacted path invalid: {why}"
                ));
                withheld.push(new.path.clone());
            }
            records.push(new);
            continue;
        }
        let Some(file) = bundle.artifact_file(&record.path) else {
            records.push(new);
            continue;
        };
        let spec = ArtifactSpec::new(
            new.path.clone(),
            record.kind,
            &record.content,
            record.source,
        );
        // Configuration files: secret values out first, then the rewrite.
        let mut filtered: Option<Vec<u8>> = None;
        if is_config(record) {
            let meta = std::fs::metadata(&file).map_err(|e| RedactError::io(&file, e))?;
            if meta.len() <= MAX_CONFIG_BYTES {
                let bytes = std::fs::read(&file).map_err(|e| RedactError::io(&file, e))?;
                match secrets::filter_config(&bytes) {
                    Filtered::Verbatim => {}
                    Filtered::Redacted {
                        content,
                        withheld: w,
                        ..
                    } => {
                        for item in w {
                            secrets_removed
                                .push(format!("{}: {} ({})", new.path, item.location, item.what));
                        }
                        filtered = Some(content);
                    }
                    Filtered::WithheldWhole { reason, .. } => {
                        secrets_removed.push(format!("{}: whole file ({reason})", new.path));
                        new.status = ArtifactStatus::Failed;
                        new.size = 0;
                        new.sha256 = None;
                        new.truncated = None;
                        new.error = Some(format!("withheld by redaction: {reason}"));
                        records.push(new);
                        continue;
                    }
                }
            }
        }
        let spooled = filtered.as_deref().map(spool_copy).transpose()?;
        let read_from: &Path = spooled.as_ref().map_or(file.as_path(), |t| t.path());
        if let Err(why) = check_redactable(read_from, record) {
            if options.keep_unredactable {
                let mut sink = writer.artifact(spec)?;
                let mut f = File::open(read_from).map_err(|e| RedactError::io(read_from, e))?;
                std::io::copy(&mut f, &mut sink).map_err(|e| RedactError::io(read_from, e))?;
                let written = sink.finish(Completion::default())?;
                new.size = written.size;
                new.sha256 = written.sha256;
                new.attributes
                    .insert("redaction".into(), format!("could not be redacted: {why}"));
                not_redacted.push(new.path.clone());
            } else {
                new.status = ArtifactStatus::Failed;
                new.size = 0;
                new.sha256 = None;
                new.truncated = None;
                new.error = Some(format!(
                    "withheld by redaction: could not be redacted: {why}"
                ));
                withheld.push(new.path.clone());
            }
            records.push(new);
            continue;
        }
        let mode = mode_of(record);
        let mut sink = writer.artifact(spec)?;
        {
            let f = File::open(read_from).map_err(|e| RedactError::io(read_from, e))?;
            let mut reader = BufReader::with_capacity(256 * 1024, f);
            let mut line = Vec::new();
            let mut out = String::new();
            loop {
                line.clear();
                let k = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| RedactError::io(read_from, e))?;
                if k == 0 {
                    break;
                }
                let text = std::str::from_utf8(&line).map_err(|_| {
                    RedactError::Invariant(format!("{} changed while redacting", record.path))
                })?;
                let (body, nl) = match text.strip_suffix('\n') {
                    Some(b) => (b, "\n"),
                    None => (text, ""),
                };
                out.clear();
                rw.rewrite_into(body, mode, &mut out);
                out.push_str(nl);
                sink.write_all(out.as_bytes())
                    .map_err(|e| RedactError::io(output, e))?;
            }
        }
        let written = sink.finish(Completion::default())?;
        new.size = written.size;
        new.sha256 = written.sha256;
        // `truncated.kept_bytes` stays the collector's figure: it says where the
        // original was cut, which the redacted content still reflects.
        records.push(new);
    }

    let mut node = m.node.clone();
    rewrite_opt(&mut rw, &mut node.name);
    node.hostname = rw.rewrite(&node.hostname, TextMode::default());
    let mut collection = m.collection.clone();
    rewrite_value(&mut rw, &mut collection.options);
    for n in collection.notes.iter_mut() {
        *n = rw.rewrite(n, TextMode::default());
    }
    let mut earlier = Vec::new();
    if let Some(prev) = &m.redaction {
        earlier.extend(prev.earlier.iter().cloned());
        let mut p = prev.clone();
        p.earlier.clear();
        earlier.push(p);
    }
    let redaction = Redaction {
        tool: options.tool.clone(),
        key_fingerprint: key.fingerprint(),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        withheld,
        not_redacted,
        secrets_removed,
        earlier,
    };
    let tool = m.tool.clone();
    let (path, manifest) = writer.finish_with(|_written| Manifest {
        format_version: REDACTED_FORMAT_VERSION.to_string(),
        tool,
        node,
        collection,
        artifacts: records,
        redaction: Some(redaction),
    })?;
    Ok(RedactOutcome {
        path,
        manifest,
        map: rw.map,
        already_redacted: false,
    })
}

/// The ustar header holds a path as a name of at most 100 bytes plus a prefix
/// of at most 155 bytes split at a `/`.
fn fits_ustar(path: &str) -> Result<(), &'static str> {
    if path.len() <= 100 {
        return Ok(());
    }
    let fits = path
        .match_indices('/')
        .any(|(i, _)| i <= 155 && path.len() - i - 1 <= 100);
    if fits {
        Ok(())
    } else {
        Err("path does not fit a ustar header")
    }
}

fn spool_copy(content: &[u8]) -> Result<tempfile::NamedTempFile, RedactError> {
    let mut tmp =
        tempfile::NamedTempFile::new().map_err(|e| RedactError::io(Path::new("<temp>"), e))?;
    tmp.write_all(content)
        .map_err(|e| RedactError::io(tmp.path(), e))?;
    Ok(tmp)
}
