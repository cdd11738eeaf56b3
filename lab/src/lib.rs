//! Lab harness: builds isolated fake Kubernetes nodes out of real kernel objects
//! (network, PID, mount and UTS namespaces, veths, bridges, VXLAN, iptables in
//! both backends, conntrack entries, a real dnsmasq behind a kube-proxy DNAT).
//!
//! Start every lab test with [`require_lab`]: it returns `None` (after printing
//! why) on machines that cannot build a node, and panics instead under
//! `NETSNAP_REQUIRE_LAB=1`. Each [`LabNode`] is fully isolated (its own
//! namespaces, random names), so tests may run in parallel; a global limit
//! (`NETSNAP_LAB_PARALLEL`, default 3) bounds how many exist at once. Dropping
//! a node removes everything it created, also when the test panics.
//! See `docs/lab.md`.

#![cfg(target_os = "linux")]
// Spawning real programs (unshare, nsenter, ip, iptables-restore, dnsmasq, the collector)
// with deadlines is this crate's whole job; the workspace rule routing process spawns
// through netsnap_collector::exec is for the collector, not for the lab around it.
#![allow(clippy::disallowed_methods)]

pub mod api;
pub mod apiserver;
pub mod collect;
pub mod conntrack;
pub mod guard;
pub mod kubeproxy;
pub mod node;
pub mod util;

pub use api::ApiObjects;
pub use apiserver::LabApiServer;
pub use collect::{CollectOptions, CollectRun, ToolDir, analyzer_bin, collector_bin, target_dir};
pub use conntrack::CtEntry;
pub use guard::{LabGuard, lab_required, require_lab};
pub use kubeproxy::{Endpoints, LabPort, LabService, Proto};
pub use node::{
    API_VIP, Backend, CLUSTER_CIDR, DNS_VIP, GhostPod, LabNode, LabNodeBuilder, LabPod,
    LeakedNetns, NetStyle, OrphanVeth, PeerNode, PodSpec, VXLAN_MTU,
};
pub use util::{CmdOutput, LabError, LabResult};
