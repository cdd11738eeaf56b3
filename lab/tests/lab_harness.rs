//! Self-tests of the lab harness: each checks with the real tools (ip, dig,
//! conntrack, iptables-*-save, /proc) that a lab node is what the harness says
//! it built. netsnap itself is not involved here.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test helpers outside #[test] fns; tests drive real programs

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use netsnap_lab::{Backend, CtEntry, DNS_VIP, LabPort, LabService, Proto, VXLAN_MTU, require_lab};

const KUBERNETES: &str = "kubernetes.default.svc.cluster.local";

#[test]
fn node_namespaces_are_isolated_and_list_the_pods() {
    let Some(lab) = require_lab() else { return };
    let node = lab.node().pods(3).build().unwrap();

    // `ip netns list` inside the node shows exactly the pods, nothing of the host.
    let names: BTreeSet<String> = node.netns_names().unwrap().into_iter().collect();
    let want: BTreeSet<String> = node.pods().iter().map(|p| p.netns.clone()).collect();
    assert_eq!(names, want);
    assert!(names.iter().all(|n| n.starts_with("cni-")));

    // The PID namespace holds only the holder, the pause processes and this `ps`.
    let ps = node
        .run_in_node(&["ps", "-eo", "pid=,comm="])
        .unwrap()
        .stdout;
    let comms: Vec<&str> = ps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(comms.iter().filter(|c| **c == "pause").count(), 3, "{ps}");
    assert!(comms.len() <= 5, "unexpected processes in the node: {ps}");
    let node_pids: BTreeSet<u32> = ps
        .lines()
        .filter(|l| l.contains("pause"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let want_pids: BTreeSet<u32> = node.pods().iter().map(|p| p.node_pid).collect();
    assert_eq!(node_pids, want_pids);

    // Hostname is the node name (own UTS namespace); the node netns is not the host's.
    assert_eq!(
        node.run_in_node(&["cat", "/proc/sys/kernel/hostname"])
            .unwrap()
            .stdout
            .trim(),
        node.name()
    );
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let node_ns = std::fs::read_link(format!("/proc/{}/ns/net", node.pid1())).unwrap();
    assert_ne!(host_ns, node_ns);

    // Each pause process really sits in its own netns, the one named for it.
    for p in node.pods() {
        let ns = std::fs::read_link(format!("/proc/{}/ns/net", p.pause_pid)).unwrap();
        assert_ne!(ns, node_ns);
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pause_pid)).unwrap();
        assert_eq!(comm.trim(), "pause");
        let inode = node
            .run_in_node(&["stat", "-L", "-c", "%i", &format!("/run/netns/{}", p.netns)])
            .unwrap()
            .stdout;
        assert_eq!(ns.to_string_lossy(), format!("net:[{}]", inode.trim()));
    }
    // The host's /run/netns does not see the lab.
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        let host: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        for p in node.pods() {
            assert!(!host.iter().any(|h| h.to_string_lossy() == p.netns));
        }
    }
}

#[test]
fn bridge_pods_reach_each_other_and_dns_answers_via_the_vip() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["dnsmasq", "dig"]) {
        return;
    }
    let mut node = lab.node().flannel().dns().pods(2).build().unwrap();
    let dns = node.dns_pod().unwrap().clone();
    let client = node.pods()[1].clone();
    assert_ne!(client.ip, dns.ip);

    // Pod to pod across cni0 (directly to the DNS pod's IP).
    let direct = node.dig_from(&client, dns.ip, KUBERNETES, false).unwrap();
    assert_eq!(direct, vec!["10.96.0.1"]);
    // Through the kube-dns VIP: only works because the DNAT is real.
    let via_vip = node.dig_from(&client, DNS_VIP, KUBERNETES, false).unwrap();
    assert_eq!(via_vip, vec!["10.96.0.1"]);
    let via_vip_tcp = node.dig_from(&client, DNS_VIP, KUBERNETES, true).unwrap();
    assert_eq!(via_vip_tcp, vec!["10.96.0.1"]);
    // The query left a DNATed conntrack entry: original dst the VIP, reply from the pod.
    let ct = node
        .run_in_node(&["conntrack", "-L", "-p", "udp", "--orig-dst", "10.96.0.10"])
        .unwrap()
        .stdout;
    assert!(
        ct.contains(&format!("src={} dst={}", dns.ip, client.ip)),
        "{ct}"
    );
    // Unknown cluster names are NXDOMAIN, not a timeout.
    let nx = node
        .run_in_pod(
            &client,
            &[
                "dig",
                "+time=1",
                "+tries=1",
                "@10.96.0.10",
                "nope.default.svc.cluster.local",
            ],
        )
        .unwrap();
    assert!(nx.stdout.contains("status: NXDOMAIN"), "{}", nx.stdout);

    // The pod's resolv.conf is visible through /proc/<pid>/root like a real container's.
    let resolv =
        std::fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", client.pause_pid))
            .unwrap();
    assert_eq!(resolv, client.resolv_conf);
    assert!(resolv.contains("nameserver 10.96.0.10"));

    node.stop_dns().unwrap();
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_err());
    assert!(node.dig_from(&client, dns.ip, KUBERNETES, false).is_err());
    node.start_dns().unwrap();
    assert_eq!(
        node.dig_from(&client, DNS_VIP, KUBERNETES, false).unwrap(),
        vec!["10.96.0.1"]
    );
}

#[test]
fn missing_kube_services_rule_breaks_the_vip_but_not_the_endpoint() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["dnsmasq", "dig"]) {
        return;
    }
    let mut node = lab.node().routed().dns().pods(1).build().unwrap();
    let dns_ip = node.dns_pod().unwrap().ip;
    let client = node.pods()[1].clone();
    assert_eq!(
        node.dig_from(&client, DNS_VIP, KUBERNETES, false).unwrap(),
        vec!["10.96.0.1"]
    );

    node.omit_from_kube_services("kube-system", "kube-dns")
        .unwrap();
    let save = node
        .run_in_node(&["iptables-nft-save", "-t", "nat"])
        .unwrap()
        .stdout;
    assert!(
        !save.contains("-A KUBE-SERVICES -d 10.96.0.10/32"),
        "{save}"
    );
    assert!(save.contains(":KUBE-SVC-TCOU7JCQXEZGVUNU"));
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_err());
    assert_eq!(
        node.dig_from(&client, dns_ip, KUBERNETES, false).unwrap(),
        vec!["10.96.0.1"]
    );
}

#[test]
fn routed_style_has_cali_veths_host_routes_and_proxy_arp() {
    let Some(lab) = require_lab() else { return };
    let node = lab.node().routed().pods(3).build().unwrap();
    let routes = node
        .run_in_node(&["ip", "-4", "route", "show"])
        .unwrap()
        .stdout;
    for p in node.pods() {
        assert!(
            p.host_veth.starts_with("cali") && p.host_veth.len() == 15,
            "{}",
            p.host_veth
        );
        assert!(
            routes.contains(&format!("{} dev {} scope link", p.ip, p.host_veth)),
            "{routes}"
        );
        let addrs = node
            .run_in_node(&["ip", "-4", "-o", "addr", "show", "dev", &p.host_veth])
            .unwrap()
            .stdout;
        assert!(addrs.trim().is_empty(), "cali veth has an address: {addrs}");
        assert_eq!(
            node.sysctl(&format!("net.ipv4.conf.{}.proxy_arp", p.host_veth))
                .unwrap(),
            "1"
        );
        let pod_routes = node
            .run_in_node(&["ip", "-n", &p.netns, "route"])
            .unwrap()
            .stdout;
        assert!(
            pod_routes.contains("default via 169.254.1.1 dev eth0"),
            "{pod_routes}"
        );
        let pod_addr = node
            .run_in_node(&["ip", "-n", &p.netns, "-o", "addr", "show", "eth0"])
            .unwrap()
            .stdout;
        assert!(pod_addr.contains(&format!("{}/32", p.ip)), "{pod_addr}");
    }
    assert_eq!(node.sysctl("net.ipv4.ip_forward").unwrap(), "1");
}

#[test]
fn flannel_style_has_vxlan_1450_and_veths_on_cni0_with_peer_indexes() {
    let Some(lab) = require_lab() else { return };
    let node = lab.node().flannel().pods(3).build().unwrap();
    let vx = node
        .run_in_node(&["ip", "-d", "link", "show", "flannel.1"])
        .unwrap()
        .stdout;
    assert!(
        vx.contains(&format!("mtu {VXLAN_MTU}")) && vx.contains("vxlan id 1"),
        "{vx}"
    );
    let env = node
        .run_in_node(&["cat", "/run/flannel/subnet.env"])
        .unwrap()
        .stdout;
    assert!(
        env.contains("FLANNEL_MTU=1450") && env.contains("FLANNEL_SUBNET=10.244.0.1/24"),
        "{env}"
    );
    // CNI and kubelet files live in the node's private /etc and /var/lib overlays.
    let conf = node
        .run_in_node(&["cat", "/etc/cni/net.d/10-flannel.conflist"])
        .unwrap()
        .stdout;
    let conf: serde_json::Value = serde_json::from_str(&conf).unwrap();
    assert_eq!(conf["plugins"][0]["type"], "flannel");
    let kubelet = node
        .run_in_node(&["cat", "/var/lib/kubelet/config.yaml"])
        .unwrap()
        .stdout;
    assert!(kubelet.contains("clusterDNS:\n- 10.96.0.10"), "{kubelet}");
    for p in node.pods() {
        let ipam = node
            .run_in_node(&["cat", &format!("/var/lib/cni/networks/cbr0/{}", p.ip)])
            .unwrap()
            .stdout;
        assert_eq!(ipam, format!("{}\r\neth0", p.container_id));
        let host = node
            .run_in_node(&["ip", "-o", "link", "show", &p.host_veth])
            .unwrap()
            .stdout;
        assert!(host.contains("master cni0"), "{host}");
        // The pod's eth0@ifN names the host veth's index: the pair is real.
        let pod = node
            .run_in_node(&["ip", "-n", &p.netns, "-o", "link", "show", "eth0"])
            .unwrap()
            .stdout;
        let host_idx: String = host.split(':').next().unwrap().trim().to_string();
        assert!(
            pod.contains(&format!("eth0@if{host_idx}")),
            "{pod} vs {host}"
        );
        assert!(pod.contains(&format!("mtu {}", p.mtu)));
        // /sys inside the node is the node netns's own sysfs (as on a real node).
        let hp = node
            .run_in_node(&[
                "cat",
                &format!("/sys/class/net/{}/brport/hairpin_mode", p.host_veth),
            ])
            .unwrap()
            .stdout;
        assert_eq!(hp.trim(), "1");
        let hairpin = node
            .run_in_node(&["bridge", "-d", "link", "show", "dev", &p.host_veth])
            .unwrap()
            .stdout;
        assert!(hairpin.contains("hairpin on"), "{hairpin}");
    }
}

#[test]
fn conntrack_counts_inserted_entries_and_nat_entries() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["conntrack"]) {
        return;
    }
    let node = lab.node().bridge().pods(1).build().unwrap();
    // A fresh node may already track a packet or two of its own (IPv6 ND on the uplink).
    let before = node.conntrack_count().unwrap();
    node.fill_conntrack(5000).unwrap();
    assert_count_near(node.conntrack_count().unwrap(), before + 5000);
    let stale = CtEntry::udp_dnat(
        node.pods()[0].ip,
        40000,
        DNS_VIP,
        53,
        (Ipv4Addr::new(10, 244, 0, 99), 53),
    );
    node.conntrack_insert(&[stale]).unwrap();
    assert_count_near(node.conntrack_count().unwrap(), before + 5001);
    node.fill_conntrack(100).unwrap();
    assert_count_near(node.conntrack_count().unwrap(), before + 5101);
    let l = node
        .run_in_node(&["conntrack", "-L", "-p", "udp"])
        .unwrap()
        .stdout;
    assert!(
        l.contains("src=10.244.0.99 dst=10.244.0.2 sport=53 dport=40000"),
        "{l}"
    );
    // The entries live in the node netns only: a fresh netns next to it sees none.
    let other = lab.node().bridge().build().unwrap();
    assert!(other.conntrack_count().unwrap() < 10);
}

#[test]
fn kube_proxy_rules_in_both_backends() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["iptables-legacy-restore", "iptables-nft-restore"]) {
        return;
    }
    let web = LabService::selecting(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 100, 1),
        vec![LabPort::new("http", 80, Proto::Tcp).target(8080)],
        ("app", "web"),
    );
    let empty = LabService::with_ips(
        "default",
        "noep",
        Ipv4Addr::new(10, 96, 100, 2),
        vec![LabPort::new("http", 80, Proto::Tcp)],
        vec![],
    );
    let mut node = lab
        .node()
        .bridge()
        .pods(3)
        .service(web)
        .service(empty)
        .backend(Backend::Legacy)
        .build()
        .unwrap();
    assert_eq!(node.backends(), &[Backend::Legacy]);
    let nft_before = node.run_in_node(&["iptables-nft-save"]).unwrap().stdout;
    assert!(!nft_before.contains("KUBE-SERVICES"), "{nft_before}");
    node.apply_iptables(Backend::Nft).unwrap();
    for b in [Backend::Legacy, Backend::Nft] {
        let save = node.run_in_node(&[b.save()]).unwrap().stdout;
        assert!(
            save.contains("-A KUBE-SERVICES -d 10.96.100.1/32 -p tcp"),
            "{b:?}: {save}"
        );
        assert!(save.contains("default/noep:http has no endpoints"), "{b:?}");
        // Three endpoints → probabilities 1/3, 1/2, then the last unconditional.
        assert!(
            save.contains("--probability 0.33333333349"),
            "{b:?}: {save}"
        );
        for p in node.pods() {
            assert!(
                save.contains(&format!("--to-destination {}:8080", p.ip)),
                "{b:?}"
            );
        }
    }
    // The host's own rules were not touched.
    let host = std::process::Command::new("iptables-legacy-save")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&host.stdout).contains("10.96.100.1"));
}

#[test]
fn faults_leak_orphan_mtu_sysctls() {
    let Some(lab) = require_lab() else { return };
    let mut node = lab.node().flannel().pods(2).build().unwrap();

    let leak = node.leak_netns().unwrap();
    let names = node.netns_names().unwrap();
    assert!(names.contains(&leak.netns));
    let ps = node.run_in_node(&["ps", "-eo", "comm="]).unwrap().stdout;
    assert_eq!(
        ps.lines().filter(|l| l.trim() == "pause").count(),
        2,
        "leak has no process"
    );
    let addr = node
        .run_in_node(&["ip", "-n", &leak.netns, "-o", "addr", "show", "eth0"])
        .unwrap()
        .stdout;
    assert!(addr.contains(&leak.ip.to_string()));

    let orphan = node.orphan_veth().unwrap();
    let link = node
        .run_in_node(&["ip", "-d", "-o", "link", "show", &orphan.host_veth])
        .unwrap()
        .stdout;
    assert!(link.contains("link-netnsid"), "{link}");
    assert!(
        !node
            .netns_names()
            .unwrap()
            .iter()
            .any(|n| n.starts_with("orphan-"))
    );

    node.set_pod_mtu(0, 1500).unwrap();
    let l = node
        .run_in_node(&[
            "ip",
            "-n",
            &node.pods()[0].netns,
            "-o",
            "link",
            "show",
            "eth0",
        ])
        .unwrap()
        .stdout;
    assert!(l.contains("mtu 1500"));
    assert_eq!(node.pods()[0].mtu, 1500);

    node.set_ip_forward(false).unwrap();
    assert_eq!(node.sysctl("net.ipv4.ip_forward").unwrap(), "0");

    match node.set_bridge_nf_call_iptables(false) {
        Ok(()) => assert_eq!(
            node.sysctl("net.bridge.bridge-nf-call-iptables").unwrap(),
            "0"
        ),
        Err(e) => eprintln!("bridge-nf-call-iptables not testable here: {e}"),
    }

    let ghost = node.add_ghost_pod("default", "ghost-1").unwrap();
    let api = node.api_objects();
    assert!(api.pods.iter().any(
        |p| p["metadata"]["name"] == "ghost-1" && p["status"]["podIP"] == ghost.ip.to_string()
    ));
}

#[test]
fn pause_processes_live_in_kubelet_style_cgroups() {
    let Some(lab) = require_lab() else { return };
    let node = lab.node().pods(2).build().unwrap();
    if !node.has_cgroups() {
        eprintln!("no cgroup v2 mount: pods have no kubelet cgroup here");
        return;
    }
    let mut dirs = Vec::new();
    for p in node.pods() {
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pause_pid)).unwrap();
        let want = format!("kubepods-besteffort-pod{}.slice", p.uid.replace('-', "_"));
        assert!(cg.contains(&want), "{cg}");
        assert!(
            cg.contains(&format!("cri-containerd-{}.scope", p.container_id)),
            "{cg}"
        );
        dirs.push(p.cgroup.clone().unwrap());
    }
    let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    drop(node);
    for d in dirs {
        assert!(
            !Path::new(&format!("{root}{d}")).exists(),
            "cgroup {d} left behind"
        );
    }
}

#[test]
fn sixty_pods_build_and_tear_down_cleanly() {
    let Some(lab) = require_lab() else { return };
    let t = Instant::now();
    let node = lab.node().flannel().pods(60).build().unwrap();
    let built = t.elapsed();
    assert_eq!(node.pods().len(), 60);
    let names: BTreeSet<String> = node.netns_names().unwrap().into_iter().collect();
    assert_eq!(names.len(), 60);
    let links = node
        .run_in_node(&["ip", "-o", "link", "show", "master", "cni0"])
        .unwrap()
        .stdout;
    assert_eq!(links.lines().count(), 60);
    let ips: BTreeSet<Ipv4Addr> = node.pods().iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), 60);
    let pids: Vec<u32> = node.pods().iter().map(|p| p.pause_pid).collect();
    let holder = node.pid1();
    let down = node.teardown();
    for pid in pids.iter().chain([&holder]) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived teardown"
        );
    }
    eprintln!("60 pods: build {built:?}, teardown {down:?}");
}

#[test]
fn api_objects_describe_the_lab() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["dnsmasq"]) {
        return;
    }
    let node = lab.node().dns().pods(2).build().unwrap();
    let api = node.api_objects();
    assert_eq!(api.pods.len(), 3);
    for (obj, pod) in api.pods.iter().zip(node.pods()) {
        assert_eq!(obj["metadata"]["uid"], pod.uid.as_str());
        assert_eq!(obj["status"]["podIP"], pod.ip.to_string());
        assert_eq!(obj["spec"]["nodeName"], node.name());
    }
    let dns = api
        .services
        .iter()
        .find(|s| s["metadata"]["name"] == "kube-dns")
        .unwrap();
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
    let slice = api
        .endpoint_slices
        .iter()
        .find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns")
        .unwrap();
    assert_eq!(
        slice["endpoints"][0]["addresses"][0],
        node.dns_pod().unwrap().ip.to_string()
    );
    assert_eq!(api.nodes[0]["spec"]["podCIDR"], "10.244.0.0/24");
    let kp = api.config_maps[0]["data"]["config.conf"].as_str().unwrap();
    assert!(kp.contains("mode: iptables") && kp.contains("clusterCIDR: 10.244.0.0/16"));
    let dir = tempfile::tempdir().unwrap();
    api.write_to(dir.path()).unwrap();
    let pods: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("pods.json")).unwrap())
            .unwrap();
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"].as_array().unwrap().len(), 3);
}

#[test]
fn bridge_nf_call_iptables_off_breaks_the_vip_on_the_same_bridge() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["dnsmasq", "dig"]) {
        return;
    }
    let node = lab.node().flannel().dns().pods(1).build().unwrap();
    if !node
        .sysctl_exists("net.bridge.bridge-nf-call-iptables")
        .unwrap()
    {
        eprintln!("br_netfilter not loaded on this host: fault not reproducible here");
        return;
    }
    let dns_ip = node.dns_pod().unwrap().ip;
    let client = node.pods()[1].clone();
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_ok());
    node.set_bridge_nf_call_iptables(false).unwrap();
    // Replies from the DNS pod are bridged straight back, skipping the un-DNAT.
    assert!(node.dig_from(&client, DNS_VIP, KUBERNETES, false).is_err());
    assert_eq!(
        node.dig_from(&client, dns_ip, KUBERNETES, false).unwrap(),
        vec!["10.96.0.1"]
    );
}

#[test]
fn listener_bound_in_the_node_is_reachable_from_inside_only() {
    let Some(lab) = require_lab() else { return };
    let node = lab.node().bridge().pods(1).build().unwrap();
    let l = node.tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello from the node netns\n").unwrap();
    });
    // bash's /dev/tcp from inside the node reaches the listener on the node's loopback.
    let out = node
        .run_in_node(&[
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; cat <&3"),
        ])
        .unwrap();
    assert_eq!(out.stdout, "hello from the node netns\n");
    t.join().unwrap();
    // The host's loopback has no such listener.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let kc = node.kubeconfig("https://127.0.0.1:6443", "t0k", None);
    assert!(kc.contains("server: https://127.0.0.1:6443") && kc.contains("token: t0k"));
}

#[test]
fn conntrack_fills_past_90_percent_without_touching_the_max() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["conntrack"]) {
        return;
    }
    let node = lab.node().bridge().build().unwrap();
    let max = node.conntrack_max().unwrap();
    let host_max = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
    assert_eq!(max.to_string(), host_max.trim());
    let added = node.fill_conntrack_to(0.92).unwrap();
    let count = node.conntrack_count().unwrap();
    assert!(added > 0);
    assert!(
        count as f64 >= 0.92 * max as f64 && count < max,
        "{count}/{max}"
    );
}

#[test]
fn deleting_a_pod_removes_its_netns_and_veth() {
    let Some(lab) = require_lab() else { return };
    let mut node = lab.node().flannel().pods(3).build().unwrap();
    let gone = node.delete_pod(1).unwrap();
    assert_eq!(node.pods().len(), 2);
    assert!(!node.netns_names().unwrap().contains(&gone.netns));
    let link = node
        .run_in_node_raw(
            &["ip", "link", "show", &gone.host_veth],
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(!link.success(), "host veth survived: {}", link.stdout);
    let ipam = node
        .run_in_node_raw(
            &[
                "test",
                "-e",
                &format!("/var/lib/cni/networks/cbr0/{}", gone.ip),
            ],
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(!ipam.success());
    let ps = node.run_in_node(&["ps", "-eo", "comm="]).unwrap().stdout;
    assert_eq!(ps.lines().filter(|l| l.trim() == "pause").count(), 2);
    assert!(
        !node
            .api_objects()
            .pods
            .iter()
            .any(|p| p["metadata"]["name"] == gone.name.as_str())
    );
}

#[test]
fn a_panicking_test_still_tears_its_node_down() {
    let Some(lab) = require_lab() else { return };
    let pids = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let node = lab.node().bridge().pods(2).build().unwrap();
        let mut p = pids.lock().unwrap();
        p.push(node.pid1());
        p.extend(node.pods().iter().map(|p| p.pause_pid));
        drop(p);
        panic!("simulated test failure");
    }));
    assert!(result.is_err());
    let pids = pids.into_inner().unwrap();
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
}

#[test]
fn a_thousand_services_load_in_both_backends() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_tools(&["iptables-legacy-restore", "iptables-nft-restore"]) {
        return;
    }
    let t = Instant::now();
    let mut node = lab
        .node()
        .bridge()
        .services(LabService::synthetic_set(1000, 3))
        .build()
        .unwrap();
    let nft = t.elapsed();
    let t = Instant::now();
    node.apply_iptables(Backend::Legacy).unwrap();
    let legacy = t.elapsed();
    for b in [Backend::Nft, Backend::Legacy] {
        let save = node.run_in_node(&[b.save(), "-t", "nat"]).unwrap().stdout;
        let seps = save.lines().filter(|l| l.contains("-j DNAT")).count();
        assert_eq!(seps, 3000 + 1, "{b:?}"); // + default/kubernetes
    }
    eprintln!("1000 services x 3: build+nft {nft:?}, legacy {legacy:?}");
}

/// The node itself may track a few packets of its own (IPv6 ND, router
/// solicitations on the uplink) while a test runs: allow that much on top.
fn assert_count_near(count: u64, expected: u64) {
    assert!(
        (expected..=expected + 8).contains(&count),
        "conntrack count {count}, expected {expected} (+ at most 8 background entries)"
    );
}
