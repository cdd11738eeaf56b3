//! `netsnap-analyze trace` checked against the kernel's own trace (issue 17): in a lab node
//! chains at priority -350 on the prerouting and output hooks set `meta nftrace set 1` for
//! the flow,
//! `nft monitor trace` prints every rule of the iptables-nft tables the real packet
//! matches, and after a collection `netsnap-analyze trace` must agree hop by hop: the DNAT
//! target is one of its branches, and in that branch the rules that matched in every table
//! (raw, mangle, nat, filter, security), in order, each with its chain and action (jump,
//! return, DNAT and its address, MARK, MASQUERADE, REJECT, the policy), are the kernel's,
//! the verdict (passed or dropped/rejected) is the kernel's, and the egress device is the
//! kernel's (and `ip route get`'s).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use netsnap_lab::{
    LabApiServer, LabGuard, LabNode, LabPod, LabPort, LabService, Proto, require_lab,
};

const API_ARGS: &[&str] = &["--sample-interval", "0.2", "--quiet"];

fn ready() -> Option<(LabGuard, PathBuf)> {
    let lab = require_lab()?;
    if !lab.require_collector() || !lab.require_tools(&["nft", "dnsmasq", "dig"]) {
        return None;
    }
    let p = netsnap_lab::analyzer_bin()?;
    Some((lab, p))
}

fn collect_bundle(node: &LabNode) -> PathBuf {
    let api = LabApiServer::start(node).unwrap();
    let kc = api.kubeconfig.to_string_lossy().into_owned();
    let args: Vec<&str> = API_ARGS
        .iter()
        .copied()
        .chain(["--kubeconfig", &kc, "--node-name", node.name()])
        .collect();
    let run = node.collect(&args).unwrap();
    assert!(
        run.output.success(),
        "collector failed: {}",
        run.output.stderr
    );
    run.bundle
}

/// One line of `nft monitor trace` for the traced packet.
#[derive(Debug, Clone)]
struct KLine {
    table: String,
    chain: String,
    /// `rule`, `policy`, `packet:`, `verdict`.
    kind: String,
    rest: String,
}

/// Runs `send` with tracing on for packets from `src` to `dst`; returns the lines of the
/// first traced packet.
fn kernel_trace(node: &LabNode, src: Ipv4Addr, dst: Ipv4Addr, send: impl FnOnce()) -> Vec<KLine> {
    kernel_traces(node, src, dst, 4, send).swap_remove(0)
}

/// Runs `send` with tracing on for `secs` seconds for packets from `src` to `dst` (arriving,
/// at prerouting, or sent by the node itself, at output); returns the lines of the first
/// traced packet of each connection (source port), in order.
fn kernel_traces(
    node: &LabNode,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    secs: u64,
    send: impl FnOnce(),
) -> Vec<Vec<KLine>> {
    let file = node.tmp_dir().join("nft-trace.txt");
    let start = std::time::Instant::now();
    node.sh(&format!(
        "nft add table ip nstrace && \
         nft add chain ip nstrace pre '{{ type filter hook prerouting priority -350; }}' && \
         nft add rule ip nstrace pre ip saddr {src} ip daddr {dst} meta nftrace set 1 && \
         nft add chain ip nstrace out '{{ type filter hook output priority -350; }}' && \
         nft add rule ip nstrace out ip saddr {src} ip daddr {dst} meta nftrace set 1 && \
         (timeout {secs} nft monitor trace > {} 2>&1 &) ; sleep 0.5",
        file.display()
    ))
    .unwrap();
    send();
    // Until the monitor has ended (and written everything).
    let end = Duration::from_secs(secs) + Duration::from_millis(300);
    std::thread::sleep(end.saturating_sub(start.elapsed()));
    node.sh("nft delete table ip nstrace").unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    // A packet is identified by its IP id and source port: the kernel may give it a new
    // trace id after a hook (a forwarded skb reallocated for the output device).
    let key = |l: &str| -> Option<(String, String)> {
        let id = l.split(" ip id ").nth(1)?.split(' ').next()?;
        let sport = l.split(" sport ").nth(1)?.split(' ').next()?;
        Some((id.to_string(), sport.to_string()))
    };
    // The first packet of each connection, in order.
    let mut firsts: Vec<(String, String)> = Vec::new();
    for k in text
        .lines()
        .filter(|l| l.contains(" packet: "))
        .filter_map(key)
    {
        if !firsts.iter().any(|f| f.1 == k.1) {
            firsts.push(k);
        }
    }
    assert!(!firsts.is_empty(), "no packet traced: {text}");
    firsts
        .iter()
        .map(|first| {
            let ids: std::collections::BTreeSet<String> = text
                .lines()
                .filter(|l| l.contains(" packet: ") && key(l).as_ref() == Some(first))
                .filter_map(|l| {
                    l.strip_prefix("trace id ")
                        .and_then(|r| r.split(' ').next())
                })
                .map(str::to_string)
                .collect();
            text.lines()
                .filter_map(|l| {
                    let r = l.strip_prefix("trace id ")?;
                    let (id, rest) = r.split_once(' ')?;
                    if ids.contains(id) {
                        rest.strip_prefix("ip ")
                    } else {
                        None
                    }
                })
                .map(|l| {
                    let mut it = l.splitn(4, ' ');
                    KLine {
                        table: it.next().unwrap_or_default().to_string(),
                        chain: it.next().unwrap_or_default().to_string(),
                        kind: it.next().unwrap_or_default().to_string(),
                        rest: it.next().unwrap_or_default().to_string(),
                    }
                })
                .collect()
        })
        .collect()
}

/// The kernel's DNAT target of a traced packet (`10.244.0.3:8080`), if any.
fn kernel_dnat(k: &[KLine]) -> Option<String> {
    k.iter()
        .find_map(|l| l.rest.split("dnat to ").nth(1))
        .map(|r| r.split(' ').next().unwrap().to_string())
}

/// The DNAT targets of our branches.
fn our_dnats(t: &serde_json::Value) -> std::collections::BTreeSet<String> {
    t["branches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| {
            let s = b.to_string();
            let to = s.split("DNAT to ").nth(1)?;
            Some(
                to.split(|c: char| c != '.' && c != ':' && !c.is_ascii_digit())
                    .next()?
                    .to_string(),
            )
        })
        .collect()
}

/// Opens `n` TCP connections from `pod` to `dst:port`, one after the other.
fn connect_n(node: &LabNode, pod: &LabPod, dst: Ipv4Addr, port: u16, n: usize) {
    node.run_in_pod(
        pod,
        &[
            "bash",
            "-c",
            &format!(
                "for i in $(seq {n}); do timeout 1 bash -c 'echo > /dev/tcp/{dst}/{port}' 2>/dev/null; done; true"
            ),
        ],
    )
    .unwrap();
}

/// The netfilter tables a trace is compared in: every table the kernel or we went through,
/// but the tracing table itself.
const TABLES: &[&str] = &["raw", "mangle", "nat", "filter", "security"];

/// The kernel's rule (or policy) steps in one table, in order: `(chain, action)` with the
/// action in the evaluator's words (`jump X`, `return`, `DNAT 10.244.0.3:8080`,
/// `MASQUERADE`, `MARK`, `REJECT`, `policy ACCEPT`, …). `nft monitor trace` prints a rule
/// line for each rule whose matches all held (a rule without a verdict, like a counter or
/// `meta mark set`, with `(verdict continue)`), and a policy line when a base chain ends.
fn kernel_steps(k: &[KLine], table: &str) -> Vec<(String, String)> {
    k.iter()
        .filter(|l| l.table == table && (l.kind == "rule" || l.kind == "policy"))
        .map(|l| (l.chain.clone(), kernel_action(l)))
        .collect()
}

fn kernel_action(l: &KLine) -> String {
    let rest = l.rest.trim();
    if l.kind == "policy" {
        // `policy accept`, followed by the packet's mark when it has one
        // (`policy accept meta mark 0x00004000`).
        let p = rest.split(' ').next().unwrap_or_default();
        return format!("policy {}", p.to_ascii_uppercase());
    }
    let verdict = rest
        .rsplit_once("(verdict ")
        .map(|(_, v)| v.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no verdict in kernel rule line: {rest}"));
    let mut words = verdict.split_whitespace();
    match words.next().unwrap_or_default() {
        "jump" | "goto" => verdict.to_string(),
        "return" => "return".to_string(),
        "accept" => {
            if let Some(to) = rest.split("dnat to ").nth(1) {
                format!("DNAT {}", to.split(' ').next().unwrap())
            } else if rest.contains(" masquerade") {
                "MASQUERADE".to_string()
            } else if rest.contains(" snat to ") {
                "SNAT".to_string()
            } else if rest.contains(" redirect") {
                "REDIRECT".to_string()
            } else {
                "ACCEPT".to_string()
            }
        }
        "drop" if rest.contains(" reject") => "REJECT".to_string(),
        "drop" => "DROP".to_string(),
        "continue" if rest.contains("meta mark set") => "MARK".to_string(),
        _ => verdict.to_string(),
    }
}

/// Our steps in one table (all its hops in that table, in order), in the same words as
/// [`kernel_action`].
fn our_steps(branch: &serde_json::Value, table: &str) -> Vec<(String, String)> {
    branch["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h["stage"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{table} "))
        })
        .flat_map(|h| h["rules"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            let chain = s["chain"].as_str().unwrap().to_string();
            let a = s["action"].as_str().unwrap();
            let mut w = a.split_whitespace();
            let first = w.next().unwrap_or_default();
            let action = match first {
                "jump" | "goto" | "policy" => a.to_string(),
                "DNAT" => format!(
                    "DNAT {}",
                    a.split("--to-destination ").nth(1).unwrap_or("?")
                ),
                _ => first.to_string(),
            };
            (chain, action)
        })
        .collect()
}

fn same_steps(k: &[KLine], branch: &serde_json::Value) -> bool {
    TABLES
        .iter()
        .all(|t| our_steps(branch, t) == kernel_steps(k, t))
}

/// Runs `netsnap-analyze trace --format json`.
fn our_trace(bin: &PathBuf, bundle: &PathBuf, from: &str, to: &str) -> serde_json::Value {
    let out = Command::new(bin)
        .args(["trace", "--format", "json"])
        .arg(bundle)
        .args(["--from", from, "--to", to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts the trace agrees with the kernel; returns the matching branch.
fn agree(k: &[KLine], t: &serde_json::Value) -> serde_json::Value {
    let dnat = kernel_dnat(k);
    let branches = t["branches"].as_array().unwrap();
    let same_dnat: Vec<&serde_json::Value> = branches
        .iter()
        .filter(|b| match &dnat {
            Some(to) => b.to_string().contains(&format!("DNAT to {to}")),
            None => !b.to_string().contains("DNAT to"),
        })
        .collect();
    assert!(
        !same_dnat.is_empty(),
        "kernel DNAT {dnat:?} is none of the branches: {t}"
    );
    // Among those, the branch whose assumptions (an ipset's contents, an interface) the
    // kernel confirmed: its matched rules are the kernel's. Without one, the first shows the diff.
    let branch = same_dnat
        .iter()
        .find(|b| same_steps(k, b))
        .unwrap_or(&same_dnat[0])
        .to_owned()
        .clone();
    // The packet went through netfilter: a comparison over no rule would prove nothing.
    assert!(
        !kernel_steps(k, "nat").is_empty(),
        "the kernel traced no nat rule: {k:#?}"
    );
    for table in TABLES {
        assert_eq!(
            our_steps(&branch, table),
            kernel_steps(k, table),
            "{table} rules differ\nkernel:\n{}\nours: {branch}",
            k.iter()
                .map(|l| format!("{} {} {} {}", l.table, l.chain, l.kind, l.rest))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let last_verdict = k
        .iter()
        .rev()
        .find(|l| l.kind == "rule" || l.kind == "policy")
        .map(|l| l.rest.clone())
        .unwrap_or_default();
    // Dropped by a rule, or by routing (ip_forward=0): no hook after PREROUTING was reached.
    let reached_after = k.iter().any(|l| {
        matches!(l.chain.as_str(), "FORWARD" | "INPUT" | "POSTROUTING") && l.table != "nstrace"
    });
    let kernel_blocked = last_verdict.ends_with("(verdict drop)")
        || last_verdict.starts_with("drop")
        || !reached_after;
    let ours = branch["outcome"]["kind"].as_str().unwrap();
    assert_eq!(
        kernel_blocked,
        matches!(ours, "rejected" | "dropped"),
        "verdict: kernel {last_verdict:?}, ours {ours}: {branch}"
    );
    // The egress device: the kernel's first packet line after routing (FORWARD, or
    // POSTROUTING) names it, also when a FORWARD rule then rejects the packet.
    if let Some(oif) = k
        .iter()
        .find(|l| {
            l.table != "nstrace"
                && matches!(l.chain.as_str(), "FORWARD" | "POSTROUTING")
                && l.kind == "packet:"
        })
        .and_then(|l| l.rest.split("oif \"").nth(1))
        .map(|r| r.split('"').next().unwrap().to_string())
    {
        let route = branch["hops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["stage"] == "route")
            .unwrap();
        assert!(
            route["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("dev {oif}")),
            "kernel oif {oif}, ours {route}"
        );
    }
    branch
}

fn connect(node: &LabNode, pod: &LabPod, dst: Ipv4Addr, port: u16) {
    node.run_in_pod(
        pod,
        &[
            "bash",
            "-c",
            &format!("timeout 2 bash -c 'echo > /dev/tcp/{dst}/{port}' 2>/dev/null; true"),
        ],
    )
    .unwrap();
}

fn ip_route_get(node: &LabNode, dst: &str, src: Ipv4Addr, iif: &str) -> String {
    node.run_in_node(&[
        "ip",
        "route",
        "get",
        dst,
        "from",
        &src.to_string(),
        "iif",
        iif,
    ])
    .map(|o| o.stdout)
    .unwrap_or_default()
}

fn web() -> LabService {
    LabService::selecting(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 0, 20),
        vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
        ("app", "web"),
    )
}

/// Every endpoint, not only the one a single connection happens to pick: 16 connections
/// (each a new random pick of one of the two endpoints; both are picked but with
/// probability 2^-15), every one compared with our branch of the endpoint it went to, and
/// the kernel's DNAT targets must be exactly our branches' (the pod itself, hairpin:
/// marked and masqueraded, and the other pod).
#[test]
fn healthy_pod_to_service_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(2).service(web()).build().unwrap();
    let pod = node.pods()[0].clone();
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let ks = kernel_traces(&node, pod.ip, vip, 12, || {
        connect_n(&node, &pod, vip, 80, 16)
    });
    assert!(ks.len() >= 16, "{} connections traced", ks.len());
    let bundle = collect_bundle(&node);
    let t = our_trace(
        &bin,
        &bundle,
        &format!("{}/{}", pod.namespace, pod.name),
        "10.96.0.20:80/tcp",
    );
    let mut chosen_all = std::collections::BTreeSet::new();
    for k in &ks {
        let b = agree(k, &t);
        assert_eq!(b["outcome"]["kind"], "delivered", "{b}");
        // `ip route get` for the endpoint the kernel chose gives our egress device.
        let ep = b["outcome"]["detail"].as_str().unwrap().to_string();
        let chosen = kernel_dnat(k).unwrap();
        let ip = chosen.split(':').next().unwrap().to_string();
        let rg = ip_route_get(&node, &ip, pod.ip, "cni0");
        let dev = rg.split(" dev ").nth(1).unwrap().split(' ').next().unwrap();
        assert!(ep.ends_with(&format!("out of {dev}")), "{rg} / {ep}");
        chosen_all.insert(chosen);
    }
    assert_eq!(chosen_all, our_dnats(&t), "{t}");
    assert_eq!(chosen_all.len(), 2, "{chosen_all:?}");
}

#[test]
fn service_without_endpoints_rejects_like_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let vip = Ipv4Addr::new(10, 96, 0, 30);
    let node = lab
        .node()
        .flannel()
        .pods(1)
        .service(LabService::selecting(
            "default",
            "empty",
            vip,
            vec![LabPort::new("http", 80, Proto::Tcp)],
            ("app", "nothing"),
        ))
        .build()
        .unwrap();
    let pod = node.pods()[0].clone();
    let k = kernel_trace(&node, pod.ip, vip, || connect(&node, &pod, vip, 80));
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), "10.96.0.30:80/tcp");
    let b = agree(&k, &t);
    assert_eq!(b["outcome"]["kind"], "rejected", "{b}");
    assert!(
        b["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("KUBE-SERVICES"),
        "{b}"
    );
}

#[test]
fn forward_reject_before_cni_accept_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(1).build().unwrap();
    let pod = node.pods()[0].clone();
    let ipt = node.backends()[0].iptables();
    node.sh(&format!(
        "{ipt} -A FORWARD -j REJECT --reject-with icmp-host-prohibited && {ipt} -N FLANNEL-FWD && \
         {ipt} -A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT && {ipt} -A FORWARD -j FLANNEL-FWD"
    ))
    .unwrap();
    let peer: Ipv4Addr = node.peer_pod_cidr().replace(".0/24", ".5").parse().unwrap();
    let k = kernel_trace(&node, pod.ip, peer, || connect(&node, &pod, peer, 8080));
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), &format!("{peer}:8080"));
    let b = agree(&k, &t);
    assert_eq!(b["outcome"]["kind"], "rejected", "{b}");
    assert!(
        b["outcome"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("REJECT (icmp-host-prohibited) at FORWARD"),
        "{b}"
    );
}

#[test]
fn ip_forward_off_stops_after_prerouting_like_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(2).service(web()).build().unwrap();
    node.set_ip_forward(false).unwrap();
    let pod = node.pods()[0].clone();
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let k = kernel_trace(&node, pod.ip, vip, || connect(&node, &pod, vip, 80));
    // The kernel never reaches FORWARD.
    assert!(k.iter().all(|l| l.chain != "FORWARD"), "{k:#?}");
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), "10.96.0.20:80/tcp");
    let b = agree(&k, &t);
    assert_eq!(b["outcome"]["kind"], "dropped", "{b}");
    assert!(
        b["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("ip_forward=0")
    );
}

#[test]
fn missing_route_to_the_other_nodes_pods_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(1).build().unwrap();
    let pod = node.pods()[0].clone();
    let peer: Ipv4Addr = node.peer_pod_cidr().replace(".0/24", ".5").parse().unwrap();
    let bundle_ok = collect_bundle(&node);
    let t = our_trace(
        &bin,
        &bundle_ok,
        &pod.ip.to_string(),
        &format!("{peer}:8080"),
    );
    assert!(
        t["branches"][0]["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("flannel.1"),
        "{t}"
    );
    node.remove_peer_route().unwrap();
    let k = kernel_trace(&node, pod.ip, peer, || connect(&node, &pod, peer, 8080));
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), &format!("{peer}:8080"));
    let b = agree(&k, &t);
    assert!(
        b["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("out of eth0"),
        "{b}"
    );
    assert!(ip_route_get(&node, &peer.to_string(), pod.ip, "cni0").contains("dev eth0"));
}

#[test]
fn masquerade_removed_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().pods(1).build().unwrap();
    node.remove_pod_masquerade().unwrap();
    let pod = node.pods()[0].clone();
    let outside = Ipv4Addr::new(172, 18, 0, 1);
    let k = kernel_trace(&node, pod.ip, outside, || connect(&node, &pod, outside, 9));
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), "172.18.0.1:9");
    let b = agree(&k, &t);
    assert!(!b.to_string().contains("MASQUERADE"), "{b}");
    assert_eq!(b["outcome"]["kind"], "sent");
}

#[test]
fn dns_to_the_vip_and_to_the_endpoint_match_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().dns().pods(1).build().unwrap();
    let client = node
        .pods()
        .iter()
        .find(|p| Some(p.ip) != node.dns_pod().map(|d| d.ip))
        .unwrap()
        .clone();
    let dns = node.dns_pod().unwrap().clone();
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    for (dst, to) in [
        (vip, "10.96.0.10:53/udp".to_string()),
        (dns.ip, format!("{}:53/udp", dns.ip)),
    ] {
        let k = kernel_trace(&node, client.ip, dst, || {
            let _ = node.dig_from(&client, dst, "kubernetes.default.svc.cluster.local", false);
        });
        let bundle = collect_bundle(&node);
        let t = our_trace(&bin, &bundle, &client.ip.to_string(), &to);
        let b = agree(&k, &t);
        assert_eq!(b["outcome"]["kind"], "delivered", "{b}");
        assert!(
            b["outcome"]["detail"].as_str().unwrap().contains(&dns.name),
            "{b}"
        );
    }
}

/// As on the flannel node, every endpoint: 16 connections, each compared with our branch.
#[test]
fn healthy_routed_node_pod_to_service_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().routed().pods(2).service(web()).build().unwrap();
    let pod = node.pods()[0].clone();
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let ks = kernel_traces(&node, pod.ip, vip, 12, || {
        connect_n(&node, &pod, vip, 80, 16)
    });
    assert!(ks.len() >= 16, "{} connections traced", ks.len());
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), "10.96.0.20:80/tcp");
    let mut chosen_all = std::collections::BTreeSet::new();
    for k in &ks {
        let b = agree(k, &t);
        assert_eq!(b["outcome"]["kind"], "delivered", "{b}");
        // Routed (calico-style): the packet enters on the pod's own veth, not a bridge.
        let iif = k
            .iter()
            .find(|l| l.kind == "packet:")
            .and_then(|l| l.rest.split("iif \"").nth(1))
            .map(|r| r.split('"').next().unwrap().to_string())
            .unwrap();
        assert!(
            b["hops"][1]["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("host side {iif} (routed)")),
            "{iif}: {b}"
        );
        chosen_all.insert(kernel_dnat(k).unwrap());
    }
    assert_eq!(chosen_all, our_dnats(&t), "{t}");
    assert_eq!(chosen_all.len(), 2, "{chosen_all:?}");
}

#[test]
fn service_missing_from_kube_services_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let mut node = lab.node().flannel().pods(2).service(web()).build().unwrap();
    node.omit_from_kube_services("default", "web").unwrap();
    let pod = node.pods()[0].clone();
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let k = kernel_trace(&node, pod.ip, vip, || connect(&node, &pod, vip, 80));
    assert!(
        k.iter().all(|l| !l.rest.contains("dnat to")),
        "the kernel DNATed"
    );
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &pod.ip.to_string(), "10.96.0.20:80/tcp");
    let b = agree(&k, &t);
    assert_eq!(b["outcome"]["kind"], "sent", "{b}");
    assert!(
        t["notes"]
            .to_string()
            .contains("no kube-proxy rule DNATed the packet"),
        "{t}"
    );
}

/// A host-network process (the node's own address) to a Service: the OUTPUT path (nat
/// OUTPUT DNATs, then filter OUTPUT and nat POSTROUTING), every endpoint as above.
#[test]
fn host_to_service_matches_the_kernel() {
    let Some((lab, bin)) = ready() else { return };
    let node = lab.node().flannel().pods(2).service(web()).build().unwrap();
    let src = node.node_ip();
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let ks = kernel_traces(&node, src, vip, 12, || {
        node.run_in_node(&[
            "bash",
            "-c",
            &format!(
                "for i in $(seq 16); do timeout 1 bash -c 'echo > /dev/tcp/{vip}/80' 2>/dev/null; done; true"
            ),
        ])
        .unwrap();
    });
    assert!(ks.len() >= 16, "{} connections traced", ks.len());
    // The kernel saw these at output: no prerouting for a locally sent packet.
    assert!(
        ks.iter().all(|k| k
            .iter()
            .all(|l| l.chain != "PREROUTING" && l.chain != "FORWARD")),
        "{ks:#?}"
    );
    let bundle = collect_bundle(&node);
    let t = our_trace(&bin, &bundle, &src.to_string(), "10.96.0.20:80/tcp");
    assert_eq!(t["from"]["kind"], "host", "{t}");
    let mut chosen_all = std::collections::BTreeSet::new();
    for k in &ks {
        let b = agree(k, &t);
        assert_eq!(b["outcome"]["kind"], "delivered", "{b}");
        chosen_all.insert(kernel_dnat(k).unwrap());
    }
    assert_eq!(chosen_all, our_dnats(&t), "{t}");
    assert_eq!(chosen_all.len(), 2, "{chosen_all:?}");
}
