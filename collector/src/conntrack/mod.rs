//! conntrack: the table (streamed straight into the bundle), statistics, two
//! samples of `/proc/net/stat/nf_conntrack`, and the conntrack sysctls.
//!
//! Sources, recorded in each artifact's `source` attribute: `conntrack -L -o
//! extended` when the program exists, else `/proc/net/nf_conntrack` (a kernel
//! built without `NF_CONNTRACK_PROCFS` has neither: the record says so).
//! Nothing here runs when `nf_conntrack` is not loaded: querying it could make
//! the kernel auto-load modules, and the collector never changes the node.

pub mod step;

use std::collections::BTreeMap;

use netsnap_bundle::{ArtifactSpec, layout};

/// The `/proc` fallback copy of the table gets this many `--timeout`s, like the
/// program's dump: it is the one output that scales with traffic.
pub const TABLE_TIMEOUT_FACTOR: u32 = crate::sys::exec::DUMP_TIMEOUT_FACTOR;

fn table_spec() -> ArtifactSpec {
    ArtifactSpec::raw_command(
        layout::conntrack::TABLE,
        layout::content::CONNTRACK_LIST,
        &[],
    )
    .with_attribute("source", "conntrack-program")
}

fn proc_table_spec() -> ArtifactSpec {
    ArtifactSpec::raw_file(
        layout::conntrack::PROC_TABLE,
        layout::content::PROC_NF_CONNTRACK,
    )
    .with_attribute("source", "procfs")
}

/// Every `nf_conntrack*` sysctl (count, max, buckets, timeouts, …) under the
/// node's `/proc/sys/net`, keyed `net.netfilter.<name>`, plus `net.nf_conntrack_max`.
pub fn read_conntrack_sysctls(root: &crate::sys::fileio::RootDir) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Ok(entries) = root.read_dir("/proc/sys/net/netfilter") {
        for (name, _, is_file) in entries {
            if !is_file || !name.starts_with("nf_conntrack") {
                continue;
            }
            if let Some(v) = root.read_small(&format!("/proc/sys/net/netfilter/{name}")) {
                map.insert(format!("net.netfilter.{name}"), v.replace('\t', " "));
            }
        }
    }
    if let Some(v) = root.read_small("/proc/sys/net/nf_conntrack_max") {
        map.insert("net.nf_conntrack_max".into(), v);
    }
    map
}
