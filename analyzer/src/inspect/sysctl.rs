//! `sysctl`: the sysctls the collector read (`node/sysctls.json`,
//! `conntrack/sysctls.json`, `netns/<id>/sysctls.json`), like `sysctl -a`.

use std::collections::BTreeMap;

use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::load::{self, no_data};
use super::table::Table;
use super::{InspectArgs, InspectError, Outcome, emit};

/// One sysctl.
#[derive(Debug, Serialize)]
pub struct SysctlRow {
    /// Where it was read: `node`, `conntrack`, or a namespace id.
    pub source: String,
    /// Dotted key (`net.netfilter.nf_conntrack_max`).
    pub key: String,
    /// Value as read.
    pub value: String,
}

/// `inspect sysctl`.
pub fn sysctl(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let mut sources: Vec<(String, String)> = vec![
        ("node".into(), layout::node::SYSCTLS.into()),
        ("conntrack".into(), layout::conntrack::SYSCTLS.into()),
    ];
    for id in load::netns_ids(bundle)? {
        sources.push((id.clone(), layout::netns_path(&id, layout::netns::SYSCTLS)));
    }
    let mut rows = Vec::new();
    let mut any = false;
    for (source, path) in sources {
        if args.netns.as_deref().is_some_and(|n| n != source) {
            continue;
        }
        let Some(map) = load::json::<BTreeMap<String, String>>(bundle, &path, "sysctl map")? else {
            continue;
        };
        any = true;
        rows.extend(map.into_iter().map(|(key, value)| SysctlRow {
            source: source.clone(),
            key: key.replace('/', "."),
            value,
        }));
    }
    if !any {
        return Ok(Outcome::NoData(no_data(
            "sysctl",
            bundle,
            layout::node::SYSCTLS,
        )));
    }
    emit(args, &rows, |rows| {
        let mut t = Table::new(&["SOURCE", "KEY", "VALUE"]);
        for r in rows {
            t.row(vec![r.source.clone(), r.key.clone(), r.value.clone()]);
        }
        t.render()
    })
}
