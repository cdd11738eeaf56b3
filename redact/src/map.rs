//! The owner's map: every original value and what it became. It is written
//! beside the redacted bundle, never inside it, and lets
//! `netsnap-analyze unredact` translate a report back.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};

use crate::RedactError;
use crate::key::Key;

/// Version of the map's JSON layout.
pub const MAP_SCHEMA: &str = "netsnap.redaction-map/v1";

/// original → replacement, per class.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Map {
    /// [`MAP_SCHEMA`].
    pub schema: String,
    /// The key, hex: whoever holds the map can redact more bundles consistently
    /// (`--key` accepts a map file) and must keep it as secret as the data.
    pub key: String,
    /// The key's public fingerprint (as in the manifest).
    pub key_fingerprint: String,
    /// Names and DNS labels.
    pub names: BTreeMap<String, String>,
    /// Addresses and canonical networks (`10.244.0.0/16`).
    pub addrs: BTreeMap<String, String>,
    /// MAC addresses.
    pub macs: BTreeMap<String, String>,
    /// kube-proxy chain names derived from Service/endpoint names.
    pub hashes: BTreeMap<String, String>,
}

impl Map {
    /// An empty map for `key`.
    pub fn new(key: &Key) -> Self {
        Map {
            schema: MAP_SCHEMA.to_string(),
            key: key.to_hex(),
            key_fingerprint: key.fingerprint(),
            ..Map::default()
        }
    }

    /// Reads a map file.
    pub fn parse(bytes: &[u8]) -> Result<Self, RedactError> {
        let map: Map = serde_json::from_slice(bytes)
            .map_err(|e| RedactError::Map(format!("not a redaction map: {e}")))?;
        if map.schema != MAP_SCHEMA {
            return Err(RedactError::Map(format!(
                "unsupported map schema {:?} (this version reads {MAP_SCHEMA})",
                map.schema
            )));
        }
        Ok(map)
    }

    /// The key the map was made with.
    pub fn key(&self) -> Result<Key, RedactError> {
        Key::parse(self.key.as_bytes())
    }

    /// Adds the entries of another map (several bundles, one key).
    pub fn merge(&mut self, other: &Map) {
        self.names.extend(other.names.clone());
        self.addrs.extend(other.addrs.clone());
        self.macs.extend(other.macs.clone());
        self.hashes.extend(other.hashes.clone());
    }

    /// Translates redacted text back: every replacement found as a whole token
    /// becomes its original. Used on reports (text, JSON, Markdown).
    pub fn unredact(&self, text: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for m in [&self.names, &self.addrs, &self.macs, &self.hashes] {
            for (orig, new) in m {
                pairs.push((new.as_str(), orig.as_str()));
            }
        }
        if pairs.is_empty() {
            return text.to_string();
        }
        let Ok(ac) = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(pairs.iter().map(|(n, _)| *n))
        else {
            return text.to_string();
        };
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for hit in ac.find_iter(text) {
            let before = hit.start().checked_sub(1).map(|i| b[i]);
            let after = b.get(hit.end()).copied();
            // Whole tokens only: `10.1.2.3` must not match inside `10.1.2.34`.
            let joins = |c: u8| c.is_ascii_alphanumeric();
            if before.is_some_and(joins) || after.is_some_and(joins) {
                continue;
            }
            // A dot followed by a digit continues an address.
            if after == Some(b'.') && b.get(hit.end() + 1).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            out.push_str(&text[last..hit.start()]);
            out.push_str(pairs[hit.pattern().as_usize()].1);
            last = hit.end();
        }
        out.push_str(&text[last..]);
        out
    }
}

/// The key of a redaction: `--key FILE` (a key file or a map), else the key of
/// the map already at `map_path` (so redacting several bundles into one map is
/// consistent), else a fresh random key. Returns the key and the existing map.
pub fn resolve_key(
    key_file: Option<&std::path::Path>,
    map_path: Option<&std::path::Path>,
) -> Result<(Key, Option<Map>), RedactError> {
    let map_path = map_path.unwrap_or(std::path::Path::new(""));
    let existing = match std::fs::read(map_path) {
        _ if map_path.as_os_str().is_empty() => None,
        Ok(bytes) => Some(
            Map::parse(&bytes)
                .map_err(|e| RedactError::Map(format!("{}: {e}", map_path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(RedactError::io(map_path, e)),
    };
    let key = match key_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| RedactError::io(path, e))?;
            match Map::parse(&bytes) {
                Ok(map) => map.key()?,
                Err(_) => Key::parse(&bytes)
                    .map_err(|e| RedactError::Key(format!("{}: {e}", path.display())))?,
            }
        }
        None => match &existing {
            Some(map) => map.key()?,
            None => Key::random()?,
        },
    };
    if let Some(map) = &existing
        && map.key_fingerprint != key.fingerprint()
    {
        return Err(RedactError::Map(format!(
            "{} was made with another key (fingerprint {}, this key is {}); use another --map",
            map_path.display(),
            map.key_fingerprint,
            key.fingerprint()
        )));
    }
    Ok((key, existing))
}

/// Writes `map` (merged into `existing`) to `path`, mode 0600, atomically.
pub fn write_map(
    path: &std::path::Path,
    map: &Map,
    existing: Option<Map>,
) -> Result<(), RedactError> {
    let mut merged = existing.unwrap_or_else(|| map.clone());
    merged.merge(map);
    let json = serde_json::to_vec_pretty(&merged)
        .map_err(|e| RedactError::Map(format!("serializing the map: {e}")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // NamedTempFile is created 0600: the map is as secret as the original data.
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| RedactError::io(&dir, e))?;
    std::io::Write::write_all(&mut tmp, &json).map_err(|e| RedactError::io(path, e))?;
    std::io::Write::write_all(&mut tmp, b"\n").map_err(|e| RedactError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| RedactError::io(path, e.error))?;
    Ok(())
}

/// The default map path for a redacted bundle: beside it, `<bundle>.map.json`.
pub fn default_map_path(output: &std::path::Path) -> std::path::PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".map.json");
    std::path::PathBuf::from(s)
}
