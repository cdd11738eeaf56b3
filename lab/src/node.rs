//! An isolated fake Kubernetes node built from real kernel objects.
//!
//! Each [`LabNode`] is a holder process started by
//! `unshare --net --pid --mount --uts --fork --mount-proc --propagation private sleep infinity`:
//! PID 1 of a fresh PID namespace, inside a fresh network, mount and UTS
//! namespace. A `/proc` or `/run/netns` scan from inside sees only the lab:
//! `/proc` is remounted for the new PID namespace, `/run` is a private tmpfs
//! (so `ip netns add` inside the node is invisible to the host) and `/sys` is
//! the node netns's own sysfs (with the host's `/sys/fs/cgroup` bound back in);
//! `/etc` and `/var/lib` are copy-on-write overlays, so the node's CNI, IPAM and
//! kubelet files never touch the host's.
//! The node's `eth0` (172.18.0.10/24, default route via .1) is a veth whose
//! peer sits in an "outside" netns held by a harness process that is not in the
//! node's PID namespace, like a kind node's uplink (this kernel has no `dummy`).
//!
//! Pods are named network namespaces (`/run/netns/cni-<uuid>` inside the node)
//! each holding a `pause` process (a copy of `sleep` named `pause`, so its
//! `comm` says `pause`) that also has its own mount namespace with the pod's
//! `resolv.conf` bind-mounted on `/etc/resolv.conf`; when cgroup v2 is mounted,
//! it lives in a kubelet-style cgroup (`kubepods.slice/.../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`).
//!
//! Guarantees: every long-lived process is started by the harness and is a
//! descendant of the node's PID 1; dropping the node (also during a panic's
//! unwind) SIGKILLs that PID 1, so the kernel kills everything inside, waits
//! for the harness's own `nsenter`/`unshare` children, and removes the cgroup
//! directories it created. Nothing is changed in the host's network namespace.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::conntrack::{CtEntry, fill_lines};
use crate::guard::{LabGuard, NodeSlots, SlotPermit};
use crate::kubeproxy::{self, Endpoints, LabPort, LabService, Proto, ResolvedService};
use crate::util::{
    CmdOutput, LabError, LabResult, check, describe, rand_hex, rand_suffix, rand_uuid, run_timeout,
    shq,
};

/// Default deadline of a command run inside the node.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// The kube-dns Service VIP.
pub const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The `default/kubernetes` Service VIP.
pub const API_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Cluster (pod) CIDR of every lab.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Service CIDR of every lab.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// Cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// MTU of a flannel VXLAN overlay.
pub const VXLAN_MTU: u16 = 1450;

/// Serializes creation and removal of cgroups between parallel nodes, and remembers the
/// shared ancestors (`kubepods.slice`, ...) the harness itself created: the last node to go
/// removes them; ancestors that existed before (a real kubelet's) are never touched.
static CGROUP_LOCK: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Which iptables backend a ruleset is applied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// `iptables-legacy` (x_tables).
    Legacy,
    /// `iptables-nft` (nf_tables).
    Nft,
}

impl Backend {
    /// The backend's `iptables-restore`.
    pub fn restore(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-restore",
            Backend::Nft => "iptables-nft-restore",
        }
    }
    /// The backend's `iptables-save`.
    pub fn save(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-save",
            Backend::Nft => "iptables-nft-save",
        }
    }
    /// The backend's `iptables`.
    pub fn iptables(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy",
            Backend::Nft => "iptables-nft",
        }
    }
}

/// How pods are wired to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetStyle {
    /// flannel-like: host veths enslaved to a `cni0` bridge (hairpin on), pods in a /24;
    /// with `vxlan`, a `flannel.1` VXLAN device (MTU 1450) and a route to a peer node's subnet.
    Bridge {
        /// Also create `flannel.1` and `/run/flannel/subnet.env`.
        vxlan: bool,
    },
    /// calico-like: `cali<11 hex>` host veths without addresses, proxy ARP on, one /32 route
    /// per pod; pods use `169.254.1.1` as their gateway.
    Routed,
}

/// A pod to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
}

impl PodSpec {
    /// A pod with one `app=<app>` label.
    pub fn new(namespace: &str, name: &str, app: &str) -> PodSpec {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            labels: vec![("app".into(), app.into())],
        }
    }
}

/// A pod the harness built.
#[derive(Debug, Clone)]
pub struct LabPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// Name of its netns under the node's `/run/netns`.
    pub netns: String,
    /// Host-side veth in the node netns.
    pub host_veth: String,
    /// The pod-side interface (always `eth0`).
    pub pod_if: String,
    /// Pod-side MTU as built.
    pub mtu: u16,
    /// Sandbox (pause) container id, 64 hex.
    pub container_id: String,
    /// Host PID of the pause process.
    pub pause_pid: u32,
    /// PID of the pause process as seen inside the node.
    pub node_pid: u32,
    /// cgroup v2 path of the pause process (as `/proc/<pid>/cgroup` shows it), when cgroups were made.
    pub cgroup: Option<String>,
    /// Content of the pod's `/etc/resolv.conf`.
    pub resolv_conf: String,
}

/// A netns that holds a pod-CIDR address and a veth but no process (a pod the CNI failed to clean up).
#[derive(Debug, Clone)]
pub struct LeakedNetns {
    /// Name under the node's `/run/netns`.
    pub netns: String,
    /// Its pod-CIDR address.
    pub ip: Ipv4Addr,
    /// Host-side veth.
    pub host_veth: String,
}

/// A host veth whose peer lives in a netns that no process and no `/run/netns` name holds.
#[derive(Debug, Clone)]
pub struct OrphanVeth {
    /// Host-side veth name.
    pub host_veth: String,
    /// Address on the hidden peer.
    pub ip: Ipv4Addr,
}

/// A pod the API knows but that has no netns on the node.
#[derive(Debug, Clone)]
pub struct GhostPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Its (unused) pod IP.
    pub ip: Ipv4Addr,
}

struct DnsState {
    pod: usize,
    dnsmasq: Option<(Child, u32)>,
    cgroup_procs: Option<PathBuf>,
}

/// Builder of a [`LabNode`]; obtain with [`LabGuard::node`].
#[derive(Debug, Clone)]
pub struct LabNodeBuilder {
    style: NetStyle,
    pod_mtu: Option<u16>,
    pods: Vec<PodSpec>,
    dns: bool,
    services: Vec<LabService>,
    backend: Backend,
    cgroups: bool,
    subnet: u8,
    name: Option<String>,
    node_ip: Ipv4Addr,
    peer: Option<PeerNode>,
    kube_proxy_version: String,
}

/// The other node of a lab node's cluster: served by its API and routed to (see
/// [`LabNodeBuilder::peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode {
    /// Node name.
    pub name: String,
    /// Its pod subnet is `10.244.<subnet>.0/24`.
    pub subnet: u8,
    /// Its InternalIP (on the lab uplink subnet 172.18.0.0/24).
    pub ip: Ipv4Addr,
}

impl LabNodeBuilder {
    pub(crate) fn new(_guard: LabGuard) -> LabNodeBuilder {
        LabNodeBuilder {
            style: NetStyle::Bridge { vxlan: true },
            pod_mtu: None,
            pods: Vec::new(),
            dns: false,
            services: Vec::new(),
            backend: Backend::Nft,
            cgroups: true,
            subnet: 0,
            name: None,
            node_ip: Ipv4Addr::new(172, 18, 0, 10),
            peer: None,
            kube_proxy_version: "v1.34.1".into(),
        }
    }

    /// flannel-like bridge with `flannel.1` VXLAN (the default; pod MTU 1450).
    pub fn flannel(mut self) -> Self {
        self.style = NetStyle::Bridge { vxlan: true };
        self
    }
    /// Plain `cni0` bridge without overlay (pod MTU 1500).
    pub fn bridge(mut self) -> Self {
        self.style = NetStyle::Bridge { vxlan: false };
        self
    }
    /// calico-like routed veths (pod MTU 1450).
    pub fn routed(mut self) -> Self {
        self.style = NetStyle::Routed;
        self
    }
    /// Overrides the pod MTU (and `cni0`'s).
    pub fn pod_mtu(mut self, mtu: u16) -> Self {
        self.pod_mtu = Some(mtu);
        self
    }
    /// Adds `n` pods of a `default/web` Deployment (label `app=web`).
    pub fn pods(mut self, n: usize) -> Self {
        let hash = rand_suffix(10);
        for _ in 0..n {
            let name = format!("web-{hash}-{}", rand_suffix(5));
            self.pods.push(PodSpec::new("default", &name, "web"));
        }
        self
    }
    /// Adds one pod.
    pub fn pod(mut self, spec: PodSpec) -> Self {
        self.pods.push(spec);
        self
    }
    /// Adds a CoreDNS-like pod running real `dnsmasq` behind the kube-dns VIP 10.96.0.10.
    pub fn dns(mut self) -> Self {
        self.dns = true;
        self
    }
    /// Adds a Service (kube-proxy rules are generated for it).
    pub fn service(mut self, svc: LabService) -> Self {
        self.services.push(svc);
        self
    }
    /// Adds many Services (e.g. [`LabService::synthetic_set`]).
    pub fn services(mut self, svcs: Vec<LabService>) -> Self {
        self.services.extend(svcs);
        self
    }
    /// iptables backend of the kube-proxy rules (default nft).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// Whether to place pause processes in kubelet-style cgroups (default true when cgroup v2 exists).
    pub fn cgroups(mut self, on: bool) -> Self {
        self.cgroups = on;
        self
    }
    /// The node's pod subnet is `10.244.<subnet>.0/24` (default 0).
    pub fn subnet(mut self, subnet: u8) -> Self {
        self.subnet = subnet;
        self
    }

    /// The node's name (default `lab-<6 hex>`); two nodes of one lab cluster need to know
    /// each other's.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// The node's InternalIP on `eth0` (default 172.18.0.10).
    pub fn node_ip(mut self, ip: Ipv4Addr) -> Self {
        self.node_ip = ip;
        self
    }
    /// The other node of the cluster (default: `<name>-peer`, the next /24, 172.18.0.11, known
    /// to the API only). Two lab nodes built with each other as peers make a two-node
    /// cluster: both APIs list both nodes, each routes the other's pod subnet over
    /// `flannel.1` to the other's VTEP (or via its address), so their bundles analyzed
    /// together are one cluster.
    pub fn peer(mut self, peer: PeerNode) -> Self {
        self.peer = Some(peer);
        self
    }
    /// `status.nodeInfo.kubeProxyVersion` of this node's Node object (default v1.34.1).
    pub fn kube_proxy_version(mut self, version: &str) -> Self {
        self.kube_proxy_version = version.to_string();
        self
    }

    /// Builds the node. On error, whatever was built is torn down.
    pub fn build(self) -> LabResult<LabNode> {
        let total = self.pods.len() + usize::from(self.dns);
        if total > 240 {
            return Err(LabError::Invalid(format!(
                "{total} pods do not fit a /24 pod subnet (max 240)"
            )));
        }
        let permit = NodeSlots::acquire();
        let started = Instant::now();
        let tmp = tempfile::Builder::new()
            .prefix("netsnap-lab-")
            .tempdir()
            .map_err(|e| LabError::io("creating lab temp dir", e))?;
        let pause = tmp.path().join("pause");
        let sleep = crate::util::which("sleep")
            .ok_or_else(|| LabError::Unsupported("no `sleep` program".into()))?;
        fs::copy(&sleep, &pause).map_err(|e| LabError::io("copying sleep to pause", e))?;
        fs::set_permissions(&pause, fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io("chmod pause", e))?;

        let mut holder = Command::new("unshare")
            .args([
                "--net",
                "--pid",
                "--mount",
                "--uts",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "sleep",
                "infinity",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LabError::io("spawning unshare holder", e))?;
        let pid1 = match child_of(holder.id(), Duration::from_secs(10), "sleep") {
            Ok(p) => p,
            Err(e) => {
                let _ = holder.kill();
                let _ = holder.wait();
                return Err(e);
            }
        };
        let pod_mtu = self.pod_mtu.unwrap_or(match self.style {
            NetStyle::Bridge { vxlan: false } => 1500,
            _ => VXLAN_MTU,
        });
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("lab-{}", rand_hex(6)));
        let peer = self.peer.clone().unwrap_or_else(|| PeerNode {
            name: format!("{name}-peer"),
            subnet: self.subnet.wrapping_add(1),
            ip: Ipv4Addr::new(172, 18, 0, 11),
        });
        let mut node = LabNode {
            name,
            style: self.style,
            pod_mtu,
            subnet: self.subnet,
            node_ip: self.node_ip,
            peer,
            kube_proxy_version: self.kube_proxy_version.clone(),
            holder: Some(holder),
            outside: None,
            pid1,
            tmp: Some(tmp),
            pause,
            pods: Vec::new(),
            services: Vec::new(),
            omitted: BTreeSet::new(),
            pod_masquerade: true,
            masquerade_random_fully: true,
            backends: Vec::new(),
            dns: None,
            children: Vec::new(),
            cgroup_dirs: Vec::new(),
            cgroup_root: if self.cgroups { cgroup2_root() } else { None },
            next_host: 2,
            leaked: Vec::new(),
            orphans: Vec::new(),
            ghosts: Vec::new(),
            build_time: Duration::ZERO,
            ct_filled: std::sync::atomic::AtomicUsize::new(0),
            _permit: permit,
        };
        node.setup(&self)?;
        node.build_time = started.elapsed();
        Ok(node)
    }
}

/// A live lab node. Dropping it tears everything down.
pub struct LabNode {
    name: String,
    style: NetStyle,
    pod_mtu: u16,
    subnet: u8,
    node_ip: Ipv4Addr,
    peer: PeerNode,
    kube_proxy_version: String,
    holder: Option<Child>,
    outside: Option<Child>,
    pid1: u32,
    tmp: Option<tempfile::TempDir>,
    pause: PathBuf,
    pods: Vec<LabPod>,
    services: Vec<LabService>,
    omitted: BTreeSet<String>,
    /// Whether the CNI's pod egress masquerade rules are programmed (the default).
    pod_masquerade: bool,
    /// Whether the CNI's masquerade rules carry `--random-fully` (the default).
    masquerade_random_fully: bool,
    backends: Vec<Backend>,
    dns: Option<DnsState>,
    children: Vec<Child>,
    cgroup_dirs: Vec<PathBuf>,
    cgroup_root: Option<PathBuf>,
    next_host: u8,
    leaked: Vec<LeakedNetns>,
    orphans: Vec<OrphanVeth>,
    ghosts: Vec<GhostPod>,
    build_time: Duration,
    ct_filled: std::sync::atomic::AtomicUsize,
    _permit: SlotPermit,
}

impl std::fmt::Debug for LabNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabNode")
            .field("name", &self.name)
            .field("pid1", &self.pid1)
            .field("style", &self.style)
            .field("pods", &self.pods.len())
            .finish()
    }
}

impl LabNode {
    // ----- accessors -------------------------------------------------------------------

    /// Node name (also the hostname inside the node's UTS namespace).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Host PID of the node's PID 1 (the holder); `/proc/<pid>/ns/*` are the node's namespaces.
    pub fn pid1(&self) -> u32 {
        self.pid1
    }
    /// Pod networking style.
    pub fn style(&self) -> NetStyle {
        self.style
    }
    /// Pod MTU as built.
    pub fn pod_mtu(&self) -> u16 {
        self.pod_mtu
    }
    /// The node's uplink (`eth0`, a dummy device) address.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }
    /// The node's pod subnet, e.g. `10.244.0.0/24`.
    pub fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.subnet)
    }
    /// Pods built (the DNS pod, when present, is one of them).
    pub fn pods(&self) -> &[LabPod] {
        &self.pods
    }
    /// Looks a pod up by `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&LabPod> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }
    /// The DNS pod, when the node has one.
    pub fn dns_pod(&self) -> Option<&LabPod> {
        self.dns.as_ref().and_then(|d| self.pods.get(d.pod))
    }
    /// Host PID of the running dnsmasq, if any.
    pub fn dnsmasq_pid(&self) -> Option<u32> {
        self.dns
            .as_ref()
            .and_then(|d| d.dnsmasq.as_ref().map(|(_, p)| *p))
    }
    /// Services modelled (with `default/kubernetes` and, with DNS, `kube-system/kube-dns`).
    pub fn services(&self) -> &[LabService] {
        &self.services
    }
    /// Services with their endpoints resolved to addresses.
    pub fn resolved_services(&self) -> Vec<ResolvedService> {
        self.services
            .iter()
            .map(|s| ResolvedService {
                service: s.clone(),
                endpoints: self.endpoints_of(s),
            })
            .collect()
    }
    /// Backends the kube-proxy rules are currently applied in.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
    /// Leaked netns created by [`LabNode::leak_netns`].
    pub fn leaked_netns(&self) -> &[LeakedNetns] {
        &self.leaked
    }
    /// Orphan veths created by [`LabNode::orphan_veth`].
    pub fn orphan_veths(&self) -> &[OrphanVeth] {
        &self.orphans
    }
    /// API-only pods added by [`LabNode::add_ghost_pod`].
    pub fn ghost_pods(&self) -> &[GhostPod] {
        &self.ghosts
    }
    /// How long [`LabNodeBuilder::build`] took.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
    /// The node's scratch directory on the host (also visible inside the node at the same path).
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.as_ref().map_or(Path::new("/tmp"), |t| t.path())
    }
    /// Whether pause processes were placed in kubelet-style cgroups.
    pub fn has_cgroups(&self) -> bool {
        self.cgroup_root.is_some()
    }

    // ----- running commands --------------------------------------------------------------

    fn nsenter_node(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid1.to_string())
            .args(["--net", "--pid", "--mount", "--uts", "--"])
            .stdin(Stdio::null());
        c
    }

    /// Runs a program inside the node (net+pid+mount+uts namespaces); fails on non-zero exit.
    pub fn run_in_node(&self, args: &[&str]) -> LabResult<CmdOutput> {
        let out = self.run_in_node_raw(args, &[], CMD_TIMEOUT)?;
        check(&args.join(" "), out)
    }

    /// Runs a program inside the node with extra environment; a non-zero exit is returned, not an error.
    pub fn run_in_node_raw(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> LabResult<CmdOutput> {
        let mut c = self.nsenter_node();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run_timeout(&mut c, timeout)
    }

    /// [`LabNode::run_in_node_raw`] with a callback receiving the host PID of the `nsenter`
    /// wrapping the program, every few milliseconds while it runs.
    pub fn run_in_node_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
        tick: &mut dyn FnMut(u32),
    ) -> LabResult<CmdOutput> {
        let mut c = self.nsenter_node();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        crate::util::run_timeout_with(&mut c, timeout, tick)
    }

    /// Runs a `sh -ec` script inside the node; fails on non-zero exit.
    pub fn sh(&self, script: &str) -> LabResult<CmdOutput> {
        self.run_in_node(&["sh", "-ec", script])
    }

    /// Runs a program in a pod's network and mount namespaces (so it sees the pod's resolv.conf).
    pub fn run_in_pod(&self, pod: &LabPod, args: &[&str]) -> LabResult<CmdOutput> {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(pod.pause_pid.to_string())
            .args(["--net", "--mount", "--pid", "--uts", "--"])
            .args(args)
            .stdin(Stdio::null());
        run_timeout(&mut c, CMD_TIMEOUT)
    }

    /// `dig +short +time=1 +tries=1 @server name` (UDP, or TCP with `tcp`) from a pod.
    /// Returns the answer lines; an error when dig reports no answer / timeout.
    pub fn dig_from(
        &self,
        pod: &LabPod,
        server: Ipv4Addr,
        name: &str,
        tcp: bool,
    ) -> LabResult<Vec<String>> {
        let at = format!("@{server}");
        // 2 s: generous enough for a loaded 2-core CI machine, short for the expected failures.
        let mut args = vec!["dig", "+time=2", "+tries=1", at.as_str(), name, "A"];
        if tcp {
            args.push("+tcp");
        }
        let out = self.run_in_pod(pod, &args)?;
        let text = out.stdout.clone();
        let out = check(&args.join(" "), out)?;
        if !text.contains("status: NOERROR") {
            let status = text
                .lines()
                .find(|l| l.contains("status:"))
                .unwrap_or("no reply")
                .trim()
                .to_string();
            return Err(LabError::Command {
                cmd: args.join(" "),
                status,
                stderr: out.stderr,
            });
        }
        Ok(parse_dig_answers(&text))
    }

    fn tmp_file(&self, name: &str, content: &str) -> LabResult<PathBuf> {
        let p = self.tmp_dir().join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| LabError::io(format!("creating {}", parent.display()), e))?;
        }
        fs::write(&p, content).map_err(|e| LabError::io(format!("writing {}", p.display()), e))?;
        Ok(p)
    }

    // ----- building ----------------------------------------------------------------------

    fn alloc_ip(&mut self) -> LabResult<Ipv4Addr> {
        if self.next_host > 250 {
            return Err(LabError::Invalid("pod subnet exhausted".into()));
        }
        let ip = Ipv4Addr::new(10, 244, self.subnet, self.next_host);
        self.next_host += 1;
        Ok(ip)
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.subnet, 1)
    }

    /// The other node of the cluster (served by the API, no processes): its pod subnet, the
    /// next /24 after this node's.
    pub fn peer_pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.peer.subnet)
    }

    /// The other node's name.
    pub fn peer_name(&self) -> String {
        self.peer.name.clone()
    }

    /// The other node's InternalIP (on this node's uplink subnet).
    pub fn peer_ip(&self) -> Ipv4Addr {
        self.peer.ip
    }

    /// `status.nodeInfo.kubeProxyVersion` of this node's Node object.
    pub fn kube_proxy_version(&self) -> &str {
        &self.kube_proxy_version
    }

    /// The node's pod subnet number (`10.244.<n>.0/24`).
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// Fault: the route to the other node's pod subnet is gone (flannel missed the node, BIRD
    /// lost the session), so that subnet falls through to the default route.
    pub fn remove_peer_route(&self) -> LabResult<()> {
        self.run_in_node(&["ip", "route", "del", &self.peer_pod_cidr()])?;
        Ok(())
    }

    /// Fault: the route to the other node's pod subnet points at `gateway` instead of the
    /// other node (a VTEP or next hop left over from a replaced node): over `flannel.1`
    /// (onlink) on flannel nodes, over `eth0` otherwise.
    pub fn set_peer_route_gateway(&self, gateway: Ipv4Addr) -> LabResult<()> {
        let dev = match self.style {
            NetStyle::Bridge { vxlan: true } => "flannel.1",
            _ => "eth0",
        };
        let gw = gateway.to_string();
        self.run_in_node(&[
            "ip",
            "route",
            "replace",
            &self.peer_pod_cidr(),
            "via",
            &gw,
            "dev",
            dev,
            "onlink",
        ])?;
        Ok(())
    }

    /// The uplink: `eth0` in the node, a veth whose peer `gw0` (172.18.0.1) sits in an
    /// "outside" netns held by a harness process outside the node's PID namespace (like a
    /// kind node's eth0). This kernel has no `dummy` driver, so a veth it is.
    fn make_uplink(&mut self) -> LabResult<()> {
        let outside = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LabError::io("spawning the outside netns holder", e))?;
        let opid = outside.id();
        self.outside = Some(outside);
        // `unshare` execs sleep in place; wait until it has (then its netns is the new one).
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_to_string(format!("/proc/{opid}/comm"))
            .unwrap_or_default()
            .trim()
            != "sleep"
        {
            if Instant::now() > deadline {
                return Err(LabError::Timeout {
                    cmd: "unshare --net sleep infinity".into(),
                    secs: 10.0,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let node_net = format!("--net=/proc/{}/ns/net", self.pid1);
        let out_net = format!("--net=/proc/{opid}/ns/net");
        let opid_s = opid.to_string();
        let mut c = Command::new("nsenter");
        c.args([
            node_net.as_str(),
            "--",
            "ip",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "gw0",
            "netns",
            &opid_s,
        ])
        .stdin(Stdio::null());
        check(&describe(&c), run_timeout(&mut c, CMD_TIMEOUT)?)?;
        let mut c = Command::new("nsenter");
        c.args([
            out_net.as_str(),
            "--",
            "sh",
            "-ec",
            "ip link set lo up; ip addr add 172.18.0.1/24 dev gw0; ip link set gw0 up",
        ])
        .stdin(Stdio::null());
        check(&describe(&c), run_timeout(&mut c, CMD_TIMEOUT)?)?;
        Ok(())
    }

    /// Shell lines writing the node's CNI, IPAM and kubelet files (into the node's private
    /// overlays of `/etc` and `/var/lib`).
    fn config_files_script(&self) -> String {
        let mut s = String::from("mkdir -p /etc/cni/net.d /var/lib/kubelet\n");
        let conflist = match self.style {
            NetStyle::Bridge { vxlan: true } => (
                "10-flannel.conflist",
                r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#.to_string(),
            ),
            NetStyle::Bridge { vxlan: false } => (
                "10-bridge.conflist",
                format!(
                    r#"{{"name":"cbr0","cniVersion":"0.3.1","plugins":[{{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"hairpinMode":true,"mtu":{},"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
                    self.pod_mtu,
                    self.pod_cidr()
                ),
            ),
            NetStyle::Routed => (
                "10-calico.conflist",
                format!(
                    r#"{{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{{"type":"calico","datastore_type":"kubernetes","mtu":{},"nodename":"{}","ipam":{{"type":"calico-ipam"}},"policy":{{"type":"k8s"}},"kubernetes":{{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}}}},{{"type":"portmap","snat":true,"capabilities":{{"portMappings":true}}}}]}}"#,
                    self.pod_mtu, self.name
                ),
            ),
        };
        s.push_str(&format!(
            "printf '%s\\n' {} > /etc/cni/net.d/{}\n",
            shq(&conflist.1),
            conflist.0
        ));
        if matches!(self.style, NetStyle::Bridge { .. }) {
            s.push_str("mkdir -p /var/lib/cni/networks/cbr0\n");
            for p in &self.pods {
                s.push_str(&ipam_line(p.ip, &p.container_id));
            }
        }
        s.push_str(&format!(
            "cat > /var/lib/kubelet/config.yaml <<'EOF'\n\
             apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             cgroupDriver: systemd\nclusterDNS:\n- {DNS_VIP}\nclusterDomain: {CLUSTER_DOMAIN}\n\
             hairpinMode: hairpin-veth\nresolvConf: /etc/resolv.conf\nmaxPods: 110\nstaticPodPath: /etc/kubernetes/manifests\n\
             EOF\n"
        ));
        s
    }

    fn setup(&mut self, b: &LabNodeBuilder) -> LabResult<()> {
        self.make_uplink()?;
        // Private copy-on-write /etc and /var/lib: CNI/kubelet files without touching the host.
        let ov = self.tmp_dir().join("overlay");
        for d in ["etc-up", "etc-work", "varlib-up", "varlib-work"] {
            fs::create_dir_all(ov.join(d)).map_err(|e| LabError::io("creating overlay dirs", e))?;
        }
        let ov = ov.to_string_lossy().into_owned();
        let mut script = String::from("set -e\n");
        script.push_str(&format!(
            "mount -t overlay netsnap-lab-etc -o lowerdir=/etc,upperdir={ov}/etc-up,workdir={ov}/etc-work /etc\n\
             mount -t overlay netsnap-lab-varlib -o lowerdir=/var/lib,upperdir={ov}/varlib-up,workdir={ov}/varlib-work /var/lib\n"
        ));
        script.push_str(&format!(
            "mount -t tmpfs -o mode=755 netsnap-lab-run /run\nmkdir -p /run/netns /run/netsnap-lab/cgroup\n\
             mount --rbind /sys/fs/cgroup /run/netsnap-lab/cgroup\n\
             mount -t sysfs netsnap-lab-sys /sys\n\
             mount --rbind /run/netsnap-lab/cgroup /sys/fs/cgroup\n\
             umount -l /run/netsnap-lab/cgroup\n\
             echo {} > /proc/sys/kernel/hostname\nip link set lo up\n\
             echo 1 > /proc/sys/net/ipv4/ip_forward\n\
             if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; fi\n\
             ip addr add {}/24 dev eth0\nip link set eth0 up\n\
             ip route add default via 172.18.0.1 dev eth0\n",
            self.name, self.node_ip
        ));
        let gw = self.gateway();
        match self.style {
            NetStyle::Bridge { vxlan } => {
                script.push_str(&format!(
                    "ip link add cni0 type bridge\nip link set cni0 mtu {mtu}\nip addr add {gw}/24 dev cni0\nip link set cni0 up\n",
                    mtu = self.pod_mtu
                ));
                if !vxlan {
                    // Without an overlay the other node's pods are reached through it
                    // (flannel host-gw).
                    script.push_str(&format!(
                        "ip route add {} via {} dev eth0\n",
                        self.peer_pod_cidr(),
                        self.peer_ip()
                    ));
                }
                if vxlan {
                    let peer = self.peer.subnet;
                    script.push_str(&format!(
                        "ip link add flannel.1 type vxlan id 1 local {nip} dev eth0 dstport 8472 nolearning\n\
                         ip link set flannel.1 mtu {VXLAN_MTU} address 3e:1a:4b:00:00:{sub:02x}\n\
                         ip addr add 10.244.{s}.0/32 dev flannel.1\nip link set flannel.1 up\n\
                         ip neigh replace 10.244.{peer}.0 lladdr 3e:1a:4b:00:01:{peer:02x} dev flannel.1 nud permanent\n\
                         bridge fdb append 3e:1a:4b:00:01:{peer:02x} dev flannel.1 dst {pip}\n\
                         ip route add 10.244.{peer}.0/24 via 10.244.{peer}.0 dev flannel.1 onlink\n\
                         mkdir -p /run/flannel\n\
                         printf 'FLANNEL_NETWORK={CLUSTER_CIDR}\\nFLANNEL_SUBNET={gw}/24\\nFLANNEL_MTU={VXLAN_MTU}\\nFLANNEL_IPMASQ=true\\n' > /run/flannel/subnet.env\n",
                        nip = self.node_ip,
                        pip = self.peer.ip,
                        sub = self.subnet,
                        s = self.subnet,
                    ));
                }
            }
            NetStyle::Routed => {
                // calico: a blackhole for this node's block, the other node's block learnt
                // over BGP via its address.
                script.push_str(&format!(
                    "ip route add blackhole 10.244.{}.0/24 proto 80\nip route add {} via {} dev eth0 proto bird\n",
                    self.subnet,
                    self.peer_pod_cidr(),
                    self.peer_ip()
                ));
            }
        }

        // Pods: DNS pod first so it gets the first address, as on a fresh node.
        let mut specs: Vec<PodSpec> = Vec::new();
        if b.dns {
            specs.push(PodSpec {
                namespace: "kube-system".into(),
                name: format!("coredns-{}-{}", rand_suffix(10), rand_suffix(5)),
                labels: vec![("k8s-app".into(), "kube-dns".into())],
            });
        }
        specs.extend(b.pods.iter().cloned());
        for spec in specs {
            let ip = self.alloc_ip()?;
            let netns = format!("cni-{}", rand_uuid());
            let host_veth = self.host_veth_name();
            script.push_str(&self.pod_net_script(&netns, &host_veth, ip, self.pod_mtu));
            let resolv_conf = format!(
                "search {ns}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\nnameserver {DNS_VIP}\noptions ndots:5\n",
                ns = spec.namespace
            );
            self.pods.push(LabPod {
                namespace: spec.namespace,
                name: spec.name,
                uid: rand_uuid(),
                labels: spec.labels,
                ip,
                netns,
                host_veth,
                pod_if: "eth0".into(),
                mtu: self.pod_mtu,
                container_id: rand_hex(64),
                pause_pid: 0,
                node_pid: 0,
                cgroup: None,
                resolv_conf,
            });
        }
        script.push_str(&self.config_files_script());
        let path = self.tmp_file("setup.sh", &script)?;
        let path_s = path.to_string_lossy().into_owned();
        self.run_in_node(&["sh", "-e", &path_s])?;

        self.start_pauses()?;

        // Services: the API server's and, with DNS, kube-dns; then the test's own.
        self.services.push(LabService::with_ips(
            "default",
            "kubernetes",
            API_VIP,
            vec![LabPort::new("https", 443, Proto::Tcp).target(6443)],
            vec![self.node_ip],
        ));
        if b.dns {
            self.services.push(LabService::selecting(
                "kube-system",
                "kube-dns",
                DNS_VIP,
                vec![
                    LabPort::new("dns", 53, Proto::Udp),
                    LabPort::new("dns-tcp", 53, Proto::Tcp),
                    LabPort::new("metrics", 9153, Proto::Tcp),
                ],
                ("k8s-app", "kube-dns"),
            ));
            self.dns = Some(DnsState {
                pod: 0,
                dnsmasq: None,
                cgroup_procs: None,
            });
        }
        self.services.extend(b.services.iter().cloned());
        self.apply_iptables(b.backend)?;
        if b.dns {
            self.start_dns()?;
        }
        Ok(())
    }

    fn host_veth_name(&self) -> String {
        match self.style {
            NetStyle::Bridge { .. } => format!("veth{}", rand_hex(8)),
            NetStyle::Routed => format!("cali{}", rand_hex(11)),
        }
    }

    /// Shell lines creating one pod's netns, veth pair, address and routes.
    fn pod_net_script(&self, netns: &str, host_veth: &str, ip: Ipv4Addr, mtu: u16) -> String {
        let gw = self.gateway();
        let mut s = format!(
            "ip netns add {netns}\nip -n {netns} link set lo up\n\
             ip link add {host_veth} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {netns}\n"
        );
        match self.style {
            NetStyle::Bridge { .. } => s.push_str(&format!(
                "ip link set {host_veth} master cni0 up\nbridge link set dev {host_veth} hairpin on\n\
                 ip -n {netns} addr add {ip}/24 dev eth0\nip -n {netns} link set eth0 up\n\
                 ip -n {netns} route add default via {gw} dev eth0\n"
            )),
            NetStyle::Routed => s.push_str(&format!(
                "ip link set {host_veth} address ee:ee:ee:ee:ee:ee up\n\
                 echo 1 > /proc/sys/net/ipv4/conf/{host_veth}/proxy_arp\n\
                 echo 0 > /proc/sys/net/ipv4/neigh/{host_veth}/proxy_delay\n\
                 ip route add {ip}/32 dev {host_veth} scope link\n\
                 ip -n {netns} addr add {ip}/32 dev eth0\nip -n {netns} link set eth0 up\n\
                 ip -n {netns} route add 169.254.1.1 dev eth0 scope link\n\
                 ip -n {netns} route add default via 169.254.1.1 dev eth0\n"
            )),
        }
        s
    }

    /// Creates (under the global lock) a kubelet-style cgroup for a container; returns its
    /// `cgroup.procs` path and the path as `/proc/<pid>/cgroup` shows it.
    fn make_cgroup(&mut self, pod_uid: &str, container_id: &str) -> Option<(PathBuf, String)> {
        let root = self.cgroup_root.clone()?;
        let rel = format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{container_id}.scope",
            pod_uid.replace('-', "_")
        );
        let mut shared = CGROUP_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut dir = root.clone();
        for (depth, comp) in rel.split('/').enumerate() {
            dir.push(comp);
            if !dir.exists() {
                if fs::create_dir(&dir).is_err() {
                    return None;
                }
                if depth < 2 {
                    shared.insert(dir.clone());
                } else {
                    self.cgroup_dirs.push(dir.clone());
                }
            }
        }
        Some((dir.join("cgroup.procs"), format!("/{rel}")))
    }

    fn start_pauses(&mut self) -> LabResult<()> {
        // Spawn every pause chain first, then collect their PIDs: the spawns overlap.
        let mut pending = Vec::new();
        for i in 0..self.pods.len() {
            let (uid, cid) = (self.pods[i].uid.clone(), self.pods[i].container_id.clone());
            let cg = self.make_cgroup(&uid, &cid);
            let resolv = self.tmp_file(
                &format!("pods/{}/resolv.conf", self.pods[i].netns),
                &self.pods[i].resolv_conf.clone(),
            )?;
            let mut inner = String::new();
            if let Some((procs, rel)) = &cg {
                inner.push_str(&format!("echo 0 > {} && ", shq(&procs.to_string_lossy())));
                self.pods[i].cgroup = Some(rel.clone());
            }
            inner.push_str(&format!(
                "if [ -f /etc/resolv.conf ] && [ ! -L /etc/resolv.conf ]; then mount --bind {} /etc/resolv.conf; fi; exec {} infinity",
                shq(&resolv.to_string_lossy()),
                shq(&self.pause.to_string_lossy())
            ));
            let netns_arg = format!("--net=/run/netns/{}", self.pods[i].netns);
            let mut c = self.nsenter_node();
            c.args(["nsenter", &netns_arg, "--"])
                .args([
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    &inner,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = c
                .spawn()
                .map_err(|e| LabError::io(format!("spawning `{}`", describe(&c)), e))?;
            pending.push((i, child.id()));
            self.children.push(child);
        }
        for (i, nsenter_pid) in pending {
            let pid = child_of(nsenter_pid, Duration::from_secs(20), "pause")?;
            self.pods[i].pause_pid = pid;
            self.pods[i].node_pid = ns_pid(pid).unwrap_or(0);
        }
        Ok(())
    }

    fn endpoints_of(&self, svc: &LabService) -> Vec<Ipv4Addr> {
        match &svc.endpoints {
            Endpoints::Ips(ips) => ips.clone(),
            Endpoints::Selector(k, v) => self
                .pods
                .iter()
                .filter(|p| p.labels.iter().any(|(lk, lv)| lk == k && lv == v))
                .map(|p| p.ip)
                .collect(),
        }
    }

    /// The kube-proxy ruleset for the current model (`iptables-restore` input).
    pub fn render_iptables(&self) -> String {
        kubeproxy::render(
            &self.resolved_services(),
            &kubeproxy::RenderOptions {
                cluster_cidr: CLUSTER_CIDR.into(),
                omit_from_services: self.omitted.clone(),
                cni_nat: self.pod_masquerade.then(|| match self.style {
                    NetStyle::Bridge { .. } => kubeproxy::CniNat::flannel(
                        CLUSTER_CIDR,
                        &self.pod_cidr(),
                        self.masquerade_random_fully,
                    ),
                    NetStyle::Routed => kubeproxy::CniNat::calico(),
                }),
            },
        )
    }

    /// Applies the kube-proxy ruleset with `backend` (replacing that backend's filter and nat
    /// tables). Applying with both backends is the "KUBE-* chains in both backends" fault.
    pub fn apply_iptables(&mut self, backend: Backend) -> LabResult<()> {
        let rules = self.render_iptables();
        if self.pod_masquerade && self.style == NetStyle::Routed {
            self.sh(&kubeproxy::CniNat::calico_ipsets(CLUSTER_CIDR))?;
        }
        let path = self.tmp_file(&format!("iptables-{backend:?}.rules"), &rules)?;
        self.run_in_node(&[backend.restore(), &path.to_string_lossy()])?;
        if !self.backends.contains(&backend) {
            self.backends.push(backend);
        }
        Ok(())
    }

    /// Fault: removes a Service's jumps from `KUBE-SERVICES` (its SVC/SEP chains stay), in every applied backend.
    pub fn omit_from_kube_services(&mut self, namespace: &str, name: &str) -> LabResult<()> {
        if !self
            .services
            .iter()
            .any(|s| s.namespace == namespace && s.name == name)
        {
            return Err(LabError::Invalid(format!(
                "no service {namespace}/{name} in the lab"
            )));
        }
        self.omitted.insert(format!("{namespace}/{name}"));
        for b in self.backends.clone() {
            self.apply_iptables(b)?;
        }
        Ok(())
    }

    /// Fault: the CNI's pod egress masquerade rules are gone (`FLANNEL-POSTRTG` /
    /// `cali-nat-outgoing`), in every applied backend; kube-proxy's rules stay.
    pub fn remove_pod_masquerade(&mut self) -> LabResult<()> {
        self.pod_masquerade = false;
        for b in self.backends.clone() {
            self.apply_iptables(b)?;
        }
        Ok(())
    }

    /// Fault: flannel's masquerade rules without `--random-fully` (as flanneld writes them
    /// with an iptables older than 1.6.2), in every applied backend.
    pub fn set_masquerade_random_fully(&mut self, on: bool) -> LabResult<()> {
        self.masquerade_random_fully = on;
        for b in self.backends.clone() {
            self.apply_iptables(b)?;
        }
        Ok(())
    }

    /// Adds a Service after build and re-applies the rules in every applied backend.
    pub fn add_service(&mut self, svc: LabService) -> LabResult<()> {
        self.services.push(svc);
        for b in self.backends.clone() {
            self.apply_iptables(b)?;
        }
        Ok(())
    }

    /// Replaces a Service's endpoints (e.g. it "moved" to another pod) and re-applies the rules.
    pub fn set_service_endpoints(
        &mut self,
        namespace: &str,
        name: &str,
        ips: Vec<Ipv4Addr>,
    ) -> LabResult<()> {
        let svc = self
            .services
            .iter_mut()
            .find(|s| s.namespace == namespace && s.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no service {namespace}/{name}")))?;
        svc.endpoints = Endpoints::Ips(ips);
        for b in self.backends.clone() {
            self.apply_iptables(b)?;
        }
        Ok(())
    }

    // ----- DNS ---------------------------------------------------------------------------

    /// Starts (or restarts) dnsmasq in the DNS pod, listening on the pod IP, and waits until it listens.
    pub fn start_dns(&mut self) -> LabResult<()> {
        let Some(dns) = self.dns.as_ref() else {
            return Err(LabError::Invalid("node was built without .dns()".into()));
        };
        if dns.dnsmasq.is_some() {
            return Ok(());
        }
        let pod = self.pods[dns.pod].clone();
        let cg = match dns.cgroup_procs.clone() {
            Some(p) => Some(p),
            None => self
                .make_cgroup(&pod.uid, &rand_hex(64))
                .map(|(procs, _)| procs),
        };
        // One `address=` line per Service in a config file, not one argument each:
        // 5,000 Services (the benchmark's node) are too many arguments for `exec`.
        let mut conf = String::new();
        for s in self.resolved_services() {
            conf.push_str(&format!(
                "address=/{}.{}.svc.{CLUSTER_DOMAIN}/{}\n",
                s.service.name, s.service.namespace, s.service.vip
            ));
        }
        let conf_path = self.tmp_dir().join("dnsmasq.conf");
        fs::write(&conf_path, conf).map_err(|e| LabError::io("writing dnsmasq.conf", e))?;
        let args = vec![
            "--no-daemon".to_string(),
            format!("--conf-file={}", conf_path.display()),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            format!("--pid-file=/run/netsnap-lab/dnsmasq-{}.pid", pod.netns),
            format!("--listen-address={}", pod.ip),
            "--bind-interfaces".into(),
            "--log-queries".into(),
            format!("--local=/{CLUSTER_DOMAIN}/"),
        ];
        let mut inner = String::new();
        if let Some(procs) = &cg {
            inner.push_str(&format!("echo 0 > {} && ", shq(&procs.to_string_lossy())));
        }
        inner.push_str("exec dnsmasq");
        for a in &args {
            inner.push(' ');
            inner.push_str(&shq(a));
        }
        let log = fs::File::create(self.tmp_dir().join("dnsmasq.log"))
            .map_err(|e| LabError::io("creating dnsmasq log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("cloning dnsmasq log", e))?;
        let netns_arg = format!("--net=/run/netns/{}", pod.netns);
        let mut c = self.nsenter_node();
        c.args(["nsenter", &netns_arg, "--", "sh", "-c", &inner])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let mut child = c.spawn().map_err(|e| LabError::io("spawning dnsmasq", e))?;
        let pid = match child_of(child.id(), Duration::from_secs(10), "dnsmasq") {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let want = format!("{:08X}:0035", u32::from_le_bytes(pod.ip.octets()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let udp = fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
            if udp.contains(&want) {
                break;
            }
            if Instant::now() > deadline {
                let logtext =
                    fs::read_to_string(self.tmp_dir().join("dnsmasq.log")).unwrap_or_default();
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Unsupported(format!(
                    "dnsmasq did not listen on {}:53: {}",
                    pod.ip,
                    logtext.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(d) = self.dns.as_mut() {
            d.dnsmasq = Some((child, pid));
            d.cgroup_procs = cg;
        }
        Ok(())
    }

    /// Starts a process in pod `pod`'s network namespace whose root directory is
    /// `root` (a host directory, e.g. under [`LabNode::tmp_dir`]), as a container
    /// runtime would: its own mount namespace, the node's `/usr` bound into `root`
    /// so it can run `sleep`. Whatever the test put in `root/etc` (a hostile
    /// `resolv.conf`) is what `/proc/<pid>/root` shows the collector. Returns the
    /// host PID; the process ends with the node.
    pub fn pod_process_with_root(&mut self, pod: usize, root: &Path) -> LabResult<u32> {
        let r = shq(&root.to_string_lossy());
        let inner = format!(
            "mkdir -p {r}/usr && mount --rbind /usr {r}/usr && ln -sfn usr/bin {r}/bin && \
             ln -sfn usr/lib {r}/lib && ln -sfn usr/lib64 {r}/lib64 && exec chroot {r} /usr/bin/sleep infinity"
        );
        let netns_arg = format!("--net=/run/netns/{}", self.pods[pod].netns);
        let mut c = self.nsenter_node();
        c.args(["nsenter", &netns_arg, "--"])
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &inner,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c
            .spawn()
            .map_err(|e| LabError::io(format!("spawning `{}`", describe(&c)), e))?;
        let nsenter_pid = child.id();
        self.children.push(child);
        child_of(nsenter_pid, Duration::from_secs(20), "sleep")
    }

    /// Starts a process in pod `pod`'s network namespace that sets its own `comm` (what `ps`
    /// and the collector's namespace scan show) to `comm`, as any process can with
    /// `prctl(PR_SET_NAME)`; returns its host PID. `comm` must fit the kernel's 15 bytes.
    pub fn pod_process_with_comm(&mut self, pod: usize, comm: &[u8]) -> LabResult<u32> {
        if comm.len() > 15 {
            return Err(LabError::Invalid(format!(
                "comm {comm:?} is longer than 15 bytes"
            )));
        }
        // `printf` is a shell builtin, so `/proc/$$/comm` is the shell's own; the shell then
        // waits on a `sleep` child (the trailing `:` keeps it from exec'ing the sleep, which
        // would reset the name).
        let octal: String = comm.iter().map(|b| format!("\\{b:03o}")).collect();
        let inner = format!("printf '{octal}' > /proc/$$/comm && sleep infinity; :");
        let netns_arg = format!("--net=/run/netns/{}", self.pods[pod].netns);
        let mut c = self.nsenter_node();
        c.args(["nsenter", &netns_arg, "--", "sh", "-c", &inner])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c
            .spawn()
            .map_err(|e| LabError::io(format!("spawning `{}`", describe(&c)), e))?;
        let nsenter_pid = child.id();
        self.children.push(child);
        child_of(
            nsenter_pid,
            Duration::from_secs(20),
            &String::from_utf8_lossy(comm),
        )
    }

    /// Fault: stops the DNS pod's dnsmasq (SIGTERM, then SIGKILL) and waits for it to be gone.
    pub fn stop_dns(&mut self) -> LabResult<()> {
        let Some(d) = self.dns.as_mut() else {
            return Err(LabError::Invalid("node was built without .dns()".into()));
        };
        if let Some((mut child, pid)) = d.dnsmasq.take() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    // ----- conntrack ---------------------------------------------------------------------

    /// Inserts entries into the node's conntrack table (`conntrack -R`).
    pub fn conntrack_insert(&self, entries: &[CtEntry]) -> LabResult<()> {
        let mut text = String::new();
        for e in entries {
            text.push_str(&e.to_load_line());
            text.push('\n');
        }
        self.conntrack_load(&text)
    }

    /// Inserts `n` distinct ESTABLISHED TCP entries towards the API VIP (distinct from
    /// every earlier fill of this node).
    pub fn fill_conntrack(&self, n: usize) -> LabResult<()> {
        let start = self
            .ct_filled
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.conntrack_load(&fill_lines(start, n, API_VIP, 443))
    }

    /// `net.netfilter.nf_conntrack_max` as the node sees it (global; never written by the lab).
    pub fn conntrack_max(&self) -> LabResult<u64> {
        let v = self.sysctl("net.netfilter.nf_conntrack_max")?;
        v.parse()
            .map_err(|_| LabError::Invalid(format!("nf_conntrack_max is {v:?}")))
    }

    /// Fills the node's table up to `fraction` (e.g. 0.92) of `nf_conntrack_max`, without
    /// touching the maximum; returns how many entries were added.
    pub fn fill_conntrack_to(&self, fraction: f64) -> LabResult<u64> {
        let max = self.conntrack_max()?;
        let now = self.conntrack_count()?;
        let target = (max as f64 * fraction).ceil() as u64;
        let add = target.saturating_sub(now);
        self.fill_conntrack(add as usize)?;
        Ok(add)
    }

    fn conntrack_load(&self, text: &str) -> LabResult<()> {
        let path = self.tmp_file(&format!("conntrack-{}.txt", rand_hex(6)), text)?;
        let p = path.to_string_lossy().into_owned();
        let r = self.run_in_node(&["conntrack", "-R", &p]);
        let _ = fs::remove_file(&path);
        r.map(|_| ())
    }

    /// `conntrack -C` inside the node.
    pub fn conntrack_count(&self) -> LabResult<u64> {
        let out = self.run_in_node(&["conntrack", "-C"])?;
        out.stdout
            .trim()
            .parse()
            .map_err(|_| LabError::Invalid(format!("conntrack -C printed {:?}", out.stdout)))
    }

    // ----- faults ------------------------------------------------------------------------

    /// Writes a sysctl inside the node netns (`key` dotted, e.g. `net.ipv4.ip_forward`).
    pub fn set_sysctl(&self, key: &str, value: &str) -> LabResult<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.sh(&format!("echo {} > {}", shq(value), shq(&path)))
            .map(|_| ())
    }

    /// Reads a sysctl inside the node netns.
    pub fn sysctl(&self, key: &str) -> LabResult<String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        Ok(self.run_in_node(&["cat", &path])?.stdout.trim().to_string())
    }

    /// Fault (or repair): `net.ipv4.ip_forward` in the node.
    pub fn set_ip_forward(&self, on: bool) -> LabResult<()> {
        self.set_sysctl("net.ipv4.ip_forward", if on { "1" } else { "0" })
    }

    /// Fault (or repair): `net.bridge.bridge-nf-call-iptables` in the node netns. Needs the
    /// `br_netfilter` module already loaded by the host (the harness never loads modules);
    /// otherwise [`LabError::Unsupported`].
    pub fn set_bridge_nf_call_iptables(&self, on: bool) -> LabResult<()> {
        if !self.sysctl_exists("net.bridge.bridge-nf-call-iptables")? {
            return Err(LabError::Unsupported(
                "net.bridge.bridge-nf-call-iptables is absent (br_netfilter not loaded)".into(),
            ));
        }
        self.set_sysctl(
            "net.bridge.bridge-nf-call-iptables",
            if on { "1" } else { "0" },
        )
    }

    /// Whether a sysctl exists inside the node netns.
    pub fn sysctl_exists(&self, key: &str) -> LabResult<bool> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        Ok(self
            .run_in_node_raw(&["test", "-e", &path], &[], CMD_TIMEOUT)?
            .success())
    }

    /// Fault: sets a pod's eth0 MTU (e.g. 1500 on a 1450 overlay); the host side is unchanged.
    pub fn set_pod_mtu(&mut self, pod_index: usize, mtu: u16) -> LabResult<()> {
        let netns = self
            .pods
            .get(pod_index)
            .ok_or_else(|| LabError::Invalid(format!("no pod #{pod_index}")))?
            .netns
            .clone();
        self.run_in_node(&[
            "ip",
            "-n",
            &netns,
            "link",
            "set",
            "eth0",
            "mtu",
            &mtu.to_string(),
        ])?;
        self.pods[pod_index].mtu = mtu;
        Ok(())
    }

    /// Fault: a named netns with a pod-CIDR address and its veth still wired, but no process
    /// (the CNI DEL never ran). The API does not know it.
    pub fn leak_netns(&mut self) -> LabResult<LeakedNetns> {
        let ip = self.alloc_ip()?;
        let netns = format!("cni-{}", rand_uuid());
        let host_veth = self.host_veth_name();
        let mut script = self.pod_net_script(&netns, &host_veth, ip, self.pod_mtu);
        if matches!(self.style, NetStyle::Bridge { .. }) {
            // The IPAM reservation leaks along with the netns.
            script.push_str(&ipam_line(ip, &rand_hex(64)));
        }
        self.sh(&script)?;
        let leaked = LeakedNetns {
            netns,
            ip,
            host_veth,
        };
        self.leaked.push(leaked.clone());
        Ok(leaked)
    }

    /// Fault: a host veth whose peer's netns is held only by a bind mount outside `/run/netns`
    /// (no process, no name): nothing on the node can map the peer any more.
    pub fn orphan_veth(&mut self) -> LabResult<OrphanVeth> {
        let ip = self.alloc_ip()?;
        let netns = format!("orphan-{}", rand_hex(8));
        let host_veth = self.host_veth_name();
        let mut script = self.pod_net_script(&netns, &host_veth, ip, self.pod_mtu);
        script.push_str(&format!(
            "mkdir -p /run/netsnap-lab/hidden\ntouch /run/netsnap-lab/hidden/{netns}\n\
             mount --bind /run/netns/{netns} /run/netsnap-lab/hidden/{netns}\nip netns del {netns}\n"
        ));
        self.sh(&script)?;
        let o = OrphanVeth { host_veth, ip };
        self.orphans.push(o.clone());
        Ok(o)
    }

    /// Deletes a pod for real, like the kubelet and CNI DEL: kills its pause process, deletes
    /// its netns (the veth goes with it) and its IPAM reservation; the pod leaves the model
    /// and the API objects. Its Services keep their endpoints until changed
    /// ([`LabNode::set_service_endpoints`]), which is how stale conntrack scenarios start.
    pub fn delete_pod(&mut self, pod_index: usize) -> LabResult<LabPod> {
        if pod_index >= self.pods.len() {
            return Err(LabError::Invalid(format!("no pod #{pod_index}")));
        }
        if self.dns.as_ref().is_some_and(|d| d.pod == pod_index) {
            return Err(LabError::Invalid("use stop_dns() for the DNS pod".into()));
        }
        let pod = self.pods[pod_index].clone();
        let _ = kill(Pid::from_raw(pod.pause_pid as i32), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{}/ns/net", pod.pause_pid)).exists()
            && fs::read_to_string(format!("/proc/{}/comm", pod.pause_pid))
                .is_ok_and(|c| c.trim() == "pause")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.sh(&format!(
            "ip netns del {}\nrm -f /var/lib/cni/networks/cbr0/{}\n",
            pod.netns, pod.ip
        ))?;
        // The kernel tears the namespace (and with it the veth pair) down
        // asynchronously after the last reference is gone: wait, with a deadline,
        // so callers see the node as a CNI DEL leaves it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let link = self.run_in_node_raw(
                &["ip", "link", "show", &pod.host_veth],
                &[],
                Duration::from_secs(10),
            )?;
            if !link.success() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::Invalid(format!(
                    "host veth {} still present 20 s after its netns was deleted",
                    pod.host_veth
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.pods.remove(pod_index);
        if let Some(d) = self.dns.as_mut()
            && d.pod > pod_index
        {
            d.pod -= 1;
        }
        Ok(pod)
    }

    /// Fault: a Running pod the API places on this node whose IP is in no netns.
    pub fn add_ghost_pod(&mut self, namespace: &str, name: &str) -> LabResult<GhostPod> {
        let ip = self.alloc_ip()?;
        let g = GhostPod {
            namespace: namespace.into(),
            name: name.into(),
            uid: rand_uuid(),
            ip,
        };
        self.ghosts.push(g.clone());
        Ok(g)
    }

    /// Binds a TCP listener inside the node's network namespace (e.g. a fake API server the
    /// collector reaches at `127.0.0.1` or the node IP from inside the node). The socket stays
    /// in the node netns; accept on it from any thread or runtime.
    pub fn tcp_listener(&self, addr: SocketAddr) -> LabResult<TcpListener> {
        bind_in_netns(format!("/proc/{}/ns/net", self.pid1), addr)
    }

    /// Binds a TCP listener inside a pod's network namespace.
    pub fn tcp_listener_in_pod(&self, pod: &LabPod, addr: SocketAddr) -> LabResult<TcpListener> {
        bind_in_netns(format!("/proc/{}/ns/net", pod.pause_pid), addr)
    }

    /// Names listed by `ip netns list` inside the node.
    pub fn netns_names(&self) -> LabResult<Vec<String>> {
        let out = self.run_in_node(&["ip", "netns", "list"])?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Tears the node down now (what `Drop` does), reporting how long it took.
    pub fn teardown(mut self) -> Duration {
        let t = Instant::now();
        self.cleanup();
        t.elapsed()
    }

    fn cleanup(&mut self) {
        if self.holder.is_none() {
            return;
        }
        // PID 1 of the node's PID namespace: its death makes the kernel kill every process inside.
        let _ = kill(Pid::from_raw(self.pid1 as i32), Signal::SIGKILL);
        if let Some(mut h) = self.holder.take() {
            wait_or_kill(&mut h, Duration::from_secs(10));
        }
        for c in &mut self.children {
            wait_or_kill(c, Duration::from_secs(5));
        }
        if let Some(mut o) = self.outside.take() {
            let _ = o.kill();
            let _ = o.wait();
        }
        if let Some(d) = self.dns.as_mut()
            && let Some((mut c, _)) = d.dnsmasq.take()
        {
            wait_or_kill(&mut c, Duration::from_secs(5));
        }
        self.children.clear();
        let mut shared = CGROUP_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        for dir in self.cgroup_dirs.drain(..).rev() {
            // A cgroup is busy until its last task is reaped; the kill above makes that quick.
            let deadline = Instant::now() + Duration::from_secs(3);
            while fs::remove_dir(&dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Deepest first; an ancestor another live node still uses is not empty and stays.
        let ancestors: Vec<PathBuf> = shared.iter().rev().cloned().collect();
        for dir in ancestors {
            if !has_child_cgroup(&dir) && (fs::remove_dir(&dir).is_ok() || !dir.exists()) {
                shared.remove(&dir);
            }
        }
        if std::env::var_os("NETSNAP_LAB_KEEP").is_some()
            && let Some(t) = self.tmp.take()
        {
            eprintln!("NETSNAP_LAB_KEEP: kept {}", t.keep().display());
        }
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn has_child_cgroup(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|d| d.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(false)
}

fn wait_or_kill(c: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match c.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// host-local IPAM reservation file: `<ip>` holding the container id and the interface.
fn ipam_line(ip: Ipv4Addr, container_id: &str) -> String {
    format!(
        "printf '%s\\r\\n%s' {container_id} eth0 > /var/lib/cni/networks/cbr0/{ip}\necho {ip} > /var/lib/cni/networks/cbr0/last_reserved_ip.0\n"
    )
}

/// Binds in another netns from a short-lived thread: `setns` only moves that thread, and a
/// socket keeps the namespace it was created in.
fn bind_in_netns(ns_path: String, addr: SocketAddr) -> LabResult<TcpListener> {
    let joined = std::thread::spawn(move || -> LabResult<TcpListener> {
        let f =
            fs::File::open(&ns_path).map_err(|e| LabError::io(format!("opening {ns_path}"), e))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::io(format!("setns {ns_path}"), std::io::Error::from(e)))?;
        TcpListener::bind(addr).map_err(|e| LabError::io(format!("binding {addr}"), e))
    })
    .join();
    joined.unwrap_or_else(|_| Err(LabError::Invalid("netns bind thread panicked".into())))
}

/// Waits until process `parent` has a child whose `comm` is `comm`; returns the child's host PID.
fn child_of(parent: u32, timeout: Duration, comm: &str) -> LabResult<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let c = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if c.trim() == comm {
                return Ok(pid);
            }
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                cmd: format!("waiting for a `{comm}` child of pid {parent}"),
                secs: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The innermost PID of a host process (`NSpid` last field).
fn ns_pid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|p| p.parse().ok())
}

/// The cgroup v2 mount: `/sys/fs/cgroup` (unified) or `/sys/fs/cgroup/unified` (hybrid).
fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

/// Answer records of a `dig` reply (`name TTL IN A addr` → `addr`).
fn parse_dig_answers(text: &str) -> Vec<String> {
    let mut in_answer = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(";;") {
                break;
            }
            if let Some(last) = line.split_whitespace().last() {
                out.push(last.to_string());
            }
        }
    }
    out
}
