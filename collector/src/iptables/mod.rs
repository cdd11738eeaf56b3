//! iptables (every backend present), nftables and ipset, each distinct dump once.
//!
//! Backends are detected once. `iptables-save -c` is run for whatever
//! `iptables-save` points to; the explicit `iptables-legacy-save` /
//! `iptables-nft-save` run too when they are a *different* program, so a node with
//! rules split across backends (a classic kube-proxy failure) shows both. When the
//! explicit variant is the same program (`iptables-save` is `xtables-nft-multi`, as
//! `iptables-nft-save` is), it would print the same bytes again: its record is
//! `skipped` with the attribute `same_as` naming the dump that holds them. Each
//! record's `backend` attribute says `legacy` or `nft`: for the explicit variants
//! from the name, for the plain one from `iptables -V` (`iptables v1.8.10
//! (nf_tables)`) or, without it, from the binary the name resolves to.
//!
//! nftables: `nft list ruleset` would print the tables iptables-nft manages again
//! (slowly: 55,000 kube-proxy rules take it as long as `iptables-save`). The tables
//! are listed over netlink (`NFT_MSG_GETTABLE`, microseconds), and `nft list table`
//! runs for every table except the iptables-nft ones (`ip`/`ip6` `filter`, `nat`,
//! `mangle`, `raw`, `security`) whose content a complete iptables-nft dump printed:
//! kube-proxy's own `ip`/`ip6 kube-proxy` tables, CNI tables and anything else
//! land in `nft/ruleset.txt` in `nft list ruleset` syntax. (`nft list tables`
//! cannot be used to learn the names: nft 1.0.6 fetches the whole ruleset for it.)
//! A table iptables-nft-save calls incompatible, or any table when the netlink
//! listing or the iptables-nft dump failed, is listed by `nft` like the rest.

pub mod step;

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::sys::exec::{Captured, Exec};

/// Backend named in a `-V` line or a binary name: `nft`, `legacy`, or None.
pub fn backend_of(text: &str) -> Option<&'static str> {
    if text.contains("nf_tables") || text.contains("-nft") {
        Some("nft")
    } else if text.contains("legacy") {
        Some("legacy")
    } else {
        None
    }
}

async fn plain_backend(exec: &Exec, versioned: &str, save: &str) -> Option<&'static str> {
    if let Captured::Output(out, _) = exec.capture(&[versioned, "-V"], 4096).await
        && let Some(b) = backend_of(&String::from_utf8_lossy(&out))
    {
        return Some(b);
    }
    let resolved = exec.resolve(save)?;
    let real = std::fs::canonicalize(&resolved).unwrap_or(resolved);
    backend_of(&real.file_name()?.to_string_lossy())
}

fn canonical(exec: &Exec, program: &str) -> Option<PathBuf> {
    let p = exec.resolve(program)?;
    Some(std::fs::canonicalize(&p).unwrap_or(p))
}

/// True when `explicit` (`iptables-nft-save`, of backend `backend`) would print what
/// `plain` (`iptables-save`) printed: the same multi-call binary under both names,
/// or one wrapper (kube's `iptables-wrapper`) behind both `iptables` and
/// `iptables-save` whose `iptables -V` names that backend.
fn same_program(
    exec: &Exec,
    plain: &str,
    versioned: &str,
    plain_backend: Option<&str>,
    explicit: &str,
    backend: &str,
) -> bool {
    let (Some(p), Some(e)) = (canonical(exec, plain), canonical(exec, explicit)) else {
        return false;
    };
    p == e || (plain_backend == Some(backend) && canonical(exec, versioned).as_ref() == Some(&p))
}

/// The tables iptables-nft creates in the `ip` and `ip6` families.
pub const IPTABLES_NFT_TABLES: &[&str] = &["filter", "nat", "mangle", "raw", "security"];

/// What an `iptables-save` dump printed: its `*table` headers and the tables it
/// called incompatible (`# Table `filter' is incompatible, use 'nft' tool.`).
#[derive(Debug, Default, Clone)]
pub struct SaveScan {
    carry: Vec<u8>,
    /// Tables with a `*name` header.
    pub tables: BTreeSet<String>,
    /// Tables iptables-nft-save refused to print.
    pub incompatible: BTreeSet<String>,
}

impl SaveScan {
    /// Feeds a chunk of the dump (lines may span chunks).
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if self.carry.is_empty() {
                self.line(&rest[..pos]);
            } else {
                self.carry.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.carry);
                self.line(&line);
            }
            rest = &rest[pos + 1..];
        }
        // Only short lines matter (headers, comments): a long rule line is dropped.
        if self.carry.len() + rest.len() <= 512 {
            self.carry.extend_from_slice(rest);
        } else {
            self.carry.clear();
            self.carry.push(b'-');
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        if let Some(name) = line.strip_prefix('*') {
            self.tables.insert(name.trim().to_string());
        } else if line.starts_with('#')
            && line.contains("incompatible")
            && let Some((_, after)) = line.split_once('`')
            && let Some((name, _)) = after.split_once('\'')
        {
            self.incompatible.insert(name.to_string());
        }
    }

    /// The iptables-nft tables this dump holds completely.
    pub fn covered(&self) -> BTreeSet<String> {
        self.tables
            .iter()
            .filter(|t| {
                IPTABLES_NFT_TABLES.contains(&t.as_str()) && !self.incompatible.contains(*t)
            })
            .cloned()
            .collect()
    }
}

/// Tables in the kernel's nf_tables, as `(family, name)` (`ip`, `ip6`, `inet`,
/// `arp`, `bridge`, `netdev`), in the kernel's order, over one netlink dump.
pub fn list_nft_tables() -> std::io::Result<Vec<(String, String)>> {
    use netlink_packet_core::{
        NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_netfilter::nftables::{NfTablesMessage, TableAttribute, TableMessage};
    use netlink_packet_netfilter::{
        NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    };
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
        )),
    );
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let family = |f: NetfilterProtoFamily| match f {
        NetfilterProtoFamily::IPv4 => "ip".to_string(),
        NetfilterProtoFamily::IPv6 => "ip6".into(),
        NetfilterProtoFamily::Inet => "inet".into(),
        NetfilterProtoFamily::ARP => "arp".into(),
        NetfilterProtoFamily::Bridge => "bridge".into(),
        NetfilterProtoFamily::NetDev => "netdev".into(),
        other => format!("{}", u8::from(other)),
    };
    let mut tables = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        if data.is_empty() {
            return Err(bad("netlink socket closed".into()));
        }
        let mut off = 0;
        while off < data.len() {
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&data[off..])
                .map_err(|e| bad(format!("nf_tables table dump: {e}")))?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(tables),
                NetlinkPayload::Error(e) => {
                    return Err(match e.code {
                        Some(code) => std::io::Error::from_raw_os_error(-code.get()),
                        None => bad("netlink error without a code".into()),
                    });
                }
                NetlinkPayload::InnerMessage(m) => {
                    if let NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)) = m.inner
                        && let Some(name) = t.attributes.iter().find_map(|a| match a {
                            TableAttribute::Name(n) => Some(n.clone()),
                            _ => None,
                        })
                    {
                        tables.push((family(m.header.family), name));
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SaveScan, backend_of};

    #[test]
    fn backends() {
        assert_eq!(backend_of("iptables v1.8.10 (nf_tables)"), Some("nft"));
        assert_eq!(backend_of("iptables v1.8.7 (legacy)"), Some("legacy"));
        assert_eq!(backend_of("xtables-nft-multi"), Some("nft"));
        assert_eq!(backend_of("xtables-legacy-multi"), Some("legacy"));
        assert_eq!(backend_of("iptables v1.4.21"), None);
    }

    #[test]
    fn save_scan_finds_headers_across_chunks_and_incompatible_tables() {
        let text = "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Thu Dec  3 14:00:00 2026\n\
                    *nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n\
                    # Table `filter' is incompatible, use 'nft' tool.\n\
                    *mangle\nCOMMIT\n";
        let long = format!("-A X {}\n", "y".repeat(2000));
        let mut whole = SaveScan::default();
        whole.feed(text.as_bytes());
        let mut split = SaveScan::default();
        for chunk in format!("{long}{text}").as_bytes().chunks(7) {
            split.feed(chunk);
        }
        for s in [&whole, &split] {
            assert_eq!(
                s.tables.iter().map(String::as_str).collect::<Vec<_>>(),
                ["mangle", "nat"]
            );
            assert_eq!(
                s.incompatible
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                ["filter"]
            );
            assert_eq!(
                s.covered().iter().map(String::as_str).collect::<Vec<_>>(),
                ["mangle", "nat"]
            );
        }
    }
}
