//! `ip -j` JSON (`ip -j [-d] addr`, `ip -j [-d] link`, `ip -j route`) into the same model as the text.
//!
//! Every field is optional on input: iproute2 versions add and drop keys, and a
//! missing key must not reject the whole document.

use std::net::IpAddr;

use serde::Deserialize;

use super::{
    Addr, BridgePort, Family, IpError, Lifetime, Link, Links, Nexthop, Route, Routes, Vxlan,
    parse_prefix,
};

#[derive(Deserialize)]
struct JLink {
    ifindex: u32,
    #[serde(default)]
    link_index: Option<u32>,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    qdisc: Option<String>,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    operstate: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    txqlen: Option<u32>,
    #[serde(default)]
    link_type: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    link_netnsid: Option<i32>,
    #[serde(default)]
    link_netns: Option<String>,
    #[serde(default)]
    linkinfo: Option<JLinkInfo>,
    #[serde(default)]
    addr_info: Vec<JAddr>,
}

#[derive(Deserialize)]
struct JLinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
    #[serde(default)]
    info_data: Option<serde_json::Value>,
    #[serde(default)]
    info_slave_kind: Option<String>,
    #[serde(default)]
    info_slave_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct JAddr {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    broadcast: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    valid_life_time: Option<u64>,
    #[serde(default)]
    preferred_life_time: Option<u64>,
    #[serde(default)]
    secondary: Option<bool>,
    #[serde(default)]
    dynamic: Option<bool>,
    #[serde(default)]
    noprefixroute: Option<bool>,
    #[serde(default)]
    nodad: Option<bool>,
    #[serde(default)]
    tentative: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
}

fn lifetime(v: Option<u64>) -> Option<Lifetime> {
    v.map(|s| {
        if s >= u64::from(u32::MAX) {
            Lifetime::Forever
        } else {
            Lifetime::Seconds(s)
        }
    })
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

/// Parses `ip -j [-d] addr` or `ip -j [-d] link` output.
pub fn parse_json_links(text: &str) -> Result<Links, IpError> {
    let raw: Vec<JLink> = serde_json::from_str(text)?;
    let links = raw
        .into_iter()
        .map(|j| {
            let mut link = Link {
                line: None,
                index: j.ifindex,
                name: j.ifname,
                peer_index: j.link_index,
                parent: j.link,
                flags: j.flags,
                mtu: j.mtu,
                qdisc: j.qdisc,
                master: j.master,
                state: j.operstate,
                group: j.group,
                qlen: j.txqlen,
                link_type: j.link_type,
                mac: j.address,
                link_netnsid: j.link_netnsid,
                link_netns: j.link_netns,
                ..Link::default()
            };
            if let Some(info) = j.linkinfo {
                link.kind = info.info_kind;
                if let (Some("vxlan"), Some(d)) = (link.kind.as_deref(), &info.info_data) {
                    link.vxlan = Some(Vxlan {
                        id: d
                            .get("id")
                            .and_then(|x| x.as_u64())
                            .and_then(|x| x.try_into().ok()),
                        local: str_field(d, "local").and_then(|s| s.parse().ok()),
                        remote: str_field(d, "remote")
                            .or_else(|| str_field(d, "group"))
                            .and_then(|s| s.parse().ok()),
                        dev: str_field(d, "link").map(str::to_string),
                        dstport: d
                            .get("port")
                            .and_then(|x| x.as_u64())
                            .and_then(|x| x.try_into().ok()),
                        learning: d.get("learning").and_then(|x| x.as_bool()),
                    });
                }
                if let Some(sk) = info.info_slave_kind {
                    if sk == "bridge" {
                        let d = info.info_slave_data.unwrap_or_default();
                        link.bridge_port = Some(BridgePort {
                            state: str_field(&d, "state").map(str::to_string),
                            hairpin: d.get("hairpin").and_then(|x| x.as_bool()),
                        });
                    }
                    // The text output says `bridge_slave`; use the same word.
                    link.slave_kind = Some(format!("{sk}_slave"));
                }
            }
            link.addrs = j
                .addr_info
                .into_iter()
                .filter_map(|a| {
                    let address: IpAddr = a.local.as_deref()?.parse().ok()?;
                    let family = match a.family.as_deref() {
                        Some("inet6") => Family::Inet6,
                        Some("inet") => Family::Inet,
                        _ => Family::of(&address),
                    };
                    let mut flags = Vec::new();
                    for (set, name) in [
                        (a.secondary, "secondary"),
                        (a.dynamic, "dynamic"),
                        (a.noprefixroute, "noprefixroute"),
                        (a.nodad, "nodad"),
                        (a.tentative, "tentative"),
                        (a.deprecated, "deprecated"),
                    ] {
                        if set == Some(true) {
                            flags.push(name.to_string());
                        }
                    }
                    Some(Addr {
                        line: None,
                        family,
                        address,
                        prefix_len: a
                            .prefixlen
                            .unwrap_or(if address.is_ipv4() { 32 } else { 128 }),
                        peer: a.address.as_deref().and_then(|s| s.parse().ok()),
                        broadcast: a.broadcast.as_deref().and_then(|s| s.parse().ok()),
                        scope: a.scope,
                        label: a.label,
                        flags,
                        valid_lft: lifetime(a.valid_life_time),
                        preferred_lft: lifetime(a.preferred_life_time),
                    })
                })
                .collect();
            link
        })
        .collect();
    Ok(Links {
        links,
        unparsed: Vec::new(),
    })
}

#[derive(Deserialize)]
struct JRoute {
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    dst: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    prefsrc: Option<String>,
    #[serde(default)]
    metric: Option<u32>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    nexthops: Vec<JNexthop>,
}

/// One element of `nexthops` (an ECMP route).
#[derive(Deserialize)]
struct JNexthop {
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    flags: Vec<String>,
}

/// Parses `ip -j route` output (any table, either family).
pub fn parse_json_routes(text: &str) -> Result<Routes, IpError> {
    let raw: Vec<JRoute> = serde_json::from_str(text)?;
    let routes = raw
        .into_iter()
        .map(|j| {
            let dst = j.dst.unwrap_or_else(|| "default".into());
            let gateway: Option<IpAddr> = j.gateway.as_deref().and_then(|s| s.parse().ok());
            let src: Option<IpAddr> = j.prefsrc.as_deref().and_then(|s| s.parse().ok());
            let family = parse_prefix(&dst)
                .map(|(a, _)| a)
                .or(gateway)
                .or(src)
                .map(|a| Family::of(&a));
            Route {
                line: None,
                family,
                route_type: j.type_.unwrap_or_else(|| "unicast".into()),
                dst,
                gateway,
                dev: j.dev,
                table: j.table.unwrap_or_else(|| "main".into()),
                protocol: j.protocol,
                scope: j.scope,
                src,
                metric: j.metric,
                flags: j.flags,
                nexthops: j
                    .nexthops
                    .into_iter()
                    .map(|n| Nexthop {
                        line: None,
                        gateway: n.gateway.as_deref().and_then(|g| g.parse().ok()),
                        dev: n.dev,
                        weight: n.weight,
                        flags: n.flags,
                    })
                    .collect(),
                ..Route::default()
            }
        })
        .collect();
    Ok(Routes {
        routes,
        unparsed: Vec::new(),
    })
}
