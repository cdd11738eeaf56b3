//! The registry: the one complete list of what a run collects, built from the
//! [`Options`]. The scheduler (`runner.rs`) runs whatever [`Plan`] it is given
//! and names no source; this is the only place that does.
//!
//! Adding a data source: a module with a `step.rs` implementing
//! [`crate::step::Step`], plus one line in [`all`].

use std::sync::Arc;

use netsnap_bundle::k8s::ApiScope;

use crate::options::Options;
use crate::runner::Plan;
use crate::step::Step;

/// Every step of a run with these options, in no particular order (steps of
/// one phase run concurrently).
///
/// `--api-scope cluster` is the API-only cluster pass: it reads nothing of the
/// node, so its list is the Kubernetes step alone.
pub fn all(options: &Options) -> Vec<Arc<dyn Step>> {
    let (kube, pods) = crate::kube::step::steps(options.kube.clone(), options.dns.clone());
    if options.kube.scope == ApiScope::Cluster {
        return vec![kube];
    }
    vec![
        Arc::new(crate::netns::step::DiscoverStep),
        Arc::new(crate::netlink::step::NetlinkStep),
        Arc::new(crate::ip_text::step::IpTextStep),
        Arc::new(crate::conntrack::step::ConntrackTableStep),
        Arc::new(crate::conntrack::step::ConntrackStatsStep),
        Arc::new(crate::iptables::step::IptablesStep),
        Arc::new(crate::ipvs::step::IpvsStep),
        Arc::new(crate::host_files::step::FilesStep),
        Arc::new(crate::node::step::NodeStep),
        Arc::new(crate::node::step::NodeSysctlsStep),
        Arc::new(crate::node::step::KernelLogStep),
        Arc::new(crate::node::step::ToolVersionsStep),
        kube,
        pods,
    ]
}

/// The run: [`all`] its steps, preceded on a node-local run by the privileges
/// check (`node/privileges.json` and a stderr warning before any progress line;
/// the cluster pass reads nothing of the node and has no check).
pub fn plan(options: &Options) -> Plan {
    let steps = all(options);
    let preflight: Vec<fn(&crate::step::RunContext)> = if options.kube.scope == ApiScope::Cluster {
        Vec::new()
    } else {
        vec![crate::node::check_privileges]
    };
    Plan { preflight, steps }
}
