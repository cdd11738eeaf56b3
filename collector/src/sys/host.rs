//! The host the collector runs on, as the manifest records it: its identity
//! (`uname`) and the collector's own resource usage (`getrusage`).

use netsnap_bundle::{NodeInfo, ResourceUsage};

use crate::options::Options;

/// Node identity from uname, with the Kubernetes node name when given.
pub fn node_info(options: &Options) -> NodeInfo {
    let (hostname, release, machine) = match nix::sys::utsname::uname() {
        Ok(u) => (
            u.nodename().to_string_lossy().into_owned(),
            u.release().to_string_lossy().into_owned(),
            Some(u.machine().to_string_lossy().into_owned()),
        ),
        Err(_) => (String::new(), String::new(), None),
    };
    NodeInfo {
        name: options.node_name.clone(),
        hostname,
        kernel_release: release,
        machine,
    }
}

/// The collector's own and its children's `getrusage(2)` figures, taken just before the
/// manifest is written (`None` if the kernel refuses, which it does not on Linux).
pub fn resource_usage() -> Option<ResourceUsage> {
    use nix::sys::resource::{UsageWho, getrusage};
    let me = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let children = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let ms = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
            + u64::try_from(t.tv_usec()).unwrap_or(0) / 1000
    };
    // Linux reports ru_maxrss in KiB.
    Some(ResourceUsage {
        peak_rss_kib: u64::try_from(me.max_rss()).unwrap_or(0),
        children_peak_rss_kib: u64::try_from(children.max_rss()).unwrap_or(0),
        user_cpu_ms: ms(me.user_time()),
        system_cpu_ms: ms(me.system_time()),
    })
}
