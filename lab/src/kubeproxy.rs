//! Services modelled in Rust and rendered as kube-proxy (iptables mode) would
//! program them: `KUBE-SERVICES` → `KUBE-SVC-*` (statistic-probability spread)
//! → `KUBE-SEP-*` (DNAT), `KUBE-MARK-MASQ`, `KUBE-POSTROUTING`, and the filter
//! table's "has no endpoints" REJECT. Chain names use kube-proxy's own hash
//! (`base32(sha256(...))[..16]`), so they match what a real node shows.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// An L4 protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Lowercase name as iptables spells it.
    pub fn lower(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
    /// Uppercase name as the Kubernetes API spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPort {
    /// Port name (may be empty for single-port services).
    pub name: String,
    /// Service (VIP) port.
    pub port: u16,
    /// Endpoint (pod) port.
    pub target_port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl LabPort {
    /// A port whose target port equals its service port.
    pub fn new(name: &str, port: u16, proto: Proto) -> LabPort {
        LabPort {
            name: name.into(),
            port,
            target_port: port,
            proto,
        }
    }
    /// Sets a different target (pod) port.
    pub fn target(mut self, target_port: u16) -> LabPort {
        self.target_port = target_port;
        self
    }
}

/// Where a Service's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    /// Every lab pod whose labels contain `key=value` (resolved when the node is built).
    Selector(String, String),
    /// Fixed addresses (e.g. pods on other nodes, the API server).
    Ips(Vec<Ipv4Addr>),
}

/// A ClusterIP Service as the lab models it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabService {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIP.
    pub vip: Ipv4Addr,
    /// Ports.
    pub ports: Vec<LabPort>,
    /// Endpoint source.
    pub endpoints: Endpoints,
    /// Labels used as the Service selector in the API objects (for `Selector` endpoints).
    pub selector: Vec<(String, String)>,
}

impl LabService {
    /// A Service selecting lab pods by one label.
    pub fn selecting(
        namespace: &str,
        name: &str,
        vip: Ipv4Addr,
        ports: Vec<LabPort>,
        label: (&str, &str),
    ) -> LabService {
        LabService {
            namespace: namespace.into(),
            name: name.into(),
            vip,
            ports,
            endpoints: Endpoints::Selector(label.0.into(), label.1.into()),
            selector: vec![(label.0.into(), label.1.into())],
        }
    }

    /// A Service with fixed endpoint addresses (possibly none: kube-proxy then REJECTs).
    pub fn with_ips(
        namespace: &str,
        name: &str,
        vip: Ipv4Addr,
        ports: Vec<LabPort>,
        ips: Vec<Ipv4Addr>,
    ) -> LabService {
        LabService {
            namespace: namespace.into(),
            name: name.into(),
            vip,
            ports,
            endpoints: Endpoints::Ips(ips),
            selector: Vec::new(),
        }
    }

    /// `count` synthetic Services (`bench/svc-<i>`, VIPs from 10.100.0.0/16, one TCP port 80 →
    /// 8080) with `endpoints_each` endpoints on other nodes (10.245.0.0/16): the load of a big
    /// cluster's kube-proxy ruleset (5,000 x 3 is about 50,000 rules).
    pub fn synthetic_set(count: usize, endpoints_each: usize) -> Vec<LabService> {
        let vip_base = u32::from(Ipv4Addr::new(10, 100, 0, 1));
        let ep_base = u32::from(Ipv4Addr::new(10, 245, 0, 1));
        (0..count)
            .map(|i| {
                let eps = (0..endpoints_each)
                    .map(|j| Ipv4Addr::from(ep_base + (i * endpoints_each + j) as u32))
                    .collect();
                LabService::with_ips(
                    "bench",
                    &format!("svc-{i}"),
                    Ipv4Addr::from(vip_base + i as u32),
                    vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
                    eps,
                )
            })
            .collect()
    }

    /// `namespace/name:port` as kube-proxy names a service port.
    pub fn port_name(&self, port: &LabPort) -> String {
        format!("{}/{}:{}", self.namespace, self.name, port.name)
    }
}

/// kube-proxy's chain-name hash: `prefix + base32(sha256(input))[..16]`.
pub fn chain_hash(prefix: &str, input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let enc = data_encoding::BASE32.encode(&digest);
    format!("{prefix}{}", &enc[..16])
}

/// `KUBE-SVC-*` name of a service port (`namespace/name:port` + protocol).
pub fn svc_chain(port_name: &str, proto: Proto) -> String {
    chain_hash("KUBE-SVC-", &format!("{port_name}{}", proto.lower()))
}

/// `KUBE-SEP-*` name of one endpoint of a service port (`ip:port`).
pub fn sep_chain(port_name: &str, proto: Proto, endpoint: &str) -> String {
    chain_hash(
        "KUBE-SEP-",
        &format!("{port_name}{}{endpoint}", proto.lower()),
    )
}

/// A Service whose endpoints have been resolved to addresses.
#[derive(Debug, Clone)]
pub struct ResolvedService {
    /// The model.
    pub service: LabService,
    /// Ready endpoint addresses, in kube-proxy's order (sorted by `ip:port` string).
    pub endpoints: Vec<Ipv4Addr>,
}

/// Options of one rendering.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Cluster (pod) CIDR, used by the `! -s <cidr> ... -j KUBE-MARK-MASQ` rule.
    pub cluster_cidr: String,
    /// Services (`namespace/name`) whose `KUBE-SERVICES` jumps are left out (fault).
    pub omit_from_services: BTreeSet<String>,
    /// The CNI's own nat chains and rules (pod egress masquerade), restored with
    /// kube-proxy's because `iptables-restore` replaces the whole table.
    pub cni_nat: Option<CniNat>,
}

/// A CNI's nat rules, as the CNI itself programs them.
#[derive(Debug, Clone, Default)]
pub struct CniNat {
    /// Chain declarations (`:NAME - [0:0]` lines).
    pub chains: Vec<String>,
    /// `-A` rules.
    pub rules: Vec<String>,
}

impl CniNat {
    /// flanneld with `--ip-masq` (kube-flannel's default): `FLANNEL-POSTRTG` masquerades
    /// pod traffic leaving the cluster range and leaves pod-to-pod traffic alone.
    pub fn flannel(cluster_cidr: &str, node_subnet: &str, random_fully: bool) -> CniNat {
        let c = "-m comment --comment \"flanneld masq\"";
        // flanneld adds --random-fully only when its iptables supports it (1.6.2+).
        let rf = if random_fully { " --random-fully" } else { "" };
        CniNat {
            chains: vec!["FLANNEL-POSTRTG".into()],
            rules: vec![
                format!("-A POSTROUTING {c} -j FLANNEL-POSTRTG"),
                format!("-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {c} -j RETURN"),
                format!("-A FLANNEL-POSTRTG -s {node_subnet} -d {cluster_cidr} {c} -j RETURN"),
                format!("-A FLANNEL-POSTRTG -s {cluster_cidr} -d {node_subnet} {c} -j RETURN"),
                format!("-A FLANNEL-POSTRTG ! -s {cluster_cidr} -d {node_subnet} {c} -j RETURN"),
                format!(
                    "-A FLANNEL-POSTRTG -s {cluster_cidr} ! -d 224.0.0.0/4 {c} -j MASQUERADE{rf}"
                ),
                format!(
                    "-A FLANNEL-POSTRTG ! -s {cluster_cidr} -d {cluster_cidr} {c} -j MASQUERADE{rf}"
                ),
            ],
        }
    }

    /// calico-node with `natOutgoing: true`: `cali-nat-outgoing` masquerades sources in
    /// the IPAM pools (ipset `cali40masq-ipam-pools`) going outside all pools. The ipsets
    /// must exist before the rules are restored ([`CniNat::calico_ipsets`]).
    pub fn calico() -> CniNat {
        CniNat {
            chains: vec!["cali-POSTROUTING".into(), "cali-nat-outgoing".into()],
            rules: vec![
                "-A POSTROUTING -m comment --comment \"cali:O3lYWMrLQYEMJtB5\" -j cali-POSTROUTING".into(),
                "-A cali-POSTROUTING -m comment --comment \"cali:Z-c7XtVd2Bq7s_hA\" -j cali-nat-outgoing".into(),
                "-A cali-nat-outgoing -m comment --comment \"cali:flqWnvo8yq4ULQLa\" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully".into(),
            ],
        }
    }

    /// Shell commands creating calico's IPAM-pool ipsets for `cluster_cidr`.
    pub fn calico_ipsets(cluster_cidr: &str) -> String {
        format!(
            "ipset -exist create cali40masq-ipam-pools hash:net family inet\n\
             ipset -exist add cali40masq-ipam-pools {cluster_cidr}\n\
             ipset -exist create cali40all-ipam-pools hash:net family inet\n\
             ipset -exist add cali40all-ipam-pools {cluster_cidr}\n"
        )
    }
}

/// Renders a complete `iptables-restore` input (filter and nat tables).
pub fn render(services: &[ResolvedService], opts: &RenderOptions) -> String {
    let mut filter_chains = String::new();
    let mut filter_rules = String::new();
    let mut nat_chains = String::new();
    let mut nat_rules = String::new();
    let mut svc_jumps = String::new();

    for chain in [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-KUBELET-CANARY",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-CANARY",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ] {
        let _ = writeln!(filter_chains, ":{chain} - [0:0]");
    }
    filter_rules.push_str(concat!(
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n",
        "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n",
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n",
        "-A INPUT -j KUBE-FIREWALL\n",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n",
        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n",
        "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n",
        "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A OUTPUT -j KUBE-FIREWALL\n",
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n",
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
    ));

    for chain in [
        "KUBE-KUBELET-CANARY",
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-PROXY-CANARY",
        "KUBE-SERVICES",
    ] {
        let _ = writeln!(nat_chains, ":{chain} - [0:0]");
    }
    nat_rules.push_str(concat!(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n",
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    ));

    for rs in services {
        let svc = &rs.service;
        let key = format!("{}/{}", svc.namespace, svc.name);
        let omitted = opts.omit_from_services.contains(&key);
        for port in &svc.ports {
            let pname = svc.port_name(port);
            let proto = port.proto.lower();
            if rs.endpoints.is_empty() {
                // kube-proxy: a service without ready endpoints gets a REJECT in filter KUBE-SERVICES.
                let _ = writeln!(
                    filter_rules,
                    "-A KUBE-SERVICES -d {}/32 -p {proto} -m comment --comment \"{pname} has no endpoints\" -m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    svc.vip, port.port
                );
                continue;
            }
            let svc_chain = svc_chain(&pname, port.proto);
            let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
            if !omitted {
                let _ = writeln!(
                    svc_jumps,
                    "-A KUBE-SERVICES -d {}/32 -p {proto} -m comment --comment \"{pname} cluster IP\" -m {proto} --dport {} -j {svc_chain}",
                    svc.vip, port.port
                );
            }
            if !opts.cluster_cidr.is_empty() {
                let _ = writeln!(
                    nat_rules,
                    "-A {svc_chain} ! -s {} -d {}/32 -p {proto} -m comment --comment \"{pname} cluster IP\" -m {proto} --dport {} -j KUBE-MARK-MASQ",
                    opts.cluster_cidr, svc.vip, port.port
                );
            }
            let mut eps: Vec<String> = rs
                .endpoints
                .iter()
                .map(|ip| format!("{ip}:{}", port.target_port))
                .collect();
            eps.sort();
            let n = eps.len();
            for (i, ep) in eps.iter().enumerate() {
                let sep = sep_chain(&pname, port.proto, ep);
                let _ = writeln!(nat_chains, ":{sep} - [0:0]");
                let remaining = n - i;
                if remaining > 1 {
                    let _ = writeln!(
                        nat_rules,
                        "-A {svc_chain} -m comment --comment \"{pname} -> {ep}\" -m statistic --mode random --probability {:.11} -j {sep}",
                        1.0 / remaining as f64
                    );
                } else {
                    let _ = writeln!(
                        nat_rules,
                        "-A {svc_chain} -m comment --comment \"{pname} -> {ep}\" -j {sep}"
                    );
                }
                let ip = ep.split(':').next().unwrap_or(ep);
                let _ = writeln!(
                    nat_rules,
                    "-A {sep} -s {ip}/32 -m comment --comment \"{pname}\" -j KUBE-MARK-MASQ"
                );
                let _ = writeln!(
                    nat_rules,
                    "-A {sep} -p {proto} -m comment --comment \"{pname}\" -m {proto} -j DNAT --to-destination {ep}"
                );
            }
        }
    }
    if let Some(cni) = &opts.cni_nat {
        for c in &cni.chains {
            let _ = writeln!(nat_chains, ":{c} - [0:0]");
        }
        for r in &cni.rules {
            let _ = writeln!(nat_rules, "{r}");
        }
    }
    svc_jumps.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");

    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{filter_chains}{filter_rules}COMMIT\n\
         *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{nat_chains}{nat_rules}{svc_jumps}COMMIT\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_real_kube_proxy() {
        // Names seen on every real cluster for these well-known service ports.
        assert_eq!(
            svc_chain("kube-system/kube-dns:dns", Proto::Udp),
            "KUBE-SVC-TCOU7JCQXEZGVUNU"
        );
        assert_eq!(
            svc_chain("kube-system/kube-dns:dns-tcp", Proto::Tcp),
            "KUBE-SVC-ERIFXISQEP7F7OF4"
        );
        assert_eq!(
            svc_chain("default/kubernetes:https", Proto::Tcp),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
    }

    #[test]
    fn render_spreads_probability_and_rejects_empty() {
        let web = ResolvedService {
            service: LabService::with_ips(
                "default",
                "web",
                Ipv4Addr::new(10, 96, 1, 1),
                vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
                vec![],
            ),
            endpoints: vec![
                Ipv4Addr::new(10, 244, 0, 3),
                Ipv4Addr::new(10, 244, 0, 2),
                Ipv4Addr::new(10, 244, 0, 4),
            ],
        };
        let empty = ResolvedService {
            service: LabService::with_ips(
                "default",
                "noep",
                Ipv4Addr::new(10, 96, 1, 2),
                vec![LabPort::new("http", 80, Proto::Tcp)],
                vec![],
            ),
            endpoints: vec![],
        };
        let opts = RenderOptions {
            cluster_cidr: "10.244.0.0/16".into(),
            ..Default::default()
        };
        let out = render(&[web.clone(), empty], &opts);
        assert!(out.contains("--probability 0.33333333333 -j KUBE-SEP-"));
        assert!(out.contains("--probability 0.50000000000 -j KUBE-SEP-"));
        assert!(out.contains("DNAT --to-destination 10.244.0.2:8080"));
        assert!(out.contains("\"default/noep:http has no endpoints\""));
        assert!(out.contains("-A KUBE-SERVICES -d 10.96.1.1/32 -p tcp"));
        let omitted = render(
            &[web],
            &RenderOptions {
                omit_from_services: ["default/web".to_string()].into(),
                ..opts
            },
        );
        assert!(!omitted.contains("-A KUBE-SERVICES -d 10.96.1.1/32"));
        assert!(omitted.contains("-A KUBE-SEP-"));
    }

    #[test]
    fn cni_masquerade_lands_in_the_nat_table() {
        let with = render(
            &[],
            &RenderOptions {
                cluster_cidr: "10.244.0.0/16".into(),
                cni_nat: Some(CniNat::flannel("10.244.0.0/16", "10.244.3.0/24", true)),
                ..Default::default()
            },
        );
        let nat = &with[with.find("*nat").unwrap()..];
        assert!(nat.contains(":FLANNEL-POSTRTG - [0:0]\n"));
        assert!(nat.contains(
            "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
        ));
        assert!(nat.contains("-A FLANNEL-POSTRTG -s 10.244.3.0/24 -d 10.244.0.0/16 "));
        assert!(nat.contains(
            "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n"
        ));
        let without = render(&[], &RenderOptions::default());
        assert!(!without.contains("FLANNEL-POSTRTG"));
        let old_iptables = CniNat::flannel("10.244.0.0/16", "10.244.3.0/24", false).rules;
        assert!(old_iptables.iter().any(|r| r.ends_with("-j MASQUERADE")));
        assert!(!old_iptables.iter().any(|r| r.contains("--random-fully")));
        let calico = render(
            &[],
            &RenderOptions {
                cni_nat: Some(CniNat::calico()),
                ..Default::default()
            },
        );
        assert!(calico.contains("--match-set cali40masq-ipam-pools src"));
        assert!(
            CniNat::calico_ipsets("10.244.0.0/16")
                .contains("add cali40masq-ipam-pools 10.244.0.0/16")
        );
    }
}
