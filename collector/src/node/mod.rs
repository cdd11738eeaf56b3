//! Node-level facts: privileges, the sysctls the analysis needs, uname, `ip
//! rule`/`ip neigh`, bridge-port hairpin modes, tool versions and the kernel log.
//!
//! The kernel log is read from `/dev/kmsg` opened `O_NONBLOCK` (stop at
//! `EAGAIN`, so it never waits for new messages), rendered like `dmesg`
//! (`[seconds.micros] message`); `dmesg` is the fallback. Only the last
//! [`KERNEL_LOG_TAIL`] lines plus every networking line are kept.
//!
//! Absent sysctls (for example `net.bridge.*` when `br_netfilter` is not
//! loaded) are left out of the JSON and listed in the record's `absent`
//! attribute; the collector never loads a module to make them appear.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use netsnap_bundle::native::{BridgePort, BridgePorts, Privileges, ToolVersions};
use netsnap_bundle::{ArtifactSource, ArtifactSpec, ArtifactStatus, Completion, layout};
use regex::Regex;

use crate::step::{BoxFuture, RunContext, Step, StepError, Tally};
use crate::sys::exec::{Captured, Limits};
use crate::sys::fileio::{RootDir, read_small, record_read_error, run_bounded_async};

/// Lines kept from the end of the kernel log (networking lines are kept regardless).
pub const KERNEL_LOG_TAIL: usize = 2000;
/// Cap on networking lines kept from before the tail.
pub const KERNEL_LOG_NET_MAX: usize = 10_000;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Parses the `CapEff:` hex mask of `/proc/<pid>/status`.
pub fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Works out the collector's privileges and what they will cost.
pub fn privileges(status: &str, euid: u32) -> Privileges {
    let caps = cap_eff(status).unwrap_or(0);
    let cap_net_admin = caps & (1 << CAP_NET_ADMIN) != 0;
    let cap_sys_admin = caps & (1 << CAP_SYS_ADMIN) != 0;
    let mut consequences = Vec::new();
    if euid != 0 {
        consequences.push(
            "not root: /dev/kmsg, some /proc and /sys files and other processes' namespaces may be unreadable".into(),
        );
    }
    if !cap_sys_admin {
        consequences.push(
            "no CAP_SYS_ADMIN: cannot enter other network namespaces (setns), only the host namespace is read".into(),
        );
    }
    if !cap_net_admin {
        consequences.push(
            "no CAP_NET_ADMIN: iptables-save, nft, conntrack and ipvsadm will fail or show nothing"
                .into(),
        );
    }
    Privileges {
        euid,
        cap_net_admin,
        cap_sys_admin,
        consequences,
    }
}

/// Writes `node/privileges.json` and prints one line on stderr when privileges are missing.
pub fn check_privileges(ctx: &RunContext) {
    let status = read_small(Path::new("/proc/self/status")).unwrap_or_default();
    let p = privileges(&status, nix::unistd::geteuid().as_raw());
    if !p.consequences.is_empty() {
        eprintln!(
            "netsnap-collect: warning: missing privileges, collecting what is possible: {}",
            p.consequences.join("; ")
        );
        ctx.note(format!("missing privileges: {}", p.consequences.join("; ")));
    }
    let spec = ArtifactSpec::native(layout::node::PRIVILEGES, ArtifactSource::File);
    if let Err(e) = ctx.writer.add_json(spec, &p, Duration::ZERO) {
        ctx.note(format!("{}: {e}", layout::node::PRIVILEGES));
    }
}

/// Node sysctls the analysis needs (dotted keys), excluding per-interface ones.
pub const NODE_SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.default.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv6.neigh.default.gc_thresh1",
    "net.ipv6.neigh.default.gc_thresh2",
    "net.ipv6.neigh.default.gc_thresh3",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_buckets",
    "net.nf_conntrack_max",
    "net.core.somaxconn",
    "net.ipv4.tcp_tw_reuse",
    "kernel.pid_max",
    "fs.file-max",
];

/// Reads the node sysctls under the node's `/proc/sys`: (present values, absent keys).
pub fn node_sysctls(root: &RootDir) -> (BTreeMap<String, String>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut absent = Vec::new();
    for k in NODE_SYSCTLS {
        match sysctl_in(root, k) {
            Some(v) => {
                map.insert((*k).to_string(), v);
            }
            None => absent.push((*k).to_string()),
        }
    }
    // Per interface: rp_filter and route_localnet of every interface.
    if let Ok(entries) = root.read_dir("/proc/sys/net/ipv4/conf") {
        for (ifname, is_dir, _) in entries {
            if !is_dir || ifname == "all" || ifname == "default" {
                continue;
            }
            for key in ["rp_filter", "route_localnet", "forwarding"] {
                if let Some(v) = root.read_small(&format!("/proc/sys/net/ipv4/conf/{ifname}/{key}"))
                {
                    map.insert(format!("net.ipv4.conf.{ifname}.{key}"), v);
                }
            }
        }
    }
    (map, absent)
}

/// One sysctl by dotted key under the node's `/proc/sys`.
fn sysctl_in(root: &RootDir, key: &str) -> Option<String> {
    let rel = crate::netlink::sysctl_rel_path(key);
    root.read_small(&format!("/proc/sys/{}", rel.display()))
        .map(|v| v.replace('\t', " "))
}

/// Bridge ports and hairpin modes from the node's `/sys/class/net`.
pub fn bridge_ports(root: &RootDir) -> BridgePorts {
    let mut ports = Vec::new();
    if let Ok(entries) = root.read_dir("/sys/class/net") {
        for (port, _, _) in entries {
            let brport = format!("/sys/class/net/{port}/brport");
            if !root.is_dir(&brport) {
                continue;
            }
            // `brport/bridge` links to the bridge's device directory, whose uevent names it.
            let bridge = root
                .read_small(&format!("{brport}/bridge/uevent"))
                .and_then(|u| {
                    u.lines()
                        .find_map(|l| l.strip_prefix("INTERFACE="))
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let hairpin = root
                .read_small(&format!("{brport}/hairpin_mode"))
                .map(|v| v == "1");
            ports.push(BridgePort {
                bridge,
                port,
                hairpin,
            });
        }
    }
    ports.sort_by(|a, b| (&a.bridge, &a.port).cmp(&(&b.bridge, &b.port)));
    BridgePorts { ports }
}

/// The node sysctls (`node/sysctls.json`), in phase `Derive`: `/proc/sys/net`
/// dentries are per namespace, so reading them while namespace threads read
/// theirs would thrash the dentry cache; afterwards it costs milliseconds. It
/// runs even when the run was stopped (no commands, bounded work).
#[derive(Debug, Clone, Copy)]
pub struct NodeSysctlsStep;

impl Step for NodeSysctlsStep {
    fn name(&self) -> &'static str {
        "node-sysctls"
    }

    fn phase(&self) -> crate::step::Phase {
        crate::step::Phase::Derive
    }

    fn runs_when_stopped(&self) -> bool {
        true
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let start = Instant::now();
            let host = ctx.host.clone();
            // Its own thread, abandoned at the timeout: a hung read never holds the run.
            // Not abandoned on a stop: this step runs after one, on purpose.
            let (map, absent) =
                run_bounded_async("node sysctls", ctx.options.timeout, None, move || {
                    Ok(node_sysctls(&RootDir::host(&host)?))
                })
                .await
                .map_err(|e| StepError::Other(e.to_string()))?;
            let mut spec = ArtifactSpec::native(layout::node::SYSCTLS, ArtifactSource::File);
            if !absent.is_empty() {
                spec = spec.with_attribute("absent", absent.join(","));
            }
            tally.add_result(ctx.writer.add_json(spec, &map, start.elapsed()));
            Ok(tally)
        })
    }
}

/// uname, `ip rule`, `ip -6 rule`, `ip neigh`, bridge ports.
#[derive(Debug, Clone, Copy)]
pub struct NodeStep;

impl Step for NodeStep {
    fn name(&self) -> &'static str {
        "node"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let w = &ctx.writer;
            let host = ctx.host.clone();
            let spec = ArtifactSpec::native(layout::node::BRIDGE_PORTS, ArtifactSource::File);
            match run_bounded_async(
                "/sys/class/net",
                ctx.options.timeout,
                &ctx.cancel,
                move || Ok(bridge_ports(&RootDir::host(&host)?)),
            )
            .await
            {
                Ok(ports) => tally.add_result(w.add_json(spec, &ports, Duration::ZERO)),
                Err(e) => tally.add_result(record_read_error(w, spec, &e, Duration::ZERO)),
            }

            let c = layout::content::IP_RULE;
            let runs: [(&str, &str, &[&str]); 3] = [
                (layout::node::IP_RULE, c, &["ip", "rule", "show"]),
                (layout::node::IP6_RULE, c, &["ip", "-6", "rule", "show"]),
                (
                    layout::node::IP_NEIGH,
                    layout::content::IP_NEIGH,
                    &["ip", "neigh", "show"],
                ),
            ];
            let futs = runs.iter().map(|(path, content, argv)| {
                ctx.exec.to_artifact(
                    w,
                    ArtifactSpec::raw_command(*path, content, &[]),
                    argv,
                    Limits::default(),
                )
            });
            for r in futures::future::join_all(futs).await {
                tally.add(r?.record());
            }
            let uname_spec =
                ArtifactSpec::raw_command(layout::node::UNAME, layout::content::FILE, &[]);
            if ctx.exec.resolve("uname").is_some() {
                let r = ctx
                    .exec
                    .to_artifact(w, uname_spec, &["uname", "-a"], Limits::default())
                    .await?;
                tally.add(r.record());
            } else {
                // Same fields `uname -a` prints, from uname(2).
                let text = nix::sys::utsname::uname()
                    .map(|u| {
                        format!(
                            "{} {} {} {} {}\n",
                            u.sysname().to_string_lossy(),
                            u.nodename().to_string_lossy(),
                            u.release().to_string_lossy(),
                            u.version().to_string_lossy(),
                            u.machine().to_string_lossy()
                        )
                    })
                    .unwrap_or_default();
                let mut spec = uname_spec.with_attribute("source", "uname(2)");
                spec.command = None;
                tally.add_result(w.add_bytes(spec, text.as_bytes(), Completion::default()));
            }
            Ok(tally)
        })
    }
}

/// Tool versions, first line each (`node/tool-versions.json`).
#[derive(Debug, Clone, Copy)]
pub struct ToolVersionsStep;

impl Step for ToolVersionsStep {
    fn name(&self) -> &'static str {
        "tool-versions"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let start = Instant::now();
            let ipvs = ctx.host.path("/proc/net/ip_vs").exists();
            let tools: [(&str, &[&str]); 9] = [
                ("iptables", &["iptables", "-V"]),
                ("ip6tables", &["ip6tables", "-V"]),
                ("iptables-legacy", &["iptables-legacy", "-V"]),
                ("iptables-nft", &["iptables-nft", "-V"]),
                ("nft", &["nft", "-v"]),
                ("ipvsadm", &["ipvsadm", "--version"]),
                ("conntrack", &["conntrack", "--version"]),
                ("ip", &["ip", "-V"]),
                ("ipset", &["ipset", "version"]),
            ];
            let futs = tools.iter().map(|(name, argv)| {
                let ctx = ctx.clone();
                async move {
                    // ipvsadm loads ip_vs on start when IPVS is absent: do not run it then.
                    if *name == "ipvsadm" && !ipvs {
                        let v = ctx
                            .exec
                            .resolve("ipvsadm")
                            .map(|_| "installed (not run: kernel has no IPVS)".to_string());
                        return (name.to_string(), v);
                    }
                    let v = match ctx.exec.capture(argv, 4096).await {
                        Captured::Missing => None,
                        Captured::Output(out, report) => {
                            let text = if out.is_empty() {
                                report.stderr.clone()
                            } else {
                                out
                            };
                            let line = String::from_utf8_lossy(&text)
                                .lines()
                                .find(|l| !l.trim().is_empty())
                                .unwrap_or("")
                                .trim()
                                .to_string();
                            Some(match report.error() {
                                Some(e) if line.is_empty() => format!("(no version: {e})"),
                                _ => line,
                            })
                        }
                    };
                    (name.to_string(), v)
                }
            });
            let versions = ToolVersions {
                tools: futures::future::join_all(futs).await.into_iter().collect(),
            };
            let mut tally = Tally::default();
            tally.add_result(ctx.writer.add_json(
                ArtifactSpec::native(layout::node::TOOL_VERSIONS, ArtifactSource::Command),
                &versions,
                start.elapsed(),
            ));
            Ok(tally)
        })
    }
}

fn net_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)conntrack|table full|dropping packet|neighbou?r|martian|\barp\b|veth|bridge|br_netfilter|\bcni|flannel|calico|cilium|vxlan|geneve|ip_?vs|iptables|ip6tables|nf_tables|nftables|netfilter|nfnetlink|\bxt_|netdev|link is (up|down)|\b(eth|ens|enp|eno|bond|wlan)\d|\btcp:|\budp:|dst cache|rtnl|\bsocket\b|\bdropped\b|mtu",
        )
        .ok()
    })
    .as_ref()
}

/// True for kernel log lines about networking.
pub fn is_network_line(line: &str) -> bool {
    net_re().is_some_and(|re| re.is_match(line))
}

/// Keeps the last `tail` lines plus every networking line before them (capped), in order.
#[derive(Debug)]
pub struct LogFilter {
    tail: VecDeque<String>,
    tail_max: usize,
    net: Vec<String>,
    /// Lines seen.
    pub total: u64,
    /// Networking lines dropped at the cap.
    pub net_dropped: u64,
}

impl LogFilter {
    /// A filter keeping `tail_max` trailing lines.
    pub fn new(tail_max: usize) -> Self {
        LogFilter {
            tail: VecDeque::new(),
            tail_max,
            net: Vec::new(),
            total: 0,
            net_dropped: 0,
        }
    }

    /// Feeds one line.
    pub fn push(&mut self, line: String) {
        self.total += 1;
        self.tail.push_back(line);
        if self.tail.len() > self.tail_max
            && let Some(old) = self.tail.pop_front()
            && is_network_line(&old)
        {
            if self.net.len() < KERNEL_LOG_NET_MAX {
                self.net.push(old);
            } else {
                self.net_dropped += 1;
            }
        }
    }

    /// The kept lines, oldest first, newline-terminated.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in self.net.iter().chain(self.tail.iter()) {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// Renders one `/dev/kmsg` record like `dmesg`: `[    5.123456] message`.
pub fn render_kmsg(record: &str) -> Option<String> {
    let (head, rest) = record.split_once(';')?;
    let msg = rest.lines().next().unwrap_or("");
    let ts: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some(format!(
        "[{:>5}.{:06}] {}",
        ts / 1_000_000,
        ts % 1_000_000,
        msg
    ))
}

/// Reads all of `/dev/kmsg` without blocking.
pub fn read_kmsg(path: &Path, filter: &mut LogFilter) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = render_kmsg(&rec) {
                    filter.push(line);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            // EPIPE: records were overwritten while we read; the next read continues.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Kernel log: `/dev/kmsg` (non-blocking), else `dmesg`.
#[derive(Debug, Clone, Copy)]
pub struct KernelLogStep;

impl Step for KernelLogStep {
    fn name(&self) -> &'static str {
        "kernel-log"
    }

    fn run(self: Arc<Self>, ctx: Arc<RunContext>) -> BoxFuture<Result<Tally, StepError>> {
        Box::pin(async move {
            let start = Instant::now();
            let mut tally = Tally::default();
            // Its own thread, abandoned at the timeout (then `dmesg` is tried).
            let kmsg = run_bounded_async("/dev/kmsg", ctx.options.timeout, &ctx.cancel, || {
                let mut f = LogFilter::new(KERNEL_LOG_TAIL);
                read_kmsg(Path::new("/dev/kmsg"), &mut f)
                    .map(|_| f)
                    .map_err(|e| crate::sys::fileio::ReadError::Io {
                        path: "/dev/kmsg".into(),
                        err: e.to_string(),
                    })
            })
            .await;
            let spec =
                ArtifactSpec::raw_file(layout::node::KERNEL_LOG, layout::content::KERNEL_LOG);
            let (filter, spec) = match kmsg {
                Ok(f) => (f, spec.with_attribute("source", "/dev/kmsg")),
                Err(kerr) => {
                    let mut spec = ArtifactSpec::raw_command(
                        layout::node::KERNEL_LOG,
                        layout::content::KERNEL_LOG,
                        &["dmesg"],
                    )
                    .with_attribute("source", "dmesg")
                    .with_attribute("kmsg_error", kerr.to_string());
                    // Streamed line by line through the filter: the ring buffer can be large.
                    let mut f = LogFilter::new(KERNEL_LOG_TAIL);
                    let mut pending: Vec<u8> = Vec::new();
                    let report = ctx
                        .exec
                        .stream(&["dmesg"], |chunk| {
                            pending.extend_from_slice(chunk);
                            while let Some(pos) = memchr::memchr(b'\n', &pending) {
                                let line: Vec<u8> = pending.drain(..=pos).collect();
                                f.push(String::from_utf8_lossy(&line[..pos]).into_owned());
                            }
                        })
                        .await;
                    if !pending.is_empty() {
                        f.push(String::from_utf8_lossy(&pending).into_owned());
                    }
                    match report {
                        Some(r) if r.error().is_none() => {
                            spec.source = ArtifactSource::Command;
                            (f, spec)
                        }
                        other => {
                            let why = match other {
                                None => "dmesg not installed".to_string(),
                                Some(r) => r.error().unwrap_or_default(),
                            };
                            tally.add_result(ctx.writer.record_missing(
                                spec,
                                ArtifactStatus::Failed,
                                format!("/dev/kmsg: {kerr}; dmesg: {why}"),
                                Completion::default(),
                            ));
                            return Ok(tally);
                        }
                    }
                }
            };
            let spec = spec
                .with_attribute("total_lines", filter.total.to_string())
                .with_attribute(
                    "kept",
                    format!("last {KERNEL_LOG_TAIL} lines and every networking line before them"),
                );
            let text = filter.render();
            tally.add_result(ctx.writer.add_bytes(
                spec,
                text.as_bytes(),
                Completion {
                    duration: start.elapsed(),
                    ..Completion::default()
                },
            ));
            Ok(tally)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_from_status() {
        let st = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        let p = privileges(st, 0);
        assert!(p.cap_net_admin && p.cap_sys_admin);
        assert!(p.consequences.is_empty());
        let p = privileges("CapEff:\t0000000000001000\n", 1000);
        assert!(p.cap_net_admin);
        assert!(!p.cap_sys_admin);
        assert_eq!(p.consequences.len(), 2);
    }

    #[test]
    fn kmsg_rendering() {
        assert_eq!(
            render_kmsg(
                "6,1234,5123456,-;nf_conntrack: table full, dropping packet\n SUBSYSTEM=x\n"
            )
            .as_deref(),
            Some("[    5.123456] nf_conntrack: table full, dropping packet")
        );
        assert_eq!(render_kmsg("garbage"), None);
    }

    #[test]
    fn filter_keeps_tail_and_network_lines() {
        let mut f = LogFilter::new(2);
        f.push("boot a".into());
        f.push("IPv4: martian source 10.0.0.1 from 10.0.0.2".into());
        f.push("usb 1-1: new device".into());
        f.push("last one".into());
        f.push("really last".into());
        let out = f.render();
        assert_eq!(
            out,
            "IPv4: martian source 10.0.0.1 from 10.0.0.2\nlast one\nreally last\n"
        );
        assert_eq!(f.total, 5);
    }
}
