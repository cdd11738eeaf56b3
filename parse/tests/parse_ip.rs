//! `parse::ip` over the real captures in `fixtures/raw/ip/` (see fixtures/raw/README.md):
//! one snapshot per fixture, plus assertions on the facts the analysis relies on.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::net::IpAddr;
use std::path::Path;

use netsnap_parse::ip::{self, Family, Lifetime};

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/raw/ip")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Dispatches on the capture's file name, as the README names them.
fn parse_any(name: &str, text: &str) -> serde_json::Value {
    let v = if name.contains("-j-") {
        if name.contains("route") {
            serde_json::to_value(ip::parse_json_routes(text).unwrap())
        } else {
            serde_json::to_value(ip::parse_json_links(text).unwrap())
        }
    } else if name.contains("route") {
        serde_json::to_value(ip::parse_routes(text))
    } else if name.contains("rule") {
        serde_json::to_value(ip::parse_rules(text))
    } else if name.contains("neigh") {
        serde_json::to_value(ip::parse_neigh(text))
    } else {
        serde_json::to_value(ip::parse_addr(text))
    };
    v.unwrap()
}

#[test]
fn snapshots() {
    insta::glob!("../../fixtures/raw/ip", "*.{txt,json}", |path| {
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let value = parse_any(name, &text);
        // Nothing in a real capture may go unparsed.
        assert_eq!(
            value["unparsed"].as_array().map(Vec::len).unwrap_or(0),
            0,
            "{name}: {}",
            value["unparsed"]
        );
        insta::assert_yaml_snapshot!(value);
    });
}

#[test]
fn seed_tutorial_veth_correlation() {
    // The tutorial's method: the pod's eth0@if11 is the node's interface 11.
    let pod = ip::parse_addr(&fixture("seed-pod-ip-addr.txt"));
    let node = ip::parse_addr(&fixture("seed-node-ip-addr.txt"));
    let eth0 = pod.by_name("eth0").unwrap();
    assert_eq!(eth0.index, 10);
    assert_eq!(eth0.peer_index, Some(11));
    assert_eq!(eth0.link_netnsid, Some(0));
    assert_eq!(eth0.mtu, Some(1450));
    assert_eq!(eth0.addrs[0].address, ip("10.244.3.4"));
    assert_eq!(eth0.addrs[0].broadcast, Some(ip("10.244.3.255")));
    assert_eq!(eth0.addrs[0].valid_lft, Some(Lifetime::Forever));
    let host = node.by_index(eth0.peer_index.unwrap()).unwrap();
    assert_eq!(host.name, "veth4f7342d");
    assert_eq!(host.peer_index, Some(eth0.index));
    assert_eq!(host.master.as_deref(), Some("docker0"));
    assert_eq!(host.link_netnsid, Some(2));
    assert_eq!(node.links.len(), 4);
    assert_eq!(node.by_name("lo").unwrap().qlen, Some(1));
}

#[test]
fn details_vxlan_bridge_port_and_netns_forms() {
    let d = ip::parse_addr(&fixture("node-ip-d-addr.txt"));
    let vx = d.by_name("flannel.1").unwrap();
    assert_eq!(vx.kind.as_deref(), Some("vxlan"));
    let info = vx.vxlan.as_ref().unwrap();
    assert_eq!(info.id, Some(1));
    assert_eq!(info.dstport, Some(8472));
    assert_eq!(info.local, Some(ip("192.168.50.10")));
    assert_eq!(info.dev.as_deref(), Some("eth0"));
    assert_eq!(info.learning, Some(false));
    let veth = d.by_name("veth4f7342d").unwrap();
    assert_eq!(veth.kind.as_deref(), Some("veth"));
    assert_eq!(veth.slave_kind.as_deref(), Some("bridge_slave"));
    let bp = veth.bridge_port.as_ref().unwrap();
    assert_eq!(bp.hairpin, Some(false));
    assert_eq!(bp.state.as_deref(), Some("forwarding"));
    assert_eq!(d.by_name("cni0").unwrap().kind.as_deref(), Some("bridge"));
    assert_eq!(d.by_name("lo").unwrap().kind, None);

    let named = ip::parse_addr(&fixture("node-ip-d-addr-named.txt"));
    let veth = named.by_name("veth4f7342d").unwrap();
    assert_eq!(veth.link_netns.as_deref(), Some("ipdns-pod1"));
    assert_eq!(veth.link_netnsid, None);
    assert!(veth.is_veth());
    let pod = ip::parse_addr(&fixture("pod1-ip-addr-named.txt"));
    assert_eq!(
        pod.by_name("eth0").unwrap().link_netns.as_deref(),
        Some("ipdns-node")
    );
}

#[test]
fn text_and_json_agree() {
    // Same namespace, same moment: `ip -d addr` text vs `ip -j addr` + `ip -j -d link`.
    let text = ip::parse_addr(&fixture("node-ip-d-addr.txt"));
    let jaddr = ip::parse_json_links(&fixture("node-ip-j-addr.json")).unwrap();
    let jlink = ip::parse_json_links(&fixture("node-ip-j-d-link.json")).unwrap();
    assert_eq!(text.links.len(), jaddr.links.len());
    for t in &text.links {
        let a = jaddr.by_index(t.index).unwrap();
        let l = jlink.by_index(t.index).unwrap();
        assert_eq!(t.name, a.name);
        assert_eq!(t.mtu, l.mtu);
        assert_eq!(t.master, l.master, "{}", t.name);
        assert_eq!(t.kind, l.kind, "{}", t.name);
        assert_eq!(t.link_netnsid, l.link_netnsid, "{}", t.name);
        assert_eq!(
            t.vxlan.as_ref().map(|v| v.id),
            l.vxlan.as_ref().map(|v| v.id)
        );
        let ta: Vec<_> = t
            .addrs
            .iter()
            .map(|x| (x.address, x.prefix_len, x.broadcast))
            .collect();
        let ja: Vec<_> = a
            .addrs
            .iter()
            .map(|x| (x.address, x.prefix_len, x.broadcast))
            .collect();
        assert_eq!(ta, ja, "{}", t.name);
    }
    // A veth's peer index: text `@if10`, JSON `link_index`.
    assert_eq!(jlink.by_name("veth4f7342d").unwrap().peer_index, Some(10));

    let rt = ip::parse_routes(&fixture("node-ip-route-table-all.txt"));
    let rj = ip::parse_json_routes(&fixture("node-ip-j-route-table-all.json")).unwrap();
    assert_eq!(rt.routes.len(), rj.routes.len());
    for (a, b) in rt.routes.iter().zip(&rj.routes) {
        assert_eq!(
            (&a.dst, &a.table, &a.route_type),
            (&b.dst, &b.table, &b.route_type)
        );
        assert_eq!((a.gateway, &a.dev, a.src), (b.gateway, &b.dev, b.src));
    }
}

#[test]
fn routes_rules_neigh_semantics() {
    let r = ip::parse_routes(&fixture("node-ip-route-table-all.txt"));
    let cali = r.routes.iter().find(|x| x.dst == "10.244.3.20").unwrap();
    assert_eq!(cali.dev.as_deref(), Some("cali1a2b3c4d5e6"));
    assert_eq!(cali.dst_net(), Some((ip("10.244.3.20"), 32)));
    assert_eq!(cali.scope.as_deref(), Some("link"));
    let bh = r
        .routes
        .iter()
        .find(|x| x.route_type == "blackhole")
        .unwrap();
    assert_eq!(bh.dst, "10.244.99.0/26");
    assert_eq!(bh.dev, None);
    let t100 = r.routes.iter().find(|x| x.table == "100").unwrap();
    assert_eq!(t100.metric, Some(10));
    let vip = r
        .routes
        .iter()
        .find(|x| x.dst == "10.96.0.10" && x.table == "local")
        .unwrap();
    assert_eq!(vip.route_type, "local");
    assert_eq!(vip.dev.as_deref(), Some("kube-ipvs0"));
    let overlay = r.routes.iter().find(|x| x.dst == "10.244.18.0/24").unwrap();
    assert_eq!(overlay.flags, vec!["onlink"]);
    assert!(r.routes.iter().any(|x| x.route_type == "broadcast"));
    assert!(r.routes.iter().filter(|x| x.is_default()).count() >= 2);

    let r6 = ip::parse_routes(&fixture("node-ip-6-route.txt"));
    assert!(r6.routes.iter().all(|x| x.family == Some(Family::Inet6)));
    let d6 = r6.routes.iter().find(|x| x.dst == "default").unwrap();
    assert_eq!(d6.metric, Some(1024));

    let rules = ip::parse_rules(&fixture("node-ip-rule.txt"));
    let prios: Vec<u32> = rules.rules.iter().map(|x| x.priority).collect();
    assert_eq!(prios, vec![0, 100, 32766, 32767]);
    assert_eq!(rules.rules[1].from.as_deref(), Some("10.244.3.0/24"));
    assert_eq!(rules.rules[1].lookup.as_deref(), Some("100"));

    let n = ip::parse_neigh(&fixture("node-ip-neigh.txt"));
    let failed = n.entries.iter().find(|e| e.states == ["FAILED"]).unwrap();
    assert_eq!(failed.address, ip("192.168.50.77"));
    assert_eq!(failed.lladdr, None);
    assert!(
        n.entries
            .iter()
            .any(|e| e.states == ["PERMANENT"] && e.dev.as_deref() == Some("flannel.1"))
    );
}

#[test]
fn native_round_trip_keeps_the_model() {
    let links = ip::parse_json_links(&fixture("node-ip-j-d-link.json")).unwrap();
    let addrs = ip::parse_json_links(&fixture("node-ip-j-addr.json")).unwrap();
    let mut merged = links.clone();
    for l in &mut merged.links {
        l.addrs = addrs.by_index(l.index).unwrap().addrs.clone();
    }
    let routes = ip::parse_json_routes(&fixture("node-ip-j-route-table-all.json")).unwrap();
    let snap = ip::to_native_snapshot("host", &merged, &routes);
    let vx = snap.links.iter().find(|l| l.name == "flannel.1").unwrap();
    assert_eq!(vx.vxlan.as_ref().unwrap().link_index, Some(2));
    let (back, back_routes) = ip::from_native(&snap);
    for (a, b) in merged.links.iter().zip(&back.links) {
        assert_eq!(
            (a.index, &a.name, a.peer_index),
            (b.index, &b.name, b.peer_index)
        );
        assert_eq!(
            (&a.master, &a.kind, a.link_netnsid),
            (&b.master, &b.kind, b.link_netnsid)
        );
        assert_eq!(a.addrs.len(), b.addrs.len());
        assert_eq!(
            a.vxlan.as_ref().and_then(|v| v.dev.clone()),
            b.vxlan.as_ref().and_then(|v| v.dev.clone())
        );
    }
    for (a, b) in routes.routes.iter().zip(&back_routes.routes) {
        assert_eq!(
            (&a.dst, &a.table, &a.route_type, &a.dev),
            (&b.dst, &b.table, &b.route_type, &b.dev)
        );
    }
}

#[test]
fn bad_json_is_an_error_not_a_panic() {
    let e = ip::parse_json_links("[{\"ifindex\": \"x\"}]").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(ip::parse_json_routes("{").is_err());
}

proptest::proptest! {
    /// No input makes a parser panic; the lines it keeps are real line numbers.
    #[test]
    fn never_panics(text in "(([0-9]{1,3}: [a-z@0-9]{0,8}: <[A-Z,]{0,12}>[ a-z0-9]{0,20})|( {4}(inet6?|link/ether|vxlan|bridge_slave|valid_lft) [0-9a-f:./ ]{0,30})|([a-z0-9./: ]{0,40})|\n){0,12}") {
        let lines = text.lines().count();
        let l = ip::parse_addr(&text);
        proptest::prop_assert!(l.unparsed.iter().all(|u| u.line >= 1 && u.line <= lines));
        let r = ip::parse_routes(&text);
        proptest::prop_assert!(r.unparsed.iter().all(|u| u.line >= 1 && u.line <= lines));
        let _ = ip::parse_rules(&text);
        let _ = ip::parse_neigh(&text);
        let _ = ip::from_native(&ip::to_native_snapshot("p", &l, &r));
    }
}

/// Issue 19: `ip -br addr` and `ip -br link` (real captures) give the interfaces with
/// their state, addresses and MAC; the brief form has no index, so none is invented.
#[test]
fn brief_forms_parse() {
    let addr = ip::parse_addr(&fixture("v19-ip-br-addr.txt"));
    assert!(addr.unparsed.is_empty(), "{:?}", addr.unparsed);
    let names: Vec<&str> = addr.links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lo", "v19-va", "cni0"]);
    let va = addr.by_name("v19-va").unwrap();
    assert_eq!(va.peer_index, Some(2));
    assert_eq!(va.state.as_deref(), Some("UP"));
    assert_eq!(va.index, 0);
    let a: Vec<String> = va
        .addrs
        .iter()
        .map(|a| format!("{}/{}", a.address, a.prefix_len))
        .collect();
    assert_eq!(a[..2], ["10.79.0.1/24", "fd79::1/64"]);
    assert_eq!(va.addrs[1].family, Family::Inet6);
    let link = ip::parse_addr(&fixture("v19-ip-br-link.txt"));
    assert!(link.unparsed.is_empty(), "{:?}", link.unparsed);
    let cni0 = link.by_name("cni0").unwrap();
    assert!(cni0.is_up());
    assert_eq!(cni0.mac.as_deref().map(str::len), Some(17));
    // Brief and JSON captures of the same namespace agree on names and addresses.
    let json = ip::parse_json_links(&fixture("v19-ip-j-addr.json")).unwrap();
    for l in &addr.links {
        let j = json.by_name(&l.name).unwrap();
        let set = |x: &ip::Link| -> Vec<String> {
            x.addrs
                .iter()
                .map(|a| format!("{}/{}", a.address, a.prefix_len))
                .collect()
        };
        assert_eq!(set(l), set(j), "{}", l.name);
    }
}

/// Issue 19: `ip -j` output stored where text is expected (a hand-collected `ip addr`
/// file made with `-j`) is read as JSON, and `ip -j route`'s ECMP `nexthops` keep
/// their gateways and devices like the text form's `nexthop` lines.
#[test]
fn json_in_text_files_and_json_nexthops() {
    let links = ip::parse_addr(&fixture("v19-ip-j-addr.json"));
    assert!(links.unparsed.is_empty());
    assert_eq!(links.by_name("v19-va").unwrap().addrs.len(), 3);
    let json = ip::parse_routes(&fixture("v19-ip-j-route-table-all.json"));
    let text = ip::parse_routes(&fixture("v19-ip-route-table-all.txt"));
    assert!(json.unparsed.is_empty() && text.unparsed.is_empty());
    let hops = |r: &ip::Routes| -> Vec<String> {
        r.routes
            .iter()
            .find(|r| r.dst == "10.200.0.0/16")
            .unwrap()
            .nexthops
            .iter()
            .map(|n| format!("{:?} {:?} {:?}", n.gateway, n.dev, n.weight))
            .collect()
    };
    assert_eq!(hops(&json).len(), 2);
    assert_eq!(hops(&json), hops(&text));
    assert!(hops(&json)[1].contains("10.79.0.3"));
    let bad = ip::parse_addr("[{\"ifindex\": \"x\"}]");
    assert_eq!(bad.unparsed.len(), 1);
    assert!(bad.unparsed[0].reason.contains("ip -j"));
}
