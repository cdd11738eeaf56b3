//! veth pairs matched by namespace identity (the host's nsid for the namespace
//! and both ends' indexes), never by index alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::layout;
use crate::native::{LinkRecord, NetnsSnapshot, VethPair};

/// veth pairs, matched by namespace identity.
///
/// `host_nsids` maps a namespace id to the host's nsid for it. A pod-side veth
/// `L` (index `i`, `IFLA_LINK` = `j`) in namespace `X` pairs with host link `P`
/// only when `P.index == j`, `P.link_netnsid == host_nsids[X]` and
/// `P.link_index == i`: index equality alone would match every pod's `eth0`.
/// Pairs inside one namespace (no `link_netnsid`) are listed once. Returns the
/// pairs and the number of veths whose peer could not be resolved.
pub fn veth_pairs(
    snaps: &BTreeMap<String, Arc<NetnsSnapshot>>,
    host_nsids: &BTreeMap<String, i32>,
) -> (Vec<VethPair>, usize) {
    let mut pairs = Vec::new();
    let mut unresolved = 0;
    let host = snaps.get(layout::HOST_NETNS);
    let is_veth = |l: &LinkRecord| l.kind.as_deref() == Some("veth");
    for (id, snap) in snaps {
        for l in snap.links.iter().filter(|l| is_veth(l)) {
            let Some(peer_idx) = l.link_index else {
                unresolved += 1;
                continue;
            };
            match l.link_netnsid {
                None => {
                    // Both ends in this namespace: list once.
                    if let Some(p) = snap
                        .links
                        .iter()
                        .find(|p| p.index == peer_idx && is_veth(p))
                    {
                        if l.index < p.index {
                            pairs.push(pair(id, l, id, p));
                        }
                    } else {
                        unresolved += 1;
                    }
                }
                Some(_) if id == layout::HOST_NETNS => {
                    // Host side: reported from the other end's loop.
                }
                Some(_) => {
                    let matched = host.zip(host_nsids.get(id)).and_then(|(h, nsid)| {
                        h.links.iter().find(|p| {
                            p.index == peer_idx
                                && is_veth(p)
                                && p.link_netnsid == Some(*nsid)
                                && p.link_index == Some(l.index)
                        })
                    });
                    match matched {
                        Some(p) => pairs.push(pair(id, l, layout::HOST_NETNS, p)),
                        None => unresolved += 1,
                    }
                }
            }
        }
    }
    (pairs, unresolved)
}

fn pair(ns: &str, l: &LinkRecord, peer_ns: &str, p: &LinkRecord) -> VethPair {
    VethPair {
        netns: ns.to_string(),
        ifindex: l.index,
        ifname: l.name.clone(),
        peer_netns: peer_ns.to_string(),
        peer_ifindex: p.index,
        peer_ifname: p.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::native::{LinkRecord, NetnsSnapshot};

    use super::*;

    fn veth(index: u32, name: &str, peer: u32, nsid: Option<i32>) -> LinkRecord {
        LinkRecord {
            index,
            name: name.into(),
            kind: Some("veth".into()),
            link_index: Some(peer),
            link_netnsid: nsid,
            ..LinkRecord::default()
        }
    }

    #[test]
    fn veth_pairs_use_namespace_identity_not_index() {
        // Two pods, both with eth0 at index 2 pointing at host index 7 and 8.
        let mut snaps = BTreeMap::new();
        snaps.insert(
            "host".to_string(),
            Arc::new(NetnsSnapshot {
                netns: "host".into(),
                links: vec![veth(7, "vethA", 2, Some(0)), veth(8, "vethB", 2, Some(1))],
                ..NetnsSnapshot::default()
            }),
        );
        for (id, peer) in [("ns-1", 7), ("ns-2", 8)] {
            snaps.insert(
                id.to_string(),
                Arc::new(NetnsSnapshot {
                    netns: id.into(),
                    links: vec![veth(2, "eth0", peer, Some(0))],
                    ..NetnsSnapshot::default()
                }),
            );
        }
        let ids = BTreeMap::from([("ns-1".to_string(), 0), ("ns-2".to_string(), 1)]);
        let (pairs, unresolved) = veth_pairs(&snaps, &ids);
        assert_eq!(unresolved, 0);
        assert_eq!(pairs.len(), 2);
        let a = pairs.iter().find(|p| p.netns == "ns-1").unwrap();
        assert_eq!((a.peer_ifname.as_str(), a.peer_ifindex), ("vethA", 7));
        // Swapped nsids must not produce a match.
        let swapped = BTreeMap::from([("ns-1".to_string(), 1), ("ns-2".to_string(), 0)]);
        let (pairs, unresolved) = veth_pairs(&snaps, &swapped);
        assert!(pairs.is_empty());
        assert_eq!(unresolved, 2);
    }
}
