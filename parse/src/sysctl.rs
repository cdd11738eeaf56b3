//! sysctl dump parser: `sysctl -a` / `sysctl net.ipv4` (`key = value`), and the `/proc/sys`
//! path forms (`/proc/sys/net/ipv4/ip_forward = 1`, or `grep -r . /proc/sys/...` output
//! `/proc/sys/net/ipv4/ip_forward:1`).
//!
//! Keys are normalised to sysctl's dotted form; a dot inside a path component (a VLAN
//! interface such as `eth0.100`) becomes `/`, as sysctl itself prints it. Values are kept
//! verbatim, tabs included (`ip_local_port_range = 32768\t60999`); [`SysctlDump::fields`]
//! splits them. Error lines (`sysctl: permission denied on key ...`, `sysctl: reading key
//! ...`, `sysctl: cannot stat ...`, `grep: ...`) are kept as [`Unparsed`] with their line.
//!
//! Guarantees: no input panics; every non-blank line is a value or an [`Unparsed`] record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Unparsed;

/// One sysctl value with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SysctlEntry {
    /// 1-based line number.
    pub line: usize,
    /// The value, verbatim (may contain tabs; may be empty).
    pub value: String,
}

/// A parsed dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SysctlDump {
    /// Values by dotted key (`net.ipv4.ip_forward`); a repeated key keeps its last value.
    pub values: BTreeMap<String, SysctlEntry>,
    /// Lines not understood, including sysctl's own error lines for unreadable keys.
    pub unparsed: Vec<Unparsed>,
}

impl SysctlDump {
    /// The raw value of a dotted key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|e| e.value.as_str())
    }

    /// The value as an integer, when it is a single integer.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.trim().parse().ok()
    }

    /// Plain `key -> value` map, the shape of the bundle's native sysctl artifacts.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }

    /// The value split on whitespace (`32768\t60999` → `["32768", "60999"]`).
    pub fn fields(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key).map(|v| v.split_ascii_whitespace().collect())
    }
}

/// Converts `/proc/sys/net/ipv4/conf/eth0.100/rp_filter` to `net.ipv4.conf.eth0/100.rp_filter`.
pub fn proc_path_to_key(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/proc/sys/")?;
    if rest.is_empty() {
        return None;
    }
    let parts: Vec<String> = rest
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('.', "/"))
        .collect();
    Some(parts.join("."))
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && !k.contains(char::is_whitespace)
        && k.contains('.')
        && !k.starts_with('.')
        && !k.ends_with('.')
}

/// Parses a sysctl dump in any of the supported forms.
pub fn parse_sysctl(text: &str) -> SysctlDump {
    let mut out = SysctlDump::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok((key, value)) => {
                out.values.insert(
                    key,
                    SysctlEntry {
                        line: line_no,
                        value: value.to_string(),
                    },
                );
            }
            Err(reason) => out.unparsed.push(Unparsed::new(line_no, line, reason)),
        }
    }
    out
}

fn parse_line(line: &str) -> Result<(String, &str), &'static str> {
    if line.starts_with("sysctl: ") || line.starts_with("grep: ") {
        return Err("error reported by the tool (unreadable or missing key)");
    }
    let (key_part, value) = if let Some((k, v)) = line.split_once(" = ") {
        (k, v)
    } else if let Some(k) = line.strip_suffix(" =") {
        (k, "")
    } else if line.starts_with("/proc/sys/") {
        line.split_once(':').ok_or("/proc/sys path without value")?
    } else {
        return Err("expected `key = value` or `/proc/sys/path:value`");
    };
    let key_part = key_part.trim();
    let key = if key_part.starts_with('/') {
        proc_path_to_key(key_part).ok_or("path is not under /proc/sys")?
    } else {
        key_part.to_string()
    };
    if !valid_key(&key) {
        return Err("not a sysctl key");
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_to_key_keeps_vlan_dots() {
        assert_eq!(
            proc_path_to_key("/proc/sys/net/ipv4/conf/eth0.100/rp_filter").as_deref(),
            Some("net.ipv4.conf.eth0/100.rp_filter")
        );
        assert_eq!(proc_path_to_key("/etc/x"), None);
    }
}
