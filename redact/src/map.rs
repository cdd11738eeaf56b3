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
