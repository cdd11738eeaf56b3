//! Loading view data from a bundle: required vs optional artifacts, JSON and JSON
//! Lines decoding with line numbers, and the one-line "why is it missing" text.

use netsnap_bundle::native::{NetnsIndex, NetnsSnapshot, PodCorrelation, VethPair};
use netsnap_bundle::{Bundle, layout};
use serde::de::DeserializeOwned;

use super::InspectError;
use crate::parse::ip::{self, Links, Routes};

/// Why `path` has no content, from its manifest record (one line).
pub fn missing_reason(bundle: &Bundle, path: &str) -> String {
    match bundle.record(path) {
        Some(r) => {
            let status = format!("{:?}", r.status).to_lowercase();
            let why = r
                .error
                .as_deref()
                .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "no reason recorded".into());
            format!("{path} {status}: {why}")
        }
        None => format!("{path} was not collected (the manifest has no record of it)"),
    }
}

/// The no-data line of a view.
pub fn no_data(view: &str, bundle: &Bundle, path: &str) -> String {
    format!("no data for view {view}: {}", missing_reason(bundle, path))
}

/// Reads an artifact's text; Ok(None) when the bundle has no content for it.
pub fn text(bundle: &Bundle, path: &str) -> Result<Option<String>, InspectError> {
    let read_err = |source| InspectError::Read {
        path: path.to_string(),
        source,
    };
    match bundle.open_artifact(path) {
        None => Ok(None),
        Some(Ok(f)) => {
            let (text, cuts) = crate::lines::read_text_capped(f).map_err(read_err)?;
            if let Some(note) = crate::lines::Cut::note(path, &cuts) {
                tracing::warn!("{note}");
            }
            Ok(Some(text))
        }
        Some(Err(source)) => Err(read_err(source)),
    }
}

/// Decodes a native JSON artifact; Ok(None) when absent.
pub fn json<T: DeserializeOwned>(
    bundle: &Bundle,
    path: &str,
    what: &'static str,
) -> Result<Option<T>, InspectError> {
    // A JSON document is not line-oriented: read whole (the unpacked-size cap bounds it).
    let t = match bundle.read_text(path) {
        None => return Ok(None),
        Some(Ok(t)) => t,
        Some(Err(source)) => {
            return Err(InspectError::Read {
                path: path.to_string(),
                source,
            });
        }
    };
    serde_json::from_str(&t)
        .map(Some)
        .map_err(|e| InspectError::Json {
            path: path.to_string(),
            line: e.line(),
            what,
            message: e.to_string(),
        })
}

/// Decodes a native JSON Lines artifact (blank lines skipped); Ok(None) when absent.
pub fn jsonl<T: DeserializeOwned>(
    bundle: &Bundle,
    path: &str,
    what: &'static str,
) -> Result<Option<Vec<T>>, InspectError> {
    let Some(t) = text(bundle, path)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (i, line) in t.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| InspectError::Json {
            path: path.to_string(),
            line: i + 1,
            what,
            message: e.to_string(),
        })?);
    }
    Ok(Some(out))
}

/// The namespace index, or None.
pub fn netns_index(bundle: &Bundle) -> Result<Option<NetnsIndex>, InspectError> {
    json(bundle, layout::NETNS_INDEX, "namespace index")
}

/// Pod correlation, or None.
pub fn pod_correlation(bundle: &Bundle) -> Result<Option<PodCorrelation>, InspectError> {
    json(bundle, layout::correlation::PODS, "pod correlation")
}

/// Veth pairs: the collector's correlation, else recomputed from the namespaces' links
/// (`loaded`: every namespace's state, when the caller already has it).
pub fn veth_pairs(
    bundle: &Bundle,
    loaded: Option<&[NetnsState]>,
) -> Result<Vec<VethPair>, InspectError> {
    if let Some(p) = json(bundle, layout::correlation::VETH_PAIRS, "veth pair list")? {
        return Ok(p);
    }
    let index = netns_index(bundle)?;
    match loaded {
        Some(states) => Ok(derive_veth_pairs(states, index.as_ref())),
        None => Ok(derive_veth_pairs(
            &netns_states(bundle, None)?,
            index.as_ref(),
        )),
    }
}

/// Recomputes veth pairs the way the tutorial does by hand: the pod-side `eth0@ifN`
/// is host interface N, whose own `@ifM` must point back. When the index knows the
/// host's id for the namespace (`host_nsid`), the host end's `link-netnsid` must match
/// too; a host interface claimed by two namespaces is ambiguous and left out.
pub fn derive_veth_pairs(states: &[NetnsState], index: Option<&NetnsIndex>) -> Vec<VethPair> {
    let Some(host) = states.iter().find(|s| s.id == layout::HOST_NETNS) else {
        return Vec::new();
    };
    let mut claims: Vec<VethPair> = Vec::new();
    for s in states.iter().filter(|s| s.id != layout::HOST_NETNS) {
        let host_nsid = index
            .and_then(|i| i.namespaces.iter().find(|n| n.id == s.id))
            .and_then(|n| n.host_nsid);
        for l in s.links.links.iter().filter(|l| l.is_veth()) {
            let Some(peer) = l.peer_index else { continue };
            let Some(h) = host.links.by_index(peer) else {
                continue;
            };
            if h.peer_index != Some(l.index) || host_nsid.is_some_and(|n| h.link_netnsid != Some(n))
            {
                continue;
            }
            claims.push(VethPair {
                netns: s.id.clone(),
                ifindex: l.index,
                ifname: l.name.clone(),
                peer_netns: layout::HOST_NETNS.to_string(),
                peer_ifindex: h.index,
                peer_ifname: h.name.clone(),
            });
        }
    }
    let unique = |p: &VethPair| {
        claims
            .iter()
            .filter(|q| q.peer_ifindex == p.peer_ifindex)
            .count()
            == 1
    };
    claims.iter().filter(|p| unique(p)).cloned().collect()
}

/// Namespace ids the bundle knows, host first: from the index, else from artifact paths.
pub fn netns_ids(bundle: &Bundle) -> Result<Vec<String>, InspectError> {
    let mut ids: Vec<String> = match netns_index(bundle)? {
        Some(idx) => idx.namespaces.into_iter().map(|n| n.id).collect(),
        None => Vec::new(),
    };
    for r in bundle.records_under("netns/") {
        if let Some(id) = r
            .path
            .strip_prefix("netns/")
            .and_then(|p| p.split_once('/'))
        {
            let id = id.0.to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids.sort_by_key(|id| (id != layout::HOST_NETNS, id.clone()));
    Ok(ids)
}

/// One namespace's interfaces and routes, from the native snapshot or else the raw `ip` captures.
pub struct NetnsState {
    /// Namespace id.
    pub id: String,
    /// Interfaces with addresses.
    pub links: Links,
    /// Routes (None when neither source has them).
    pub routes: Option<Routes>,
}

/// Loads every namespace's state (optionally only `only`). Namespaces without data are skipped.
pub fn netns_states(bundle: &Bundle, only: Option<&str>) -> Result<Vec<NetnsState>, InspectError> {
    let mut out = Vec::new();
    for id in netns_ids(bundle)? {
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let native_path = layout::netns_path(&id, layout::netns::NETLINK);
        if let Some(snap) = json::<NetnsSnapshot>(bundle, &native_path, "netlink snapshot")? {
            let (links, routes) = ip::from_native(&snap);
            out.push(NetnsState {
                id,
                links,
                routes: Some(routes),
            });
            continue;
        }
        let addr_path = layout::netns_path(&id, layout::netns::IP_ADDR);
        let route_path = layout::netns_path(&id, layout::netns::IP_ROUTE);
        let links = text(bundle, &addr_path)?.map(|t| ip::parse_addr(&t));
        let routes = text(bundle, &route_path)?.map(|t| ip::parse_routes(&t));
        // Views show what was understood; say on stderr what was not.
        for (path, unparsed) in [
            (&addr_path, links.as_ref().map(|l| &l.unparsed)),
            (&route_path, routes.as_ref().map(|r| &r.unparsed)),
        ] {
            if let Some(first) = unparsed.and_then(|u| u.first()) {
                tracing::warn!(
                    "{path}: {} line(s) not understood, first at line {}: {}",
                    unparsed.map_or(0, Vec::len),
                    first.line,
                    first.reason
                );
            }
        }
        if links.is_some() || routes.is_some() {
            out.push(NetnsState {
                id,
                links: links.unwrap_or_default(),
                routes,
            });
        }
    }
    Ok(out)
}
