//! `netsnap-analyze import SRC -o BUNDLE`: turns outputs collected without netsnap into
//! a bundle that `inspect` and `analyze` read like a collected one.
//!
//! SRC is (a) an extracted sosreport directory or its tarball (`.tar.xz`, `.tar.gz`,
//! `.tar.zst`, `.tar`; xz and gzip are decompressed by the system's `xz`/`gzip`), or
//! (b) a directory of hand-collected outputs named after the commands that made them
//! (see [`HAND_COLLECTED`] and docs/import.md). Every artifact the analysis knows is
//! recorded in the manifest: imported with the command that made it, or `skipped`
//! with the reason ("not in the sosreport"), so rules needing it are *not evaluated*
//! instead of running on nothing. Tar members are read into memory only when their
//! path is one the import maps (each capped at [`MAX_FILE_BYTES`]); nothing is
//! extracted to disk, so a hostile archive cannot write anywhere.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netsnap_bundle::{
    ArtifactSource, ArtifactSpec, ArtifactStatus, BundleWriter, CollectionInfo, CollectionOutcome,
    Completion, NodeInfo, ToolInfo, WriterOptions, layout, layout::content,
};

use crate::parse;

/// Largest single file read from the source.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Errors of the import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The source cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The source holds nothing the import knows.
    #[error(
        "{0} holds no sosreport (no sos_commands/) and no file named after a known command (see docs/import.md)"
    )]
    NothingKnown(String),
    /// Writing the bundle failed.
    #[error(transparent)]
    Write(#[from] netsnap_bundle::WriteError),
}

/// What kind of source was imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A sosreport (directory or tarball).
    Sosreport,
    /// A directory of hand-collected command outputs.
    HandCollected,
}

/// What the import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportSummary {
    /// Source kind.
    pub kind: SourceKind,
    /// Bundle written.
    pub bundle: PathBuf,
    /// Bundle paths imported, with the source file each came from.
    pub imported: Vec<(String, String)>,
    /// Bundle paths the source lacked.
    pub missing: Vec<String>,
}

/// One artifact the import can fill: where it goes, how it is named in a sosreport,
/// and the command names a hand-collected file may carry.
struct Target {
    path: &'static str,
    content: &'static str,
    argv: &'static [&'static str],
    /// Candidate files inside a sosreport, first found wins; several `+`-joined
    /// entries are concatenated (IPv4 and IPv6 routes).
    sos: &'static [&'static str],
}

/// The artifacts an import fills, in manifest order.
const TARGETS: &[Target] = &[
    Target {
        path: layout::iptables::SAVE,
        content: content::IPTABLES_SAVE,
        argv: &["iptables-save"],
        sos: &[
            "sos_commands/firewall_tables/iptables-save",
            "sos_commands/networking/iptables-save",
        ],
    },
    Target {
        path: layout::iptables::SAVE6,
        content: content::IPTABLES_SAVE,
        argv: &["ip6tables-save"],
        sos: &[
            "sos_commands/firewall_tables/ip6tables-save",
            "sos_commands/networking/ip6tables-save",
        ],
    },
    Target {
        path: layout::iptables::LEGACY_SAVE,
        content: content::IPTABLES_SAVE,
        argv: &["iptables-legacy-save"],
        sos: &["sos_commands/firewall_tables/iptables-legacy-save"],
    },
    Target {
        path: layout::iptables::NFT_SAVE,
        content: content::IPTABLES_SAVE,
        argv: &["iptables-nft-save"],
        sos: &["sos_commands/firewall_tables/iptables-nft-save"],
    },
    Target {
        path: layout::nft::RULESET,
        content: content::NFT_RULESET,
        argv: &["nft", "list", "ruleset"],
        sos: &[
            "sos_commands/firewall_tables/nft_list_ruleset",
            "sos_commands/networking/nft_list_ruleset",
        ],
    },
    Target {
        path: layout::conntrack::TABLE,
        content: content::CONNTRACK_LIST,
        argv: &["conntrack", "-L"],
        sos: &[
            "sos_commands/conntrack/conntrack_-L_-o_extended",
            "sos_commands/conntrack/conntrack_-L",
            "sos_commands/networking/conntrack_-L",
        ],
    },
    Target {
        path: layout::conntrack::PROC_TABLE,
        content: content::PROC_NF_CONNTRACK,
        argv: &["cat", "/proc/net/nf_conntrack"],
        sos: &["proc/net/nf_conntrack", "proc/*/net/nf_conntrack"],
    },
    Target {
        path: layout::conntrack::STATS,
        content: content::CONNTRACK_STATS,
        argv: &["conntrack", "-S"],
        sos: &["sos_commands/conntrack/conntrack_-S"],
    },
    Target {
        path: layout::conntrack::PROC_STAT,
        content: content::PROC_STAT_NF_CONNTRACK,
        argv: &["cat", "/proc/net/stat/nf_conntrack"],
        sos: &["proc/net/stat/nf_conntrack", "proc/*/net/stat/nf_conntrack"],
    },
    Target {
        path: layout::ipvs::LIST,
        content: content::IPVSADM_LIST,
        argv: &["ipvsadm", "-Ln"],
        sos: &["sos_commands/ipvs/ipvsadm_-Ln"],
    },
    Target {
        path: layout::ipvs::STATS,
        content: content::IPVSADM_LIST,
        argv: &["ipvsadm", "-Ln", "--stats"],
        sos: &["sos_commands/ipvs/ipvsadm_-Ln_--stats"],
    },
    Target {
        path: layout::ipvs::RATE,
        content: content::IPVSADM_LIST,
        argv: &["ipvsadm", "-Ln", "--rate"],
        sos: &["sos_commands/ipvs/ipvsadm_-Ln_--rate"],
    },
    Target {
        path: layout::ipvs::CONNECTIONS,
        content: content::IPVSADM_CONNECTIONS,
        argv: &["ipvsadm", "-Lnc"],
        sos: &["sos_commands/ipvs/ipvsadm_-Ln_--connection"],
    },
    Target {
        path: "netns/host/ip-addr.txt",
        content: content::IP_ADDR,
        argv: &["ip", "-d", "address"],
        sos: &["sos_commands/networking/ip_-d_address"],
    },
    Target {
        path: "netns/host/ip-route.txt",
        content: content::IP_ROUTE,
        argv: &["ip", "route", "show", "table", "all"],
        sos: &[
            "sos_commands/networking/ip_route_show_table_all+sos_commands/networking/ip_-6_route_show_table_all",
        ],
    },
    Target {
        path: layout::node::IP_RULE,
        content: content::IP_RULE,
        argv: &["ip", "rule"],
        sos: &[
            "sos_commands/networking/ip_-4_rule",
            "sos_commands/networking/ip_rule",
        ],
    },
    Target {
        path: layout::node::IP6_RULE,
        content: content::IP_RULE,
        argv: &["ip", "-6", "rule"],
        sos: &["sos_commands/networking/ip_-6_rule"],
    },
    Target {
        path: layout::node::IP_NEIGH,
        content: content::IP_NEIGH,
        argv: &["ip", "neigh"],
        sos: &["sos_commands/networking/ip_neigh_show"],
    },
    Target {
        path: layout::node::KERNEL_LOG,
        content: content::KERNEL_LOG,
        argv: &["dmesg"],
        sos: &["sos_commands/kernel/dmesg", "var/log/dmesg"],
    },
    Target {
        path: layout::node::UNAME,
        content: content::FILE,
        argv: &["uname", "-a"],
        sos: &["sos_commands/kernel/uname_-a"],
    },
    Target {
        path: "netns/host/resolv.conf",
        content: content::RESOLV_CONF,
        argv: &["cat", "/etc/resolv.conf"],
        sos: &["etc/resolv.conf"],
    },
    Target {
        path: "node/sysctl-a.txt",
        content: content::FILE,
        argv: &["sysctl", "-a"],
        sos: &["sos_commands/kernel/sysctl_-a"],
    },
];

/// File names (normalized: lower case, `_` and spaces as `-`, runs of `-` collapsed,
/// `.txt`/`.out`/`.log` dropped) a hand-collected directory may use for each target,
/// beside the normalized form of the target's own command.
pub const HAND_COLLECTED: &[(&str, &[&str])] = &[
    (layout::iptables::SAVE, &["iptables-save-c", "iptables"]),
    (layout::iptables::SAVE6, &["ip6tables-save-c"]),
    (
        layout::nft::RULESET,
        &[
            "nft-list-ruleset-a",
            "nft-a-list-ruleset",
            "nft-ruleset",
            "nft",
        ],
    ),
    (
        layout::conntrack::TABLE,
        &["conntrack-l-o-extended", "conntrack-l", "conntrack"],
    ),
    (
        layout::conntrack::PROC_TABLE,
        &["nf-conntrack", "proc-net-nf-conntrack"],
    ),
    (layout::conntrack::STATS, &["conntrack-s"]),
    (
        layout::ipvs::LIST,
        &["ipvsadm-ln", "ipvsadm-l-n", "ipvsadm"],
    ),
    (layout::ipvs::STATS, &["ipvsadm-ln-stats"]),
    (layout::ipvs::RATE, &["ipvsadm-ln-rate"]),
    (
        layout::ipvs::CONNECTIONS,
        &["ipvsadm-lnc", "ipvsadm-ln-connection"],
    ),
    (
        "netns/host/ip-addr.txt",
        &[
            "ip-addr",
            "ip-a",
            "ip-address",
            "ip-address-show",
            "ip-addr-show",
            "ip-d-addr",
            "ip-d-address",
        ],
    ),
    (
        "netns/host/ip-route.txt",
        &[
            "ip-route",
            "ip-r",
            "ip-route-show",
            "ip-route-show-table-all",
        ],
    ),
    (
        layout::node::IP_RULE,
        &["ip-rule", "ip-rule-show", "ip-4-rule"],
    ),
    (layout::node::IP6_RULE, &["ip-6-rule"]),
    (
        layout::node::IP_NEIGH,
        &["ip-neigh", "ip-neigh-show", "ip-n"],
    ),
    (
        layout::node::KERNEL_LOG,
        &["dmesg", "dmesg-t", "kernel-log"],
    ),
    (layout::node::UNAME, &["uname-a", "uname"]),
    (
        "netns/host/resolv.conf",
        &["resolv.conf", "etc-resolv.conf", "cat-etc-resolv.conf"],
    ),
    ("node/sysctl-a.txt", &["sysctl-a", "sysctl"]),
];

/// Normalizes a file name the way [`HAND_COLLECTED`] lists them.
pub fn normalize_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let stem = [".txt", ".out", ".log"]
        .iter()
        .find_map(|e| lower.strip_suffix(e))
        .unwrap_or(&lower);
    let mut out = String::new();
    for c in stem.chars() {
        let c = if c == '_' || c == ' ' || c == '/' {
            '-'
        } else {
            c
        };
        if c == '-' && (out.ends_with('-') || out.is_empty()) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// The source's files that matter, by relative `/`-separated path.
struct Files {
    map: BTreeMap<String, Vec<u8>>,
}

impl Files {
    fn get(&self, pattern: &str) -> Option<(String, Vec<u8>)> {
        if let Some((a, b)) = pattern.split_once('+') {
            let (pa, mut first) = self.get(a)?;
            if let Some((_, second)) = self.get(b) {
                if !first.ends_with(b"\n") && !first.is_empty() {
                    first.push(b'\n');
                }
                first.extend_from_slice(&second);
            }
            return Some((pa, first));
        }
        match pattern.split_once('*') {
            None => self
                .map
                .get(pattern)
                .map(|v| (pattern.to_string(), v.clone())),
            Some((pre, post)) => self
                .map
                .iter()
                .find(|(k, _)| {
                    k.starts_with(pre)
                        && k.ends_with(post)
                        && !k[pre.len()..k.len() - post.len()].contains('/')
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        }
    }
}

/// Paths of a sosreport the import reads.
fn wanted(rel: &str) -> bool {
    rel.starts_with("sos_commands/networking/")
        || rel.starts_with("sos_commands/firewall_tables/")
        || rel.starts_with("sos_commands/conntrack/")
        || rel.starts_with("sos_commands/ipvs/")
        || rel.starts_with("sos_commands/kernel/")
        || rel.starts_with("proc/sys/net/")
        || (rel.starts_with("proc/") && rel.contains("/net/") && rel.contains("nf_conntrack"))
        || rel == "etc/resolv.conf"
        || rel == "etc/hostname"
        || rel == "var/log/dmesg"
        || !rel.contains('/')
}

/// Relative, normalized path of a member, or `None` if it escapes (`..`, absolute).
fn clean(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn read_capped(r: impl Read, what: &str) -> Result<Vec<u8>, ImportError> {
    let mut buf = Vec::new();
    r.take(MAX_FILE_BYTES)
        .read_to_end(&mut buf)
        .map_err(|source| ImportError::Read {
            path: what.to_string(),
            source,
        })?;
    Ok(buf)
}

fn read_dir(root: &Path) -> Result<Files, ImportError> {
    // An extracted sosreport may be the directory itself or its single child.
    let mut base = root.to_path_buf();
    if !root.join("sos_commands").is_dir() {
        let subdirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|source| ImportError::Read {
                path: root.display().to_string(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("sos_commands").is_dir())
            .collect();
        if let [one] = subdirs.as_slice() {
            base = one.clone();
        }
    }
    let mut map = BTreeMap::new();
    let mut stack = vec![(base.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ImportError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            // Never follow symlinks: sosreports hold some, and a stranger's could point anywhere.
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let Some(rel) = p.strip_prefix(&base).ok().and_then(clean) else {
                continue;
            };
            if meta.is_dir() && depth < 8 {
                stack.push((p, depth + 1));
            } else if meta.is_file() && wanted(&rel) {
                let f = std::fs::File::open(&p).map_err(|source| ImportError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                map.insert(rel, read_capped(f, &p.display().to_string())?);
            }
        }
    }
    Ok(Files { map })
}

fn read_tar(path: &Path) -> Result<Files, ImportError> {
    let err = |source| ImportError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut magic = [0u8; 6];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(err)?;
    let magic = &magic[..n];
    let tool = if magic.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if magic.starts_with(&[0x1F, 0x8B]) {
        Some("gzip")
    } else {
        None
    };
    let mut child = None;
    let reader: Box<dyn Read> = if let Some(tool) = tool {
        let mut c = Command::new(tool)
            .arg("-dc")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ImportError::Read {
                path: format!("{} (decompressing with `{tool} -dc`)", path.display()),
                source: e,
            })?;
        let out = c
            .stdout
            .take()
            .ok_or_else(|| err(std::io::Error::other("no stdout from the decompressor")))?;
        child = Some(c);
        Box::new(out)
    } else if magic.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Box::new(
            zstd::stream::read::Decoder::new(std::fs::File::open(path).map_err(err)?)
                .map_err(err)?,
        )
    } else {
        Box::new(std::fs::File::open(path).map_err(err)?)
    };
    let mut archive = tar::Archive::new(reader);
    let mut raw = BTreeMap::new();
    for entry in archive.entries().map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Some(rel) = entry.path().ok().and_then(|p| clean(&p)) else {
            continue;
        };
        // Members live under `sosreport-<host>-<date>/`: drop that first component.
        let inner = match rel.split_once('/') {
            Some((top, rest)) if top.starts_with("sosreport") || top.starts_with("sos") => {
                rest.to_string()
            }
            _ => rel.clone(),
        };
        if wanted(&inner) {
            raw.insert(inner, read_capped(entry, &rel)?);
        }
    }
    if let Some(mut c) = child {
        let _ = c.wait();
    }
    Ok(Files { map: raw })
}

fn ok_completion() -> Completion {
    Completion {
        exit_status: Some(0),
        duration: Duration::ZERO,
        ..Completion::default()
    }
}

/// Reads SRC and writes the bundle `out`.
pub fn import(src: &Path, out: &Path) -> Result<ImportSummary, ImportError> {
    let meta = std::fs::metadata(src).map_err(|source| ImportError::Read {
        path: src.display().to_string(),
        source,
    })?;
    let files = if meta.is_dir() {
        read_dir(src)?
    } else {
        read_tar(src)?
    };
    let kind = if files.map.keys().any(|k| k.starts_with("sos_commands/")) {
        SourceKind::Sosreport
    } else {
        SourceKind::HandCollected
    };
    // target path -> (source file, bytes)
    let mut found: BTreeMap<&'static str, (String, Vec<u8>)> = BTreeMap::new();
    for t in TARGETS {
        let hit = match kind {
            SourceKind::Sosreport => t.sos.iter().find_map(|p| files.get(p)),
            SourceKind::HandCollected => {
                let own = normalize_name(&t.argv.join(" "));
                let names: Vec<String> = std::iter::once(own)
                    .chain(
                        HAND_COLLECTED
                            .iter()
                            .filter(|(p, _)| *p == t.path)
                            .flat_map(|(_, n)| n.iter().map(|s| s.to_string())),
                    )
                    .collect();
                names.iter().find_map(|n| {
                    files
                        .map
                        .iter()
                        .find(|(k, _)| !k.contains('/') && normalize_name(k) == *n)
                        .map(|(k, v)| (k.clone(), v.clone()))
                })
            }
        };
        if let Some(h) = hit {
            found.insert(t.path, h);
        }
    }
    if found.is_empty() {
        return Err(ImportError::NothingKnown(src.display().to_string()));
    }

    let w = BundleWriter::create(out, WriterOptions::default())?;
    let mut summary = ImportSummary {
        kind,
        bundle: w.final_path().to_path_buf(),
        imported: Vec::new(),
        missing: Vec::new(),
    };
    let source_name = match kind {
        SourceKind::Sosreport => "the sosreport",
        SourceKind::HandCollected => "the directory of collected outputs",
    };
    for t in TARGETS {
        let spec = ArtifactSpec::raw_command(t.path, t.content, t.argv)
            .with_attribute("imported_from", "");
        match found.get(t.path) {
            Some((from, bytes)) => {
                let spec = spec.with_attribute("imported_from", from.clone());
                let spec = if t.path.starts_with("netns/host/") {
                    spec.in_netns(layout::HOST_NETNS)
                } else {
                    spec
                };
                w.add_bytes(spec, bytes, ok_completion())?;
                summary.imported.push((t.path.to_string(), from.clone()));
            }
            None => {
                let mut spec = spec;
                spec.attributes.clear();
                w.record_missing(
                    spec,
                    // Skipped, not unavailable: unavailable means "absent on the node"
                    // and rules would then run on the empty data.
                    ArtifactStatus::Skipped,
                    format!(
                        "not in {source_name}: it holds no `{}` output",
                        t.argv.join(" ")
                    ),
                    Completion::default(),
                )?;
                summary.missing.push(t.path.to_string());
            }
        }
    }
    // Native artifacts the analysis reads, derived from the raw ones.
    let text = |p: &str| {
        found
            .get(p)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
    };
    if let Some(addr) = text("netns/host/ip-addr.txt") {
        let links = parse::ip::parse_addr(&addr);
        let routes = text("netns/host/ip-route.txt")
            .map(|r| parse::ip::parse_routes(&r))
            .unwrap_or_default();
        let snap = parse::ip::to_native_snapshot(layout::HOST_NETNS, &links, &routes);
        w.add_json(
            ArtifactSpec::native(
                layout::netns_path(layout::HOST_NETNS, layout::netns::NETLINK),
                ArtifactSource::Derived,
            )
            .in_netns(layout::HOST_NETNS),
            &snap,
            Duration::ZERO,
        )?;
    }
    let mut sysctls: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &files.map {
        if let Some(key) = k
            .strip_prefix("proc/sys/")
            .and_then(parse::sysctl::proc_path_to_key)
        {
            sysctls.insert(key, String::from_utf8_lossy(v).trim().to_string());
        }
    }
    if let Some(s) = text("node/sysctl-a.txt") {
        for (k, e) in parse::sysctl::parse_sysctl(&s).values {
            sysctls.insert(k, e.value);
        }
    }
    let net: BTreeMap<String, String> = sysctls
        .into_iter()
        .filter(|(k, _)| k.starts_with("net."))
        .collect();
    if !net.is_empty() {
        let ct: BTreeMap<String, String> = net
            .iter()
            .filter(|(k, _)| k.starts_with("net.netfilter."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        w.add_json(
            ArtifactSpec::native(layout::node::SYSCTLS, ArtifactSource::Derived),
            &net,
            Duration::ZERO,
        )?;
        if !ct.is_empty() {
            w.add_json(
                ArtifactSpec::native(layout::conntrack::SYSCTLS, ArtifactSource::Derived),
                &ct,
                Duration::ZERO,
            )?;
        }
    }
    let uname = text(layout::node::UNAME).unwrap_or_default();
    let mut words = uname.split_whitespace().skip(1);
    let hostname = files
        .map
        .get("etc/hostname")
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .or_else(|| words.next().map(str::to_string))
        .unwrap_or_default();
    let kernel = uname.split_whitespace().nth(2).unwrap_or("").to_string();
    let now = chrono::Utc::now();
    w.finish(
        ToolInfo {
            name: "netsnap-analyze import".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        NodeInfo {
            name: (!hostname.is_empty()).then(|| hostname.clone()),
            hostname,
            kernel_release: kernel,
            machine: None,
        },
        CollectionInfo {
            started_at: now,
            finished_at: now,
            outcome: CollectionOutcome::Complete,
            options: serde_json::json!({
                "imported_from": {
                    "kind": kind,
                    "path": src.display().to_string(),
                }
            }),
            notes: vec![format!(
                "imported from {source_name} {} by netsnap-analyze import: {} artifact(s) found, {} not in the source; times are the import's, not the capture's",
                src.display(),
                summary.imported.len(),
                summary.missing.len()
            )],
            resource_usage: None,
        },
    )?;
    Ok(summary)
}
