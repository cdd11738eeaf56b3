//! Which names a bundle carries, and what each becomes.
//!
//! Names are collected from the structured artifacts (API objects, the netns
//! index, the pod correlation, DNS probes, resolv.conf search lists, the
//! manifest's node identity); the text of *every* artifact is then rewritten
//! with the same dictionary, so a name is replaced in kube-proxy comments,
//! events and kernel log lines alike. DNS names are replaced label by label, so
//! `web.shop.svc.cluster.local` keeps its `svc.cluster.local` structure.
//!
//! A replacement depends only on the key and the name (never on where it was
//! seen), so bundles redacted with the same key agree.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::key::Key;

/// Names kept as they are: Kubernetes' own namespaces and system objects, the
/// cluster-domain labels and CNI names that rules and readers depend on. They
/// identify no organisation.
pub const WELL_KNOWN: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "kubernetes",
    "kube-dns",
    "coredns",
    "kube-proxy",
    "kube-flannel",
    "kube-flannel-ds",
    "kube-flannel-cfg",
    "flannel",
    "calico-system",
    "calico-node",
    "calico-kube-controllers",
    "tigera-operator",
    "cilium",
    "cilium-operator",
    "metrics-server",
    "node-local-dns",
    "nodelocaldns",
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "etcd",
    "cluster",
    "local",
    "svc",
    "pod",
    "in-addr",
    "arpa",
    "ip6",
    "localhost",
    "localdomain",
    "com",
    "net",
    "org",
    "io",
    "internal",
    "lan",
];

/// Words never treated as names even when an object uses them (a label value
/// `true`, a pod called `nat`): replacing them would corrupt the syntax of
/// JSON, iptables and nft text.
const NEVER_NAMES: &[&str] = &[
    "true",
    "false",
    "null",
    "none",
    "yes",
    "no",
    "on",
    "off",
    "enabled",
    "disabled",
    "tcp",
    "udp",
    "sctp",
    "icmp",
    "http",
    "https",
    "dns",
    "ip",
    "inet",
    "inet6",
    "bridge",
    "filter",
    "nat",
    "raw",
    "mangle",
    "security",
    "input",
    "output",
    "forward",
    "prerouting",
    "postrouting",
    "accept",
    "drop",
    "reject",
    "return",
    "counter",
    "table",
    "chain",
    "dev",
    "via",
    "src",
    "dst",
    "proto",
    "scope",
    "link",
    "host",
    "global",
    "kernel",
    "static",
    "main",
    "lo",
    "eth0",
    "up",
    "down",
    "cni0",
    "cbr0",
    "ready",
    "running",
    "pending",
    "api",
    "node",
    "service",
    "app",
];

/// Kinds that prefix object references (`Pod ns/name`): not names.
const KINDS: &[&str] = &[
    "Pod",
    "Service",
    "Node",
    "ReplicaSet",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
    "EndpointSlice",
    "Endpoints",
    "ConfigMap",
    "Namespace",
    "Event",
];

/// The shape of a name, which its replacement keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A UUID (`8-4-4-4-12` hex), as Kubernetes UIDs: replaced by a UUID.
    Uuid,
    /// A UUID with `_` for `-` (systemd cgroup paths): replaced likewise.
    UuidUnderscore,
    /// 64 hex digits (container and sandbox ids): replaced by 64 hex digits.
    Hex64,
    /// Any other name or DNS label: replaced by `n-` and 10 base32 characters.
    Label,
}

impl Shape {
    /// The shape of `s`.
    pub fn of(s: &str) -> Shape {
        let b = s.as_bytes();
        let hex = |c: &u8| c.is_ascii_hexdigit();
        if b.len() == 64 && b.iter().all(hex) {
            return Shape::Hex64;
        }
        if b.len() == 36 {
            for sep in [b'-', b'_'] {
                let ok = b.iter().enumerate().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        *c == sep
                    } else {
                        hex(c)
                    }
                });
                if ok {
                    return if sep == b'-' {
                        Shape::Uuid
                    } else {
                        Shape::UuidUnderscore
                    };
                }
            }
        }
        Shape::Label
    }

    /// True when matches need no token boundary (ids embedded in cgroup paths
    /// such as `kubepods-pod<uid>.slice` are long and random enough).
    pub fn unbounded(self) -> bool {
        !matches!(self, Shape::Label)
    }
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The replacement of one name under `key`.
pub fn replacement(key: &Key, name: &str) -> String {
    match Shape::of(name) {
        Shape::Uuid | Shape::UuidUnderscore => {
            let canonical = name.replace('_', "-").to_ascii_lowercase();
            let h = hex::encode(&key.derive("uid", canonical.as_bytes())[..16]);
            let sep = if Shape::of(name) == Shape::Uuid {
                '-'
            } else {
                '_'
            };
            // Version 4 / variant 1 so the result still reads as a UUID.
            format!(
                "{}{sep}{}{sep}4{}{sep}8{}{sep}{}",
                &h[0..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..32]
            )
        }
        Shape::Hex64 => hex::encode(key.derive("id", name.to_ascii_lowercase().as_bytes())),
        Shape::Label => {
            let d = key.derive("name", name.as_bytes());
            let mut bits: u64 = 0;
            for b in &d[..8] {
                bits = (bits << 8) | u64::from(*b);
            }
            let mut out = String::from("n-");
            for i in 0..10 {
                out.push(char::from(BASE32[((bits >> (59 - 5 * i)) & 31) as usize]));
            }
            out
        }
    }
}

/// True for a string that is already a replacement (so a second pass with
/// another key still sees a name, and the leak scan can skip them).
pub fn looks_replaced(s: &str) -> bool {
    s.len() == 12 && s.starts_with("n-") && s[2..].bytes().all(|c| BASE32.contains(&c))
}

/// The set of names found in a bundle.
#[derive(Debug, Default, Clone)]
pub struct NameSet {
    names: BTreeSet<String>,
}

impl NameSet {
    /// The names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.names.iter()
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name was found.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds one name (an object name, a label): the well-known and the
    /// syntax words are left out.
    pub fn add(&mut self, name: &str) {
        let name = name.trim().trim_end_matches('.');
        if name.is_empty() || name.len() > 253 {
            return;
        }
        if WELL_KNOWN.contains(&name)
            || NEVER_NAMES.contains(&name.to_ascii_lowercase().as_str())
            || looks_replaced(name)
            || name.parse::<std::net::IpAddr>().is_ok()
        {
            return;
        }
        // Numbers (ports, ids) are not names.
        if name.bytes().all(|c| c.is_ascii_digit()) {
            return;
        }
        match Shape::of(name) {
            Shape::Uuid | Shape::UuidUnderscore => {
                let lower = name.to_ascii_lowercase();
                self.names.insert(lower.replace('_', "-"));
                self.names.insert(lower.replace('-', "_"));
            }
            Shape::Hex64 => {
                self.names.insert(name.to_ascii_lowercase());
            }
            Shape::Label => {
                // A dotted name is a DNS name: each label on its own, except
                // the short and version-like parts of dotted values (`v1` of
                // `v1.2.3`), which are vocabulary everywhere else.
                if name.contains('.') {
                    for label in name.split('.') {
                        let versionish = label
                            .strip_prefix('v')
                            .unwrap_or(label)
                            .bytes()
                            .all(|c| c.is_ascii_digit());
                        if label.len() >= 3 && !versionish {
                            self.add(label);
                        }
                    }
                } else if name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                {
                    self.names.insert(name.to_string());
                }
            }
        }
    }

    /// Adds an object reference: `ns/name`, `Pod ns/name`.
    pub fn add_reference(&mut self, s: &str) {
        for word in s.split(|c: char| c.is_whitespace() || c == '/') {
            if !KINDS.contains(&word) {
                self.add(word);
            }
        }
    }

    /// Walks a JSON document from a structured artifact and adds the values of
    /// the fields that hold names (`namespace`, `name`, `uid`, `node_name`,
    /// `pod`, `qname`, label values, …). Port and condition lists are skipped:
    /// port names (`http`, `dns`) and condition types are vocabulary, not names.
    pub fn add_json(&mut self, v: &Value) {
        self.walk(v, "");
    }

    fn walk(&mut self, v: &Value, key: &str) {
        match v {
            Value::Object(map) => {
                if matches!(
                    key,
                    "ports" | "container_ports" | "conditions" | "flags" | "stats"
                ) {
                    return;
                }
                // Node addresses: hostnames are names, the rest are addresses.
                if let (Some(Value::String(t)), Some(Value::String(a))) =
                    (map.get("type"), map.get("address"))
                    && matches!(t.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS")
                {
                    self.add(a);
                }
                let is_map_of_values = matches!(key, "labels" | "selector");
                for (k, child) in map {
                    if is_map_of_values {
                        if let Value::String(s) = child {
                            self.add(s);
                        }
                        continue;
                    }
                    self.walk(child, k);
                }
            }
            Value::Array(items) => {
                if matches!(key, "ports" | "container_ports" | "conditions" | "flags") {
                    return;
                }
                for item in items {
                    self.walk(item, key);
                }
            }
            Value::String(s) => match key {
                "namespace" | "name" | "uid" | "node_name" | "nodeName" | "hostname"
                | "service_name" | "names" | "pod_uid" | "container_id" | "sandbox_id"
                | "qname" | "cluster_domain" | "answers" => self.add(s),
                "pod" | "from_pod" | "target_ref" | "involved_object" => self.add_reference(s),
                _ => {}
            },
            _ => {}
        }
    }

    /// Adds the domains of a resolv.conf (`search` and `domain` lines).
    pub fn add_resolv_conf(&mut self, text: &str) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let Some("search" | "domain") = words.next() {
                for w in words {
                    self.add(w);
                }
            }
        }
    }

    /// Adds user names from home-directory paths (`/home/alice/.kube/config`).
    pub fn add_paths_in(&mut self, text: &str) {
        for part in text.split("/home/").skip(1) {
            let user: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
                .collect();
            self.add(&user);
        }
    }

    /// The name → replacement dictionary under `key`.
    pub fn dictionary(&self, key: &Key) -> BTreeMap<String, String> {
        self.names
            .iter()
            .map(|n| (n.clone(), replacement(key, n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_kept() {
        let key = Key::from_bytes([3; 32]);
        let uid = "06c23234-f1a6-4d05-a1eb-e87e95f84861";
        let r = replacement(&key, uid);
        assert_eq!(Shape::of(&r), Shape::Uuid, "{r}");
        assert_ne!(r, uid);
        let under = replacement(&key, &uid.replace('-', "_"));
        assert_eq!(under, r.replace('-', "_"), "both spellings agree");
        let id = "a".repeat(64);
        assert_eq!(Shape::of(&replacement(&key, &id)), Shape::Hex64);
        let n = replacement(&key, "web-84hbn7drmp-44bct");
        assert!(looks_replaced(&n), "{n}");
        assert_eq!(
            n,
            replacement(&key, "web-84hbn7drmp-44bct"),
            "deterministic"
        );
        assert_ne!(
            n,
            replacement(&Key::from_bytes([4; 32]), "web-84hbn7drmp-44bct")
        );
    }

    #[test]
    fn collects_names_but_not_vocabulary() {
        let mut set = NameSet::default();
        let v: Value = serde_json::from_str(
            r#"{"namespace":"shop","name":"web-1","uid":"06c23234-f1a6-4d05-a1eb-e87e95f84861",
            "labels":{"app":"web","enabled":"true"},"node_name":"node-a.corp.example",
            "ports":[{"name":"http-alt","port":80}],"pod":"Pod shop/web-1"}"#,
        )
        .expect("json");
        set.add_json(&v);
        set.add("v1.34.1");
        set.add("db.corp.example");
        let names: Vec<&str> = set.iter().map(String::as_str).collect();
        for want in ["shop", "web-1", "web", "node-a", "corp", "example"] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        for not in ["true", "http-alt", "Pod", "default", "v1", "db"] {
            assert!(!names.contains(&not), "{not} in {names:?}");
        }
        assert!(names.contains(&"06c23234_f1a6_4d05_a1eb_e87e95f84861"));
    }
}
