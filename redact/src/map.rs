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
        let text = self.unredact_derived_networks(text);
        self.unredact_tokens(&text)
    }

    /// Networks the analysis *derived* from redacted addresses (a Service range
    /// covering the cluster IPs) appear in no bundle, so not in the map either;
    /// prefix preservation still answers them: the original network is any
    /// original address whose replacement lies inside, masked to the length.
    fn unredact_derived_networks(&self, text: &str) -> String {
        use std::net::IpAddr;
        let Ok(re) = regex::Regex::new(r"\b(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,2})\b") else {
            return text.to_string();
        };
        let known: std::collections::HashSet<&str> =
            self.addrs.values().map(String::as_str).collect();
        let pairs: Vec<(u32, u32)> = self
            .addrs
            .iter()
            .filter_map(|(o, n)| match (o.parse::<IpAddr>(), n.parse::<IpAddr>()) {
                (Ok(IpAddr::V4(o)), Ok(IpAddr::V4(n))) => Some((u32::from(n), u32::from(o))),
                _ => None,
            })
            .collect();
        re.replace_all(text, |c: &regex::Captures| {
            let whole = &c[0];
            let (Ok(net), Ok(len)) = (c[1].parse::<std::net::Ipv4Addr>(), c[2].parse::<u32>())
            else {
                return whole.to_string();
            };
            // A network the bundle held is in the map as a whole (`Rewriter::net`).
            if known.contains(whole) || len > 32 || len == 0 {
                return whole.to_string();
            }
            let mask = u32::MAX << (32 - len);
            let net = u32::from(net);
            // Host bits set: an address with its prefix length, not a network.
            // (A canonical one may also be a redacted address: the network the analysis
            // derived happened to start at it; masking answers both.)
            if net & !mask != 0 {
                return whole.to_string();
            }
            match pairs.iter().find(|(anon, _)| anon & mask == net & mask) {
                Some((_, orig)) => format!("{}/{len}", std::net::Ipv4Addr::from(orig & mask)),
                None => whole.to_string(),
            }
        })
        .into_owned()
    }

    fn unredact_tokens(&self, text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::AddrAnonymizer;

    #[test]
    fn derived_networks_map_back_by_prefix() {
        let key = Key::from_bytes([8; 32]);
        let mut a = AddrAnonymizer::new(&key.cryptopan_key());
        let mut map = Map::new(&key);
        let orig: IpAddrV4 = "10.96.0.10".parse().expect("literal");
        let anon = a.ip(orig.into());
        map.addrs.insert(orig.to_string(), anon.to_string());
        let std::net::IpAddr::V4(anon4) = anon else {
            panic!()
        };
        let derived = std::net::Ipv4Addr::from(u32::from(anon4) & (u32::MAX << 4));
        let text = format!("service-range {derived}/28 holds {anon}");
        assert_eq!(
            map.unredact(&text),
            "service-range 10.96.0.0/28 holds 10.96.0.10"
        );
        // A network no mapped address falls in stays as it is.
        assert_eq!(map.unredact("192.168.7.0/24"), "192.168.7.0/24");
    }

    /// The derived network may start at a redacted address itself (its host bits happened
    /// to be zero): still the original network, not that address with a prefix length.
    #[test]
    fn a_derived_network_starting_at_a_redacted_address_is_still_a_network() {
        let key = Key::from_bytes([8; 32]);
        let mut a = AddrAnonymizer::new(&key.cryptopan_key());
        // Find an address whose replacement has its last 4 bits zero.
        let (orig, anon4) = (1u32..)
            .map(|i| IpAddrV4::from(u32::from(IpAddrV4::new(10, 96, 0, 0)) + i))
            .find_map(|o| match a.ip(o.into()) {
                std::net::IpAddr::V4(n) if u32::from(n) & 0xf == 0 => Some((o, n)),
                _ => None,
            })
            .expect("one in 16 addresses");
        let mut map = Map::new(&key);
        map.addrs.insert(orig.to_string(), anon4.to_string());
        let want = IpAddrV4::from(u32::from(orig) & (u32::MAX << 4));
        assert_eq!(map.unredact(&format!("{anon4}/28")), format!("{want}/28"));
        // The address alone is the address.
        assert_eq!(map.unredact(&anon4.to_string()), orig.to_string());
        // An address with host bits set and its prefix length is that address.
        let host = IpAddrV4::from(u32::from(anon4) | 1);
        assert_eq!(map.unredact(&format!("{host}/28")), format!("{host}/28"));
    }

    type IpAddrV4 = std::net::Ipv4Addr;
}
