//! The collector's security model against real kernel state (issue 12):
//! what a pod controls never reaches outside it, secrets in node files never
//! reach the bundle, the spool is private and never left behind, SIGHUP gives
//! a partial bundle, and an existing output file is never overwritten silently.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests drive real programs

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netsnap_bundle::{
    ArtifactRecord, ArtifactStatus, Bundle, CollectionOutcome, ReaderOptions, layout,
};
use netsnap_lab::{LabApiServer, ToolDir, analyzer_bin, collector_bin, require_lab};

fn open(path: &Path, stderr: &str) -> Bundle {
    Bundle::open(path, &ReaderOptions::default())
        .unwrap_or_else(|e| panic!("bundle unreadable: {e}\n{stderr}"))
}

/// Every byte of the bundle, decompressed (manifest, headers and all artifacts).
fn all_bytes(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "zstd -dc failed");
    out.stdout
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn record<'a>(b: &'a Bundle, path: &str) -> &'a ArtifactRecord {
    b.manifest()
        .artifact(path)
        .unwrap_or_else(|| panic!("no record for {path}"))
}

fn netns_id_of(host_pid: u32) -> String {
    let ino = std::fs::metadata(format!("/proc/{host_pid}/ns/net"))
        .unwrap()
        .ino();
    layout::netns_id(ino)
}

/// How a hostile pod makes its `/etc/resolv.conf`.
enum Trap {
    Symlink(&'static str),
    Fifo,
    CharDevice,
}

#[test]
fn hostile_pod_resolv_conf_never_reads_outside_the_pod() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["zstd", "chroot", "dnsmasq"]) {
        return;
    }
    let mut node = lab.node().flannel().dns().pods(6).build().unwrap();
    // A file only the node (the "host" of the pods) has.
    let canary = format!("HOST-CANARY-{}", random_hex());
    node.sh(&format!(
        "printf '%s\\n' {canary} > /etc/netsnap-host-canary"
    ))
    .unwrap();
    let dns_ip = node.dns_pod().map(|p| p.ip);
    let clients: Vec<usize> = node
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, p)| Some(p.ip) != dns_ip)
        .map(|(i, _)| i)
        .collect();
    let traps = [
        ("absolute", Trap::Symlink("/etc/netsnap-host-canary")),
        (
            "relative",
            Trap::Symlink("../../../../../../../../../../../etc/netsnap-host-canary"),
        ),
        ("dev-zero", Trap::Symlink("/dev/zero")),
        ("fifo", Trap::Fifo),
        ("char-device", Trap::CharDevice),
    ];
    assert!(clients.len() > traps.len(), "one clean pod is left");
    let mut hostile = Vec::new();
    for ((name, trap), &pod) in traps.iter().zip(&clients) {
        let root = node.tmp_dir().join(format!("hostile-{name}"));
        let etc = root.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let rc = etc.join("resolv.conf");
        match trap {
            Trap::Symlink(to) => std::os::unix::fs::symlink(to, &rc).unwrap(),
            Trap::Fifo => {
                nix::unistd::mkfifo(&rc, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
            }
            Trap::CharDevice => nix::sys::stat::mknod(
                &rc,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o644),
                nix::sys::stat::makedev(1, 5),
            )
            .unwrap(),
        }
        let pid = node.pod_process_with_root(pod, &root).unwrap();
        hostile.push((*name, netns_id_of(pid)));
    }
    let clean = &node.pods()[clients[traps.len()]];
    let clean_netns = layout::netns_id(
        std::fs::metadata(format!("/proc/{}/ns/net", clean.pause_pid))
            .unwrap()
            .ino(),
    );

    let api = LabApiServer::start(&node).unwrap();
    let kc = api.kubeconfig.to_string_lossy().into_owned();
    let run = node
        .collect(&[
            "--sample-interval",
            "0.2",
            "--quiet",
            "--kubeconfig",
            &kc,
            "--node-name",
            node.name(),
            "--dns-from",
            "all",
        ])
        .unwrap();
    assert!(run.output.success(), "{}", run.output.stderr);
    let b = open(&run.bundle, &run.output.stderr);
    // Nothing waited for the deadline (a FIFO read used to hold the run until it).
    assert_eq!(
        b.manifest().collection.outcome,
        CollectionOutcome::Complete,
        "{:?}",
        b.manifest().collection.notes
    );
    for (name, netns) in &hostile {
        let rec = record(&b, &layout::netns_path(netns, layout::netns::RESOLV_CONF));
        assert_eq!(rec.status, ArtifactStatus::Failed, "{name}: {rec:?}");
        assert_eq!(rec.size, 0, "{name}: no byte stored");
        assert_eq!(
            rec.attributes.get("refused").map(String::as_str),
            Some("true"),
            "{name}: {rec:?}"
        );
        let err = rec.error.clone().unwrap_or_default();
        let want = match *name {
            "fifo" => "is not a regular file (a FIFO)",
            "char-device" => "is not a regular file (a character device)",
            _ => "escapes the container root",
        };
        assert!(
            err.starts_with("refused: ") && err.contains(want),
            "{name}: {err}"
        );
    }
    // The clean pod's resolv.conf is still read, through its own root.
    let rec = record(
        &b,
        &layout::netns_path(&clean_netns, layout::netns::RESOLV_CONF),
    );
    assert_eq!(rec.status, ArtifactStatus::Ok, "{rec:?}");
    assert_eq!(
        b.read_text(&layout::netns_path(
            &clean_netns,
            layout::netns::RESOLV_CONF
        ))
        .unwrap()
        .unwrap(),
        clean.resolv_conf
    );
    let bytes = all_bytes(&run.bundle);
    assert!(!contains(&bytes, &canary), "a host byte reached the bundle");
}

#[test]
fn cni_and_kubelet_secrets_never_reach_the_bundle() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["zstd"]) {
        return;
    }
    let node = lab.node().flannel().pods(1).build().unwrap();
    let canary = format!("CANARY-{}", random_hex());
    let kubelet_before = node
        .run_in_node(&["cat", "/var/lib/kubelet/config.yaml"])
        .unwrap()
        .stdout;
    node.sh(&format!(
        "mkdir -p /etc/cni/net.d/multus.d\n\
         cat > /etc/cni/net.d/calico-kubeconfig <<'EOF'\n\
         # Kubeconfig file for Calico CNI plugin.\n\
         apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://10.96.0.1:443\n    certificate-authority-data: \"{canary}\"\n\
         users:\n- name: calico\n  user:\n    token: {canary}\n\
         contexts:\n- name: calico-context\n  context:\n    cluster: local\n    user: calico\ncurrent-context: calico-context\nEOF\n\
         cat > /etc/cni/net.d/multus.d/multus.kubeconfig <<'EOF'\n\
         apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: 'https://[10.96.0.1]:443'}}\n  name: local\n\
         users:\n- name: multus\n  user: {{client-key-data: {canary}}}\ncontexts: []\nEOF\n\
         cat > /etc/cni/net.d/20-ipam.conflist <<'EOF'\n\
         {{\"name\":\"ipam-net\",\"cniVersion\":\"0.4.0\",\"plugins\":[{{\"type\":\"macvlan\",\"mtu\":1450,\"ipam\":{{\"type\":\"whereabouts\",\"range\":\"10.10.0.0/16\",\"password\":\"{canary}\",\"etcd_auth\":\"Basic {canary}\"}}}}]}}\nEOF\n\
         cat >> /var/lib/kubelet/config.yaml <<'EOF'\n\
         staticPodURL: https://static.example.invalid/pods\nstaticPodURLHeader:\n  Authorization:\n  - Bearer {canary}\nEOF\n"
    ))
    .unwrap();
    let run = node
        .collect(&["--no-api", "--sample-interval", "0.2", "--quiet"])
        .unwrap();
    assert!(run.output.success(), "{}", run.output.stderr);
    let b = open(&run.bundle, &run.output.stderr);
    let bytes = all_bytes(&run.bundle);
    assert!(!contains(&bytes, &canary), "a secret reached the bundle");

    for (file, servers) in [
        ("calico-kubeconfig", "https://10.96.0.1:443"),
        ("multus.d/multus.kubeconfig", "https://[10.96.0.1]:443"),
    ] {
        let rec = record(&b, &format!("{}/{file}", layout::config::CNI_NET_D));
        assert_eq!(rec.status, ArtifactStatus::Skipped, "{file}: {rec:?}");
        assert_eq!(rec.size, 0);
        assert_eq!(
            rec.attributes.get("withheld").map(String::as_str),
            Some("whole file")
        );
        assert_eq!(
            rec.attributes.get("kubeconfig_servers").map(String::as_str),
            Some(servers)
        );
        assert!(
            rec.error
                .as_deref()
                .unwrap_or("")
                .starts_with("withheld: kubeconfig"),
            "{rec:?}"
        );
    }

    let conf_path = format!("{}/20-ipam.conflist", layout::config::CNI_NET_D);
    let rec = record(&b, &conf_path);
    assert_eq!(rec.status, ArtifactStatus::Ok, "{rec:?}");
    assert_eq!(
        rec.attributes.get("withheld").map(String::as_str),
        Some("plugins[0].ipam.etcd_auth (credential); plugins[0].ipam.password (password)")
    );
    let conf: serde_json::Value =
        serde_json::from_str(&b.read_text(&conf_path).unwrap().unwrap()).unwrap();
    // The structure a reader needs is kept.
    assert_eq!(conf["plugins"][0]["mtu"], 1450);
    assert_eq!(conf["plugins"][0]["ipam"]["range"], "10.10.0.0/16");
    assert_eq!(
        conf["plugins"][0]["ipam"]["password"],
        "<withheld: password>"
    );

    let rec = record(&b, layout::config::KUBELET_CONFIG);
    assert_eq!(rec.status, ArtifactStatus::Ok, "{rec:?}");
    assert_eq!(
        rec.attributes.get("withheld").map(String::as_str),
        Some("staticPodURLHeader (header)")
    );
    let kubelet = b
        .read_text(layout::config::KUBELET_CONFIG)
        .unwrap()
        .unwrap();
    assert!(kubelet.contains("clusterDNS:\n- 10.96.0.10"), "{kubelet}");
    assert!(
        kubelet.contains("staticPodURLHeader: '<withheld: header>'"),
        "{kubelet}"
    );
    assert!(!kubelet_before.contains("withheld"));

    // Sysfs is read inside the root too: the pod's veth on cni0, hairpin on.
    let ports: serde_json::Value =
        serde_json::from_str(&b.read_text(layout::node::BRIDGE_PORTS).unwrap().unwrap()).unwrap();
    let veth = &node.pods()[0].host_veth;
    assert!(
        ports["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == veth.as_str() && p["bridge"] == "cni0" && p["hairpin"] == true),
        "{ports}"
    );

    // A file without secrets is still byte for byte.
    let flannel = node
        .run_in_node(&["cat", "/etc/cni/net.d/10-flannel.conflist"])
        .unwrap()
        .stdout;
    assert_eq!(
        b.read_text(&format!(
            "{}/10-flannel.conflist",
            layout::config::CNI_NET_D
        ))
        .unwrap()
        .unwrap(),
        flannel
    );
}

/// The spool directories (`.netsnap-*.partial`) in `dir`.
fn spools(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().starts_with(".netsnap-"))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sighup_mid_run_gives_a_partial_bundle_and_a_private_spool_that_goes_away() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().flannel().pods(2).build().unwrap();
    // iptables-save hangs, so the run is still going when the signal comes.
    let tools = ToolDir::new(&[])
        .unwrap()
        .hang("iptables-save", 60)
        .unwrap();
    let (k, v) = tools.env();
    let bin = collector_bin().unwrap().to_string_lossy().into_owned();
    let out_dir = node.tmp_dir().join("sighup");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bundle = out_dir.join("b.tar.zst");
    let bundle_s = bundle.to_string_lossy().into_owned();
    let mut seen: Option<(u32, Vec<(PathBuf, u32)>)> = None;
    let mut signalled = false;
    let mut tick = |nsenter_pid: u32| {
        if signalled {
            return;
        }
        let spool = spools(&out_dir);
        let Some(dir) = spool.first() else { return };
        let Ok(md) = std::fs::metadata(dir) else {
            return;
        };
        let files: Vec<(PathBuf, u32)> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((e.path(), m.permissions().mode() & 0o777))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if files.is_empty() {
            return;
        }
        seen = Some((md.permissions().mode() & 0o777, files));
        // The collector is the nsenter's child.
        let kids =
            std::fs::read_to_string(format!("/proc/{nsenter_pid}/task/{nsenter_pid}/children"))
                .unwrap_or_default();
        for pid in kids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            );
            signalled = true;
        }
    };
    let output = node
        .run_in_node_with(
            &[&bin, "--no-api", "--quiet", "-o", &bundle_s],
            &[(k.as_str(), v.as_str())],
            Duration::from_secs(120),
            &mut tick,
        )
        .unwrap();
    assert!(signalled, "the run ended before its spool was seen");
    assert!(output.success(), "{}", output.stderr);
    let (dir_mode, files) = seen.unwrap();
    assert_eq!(dir_mode, 0o700, "spool directory mode");
    for (p, mode) in &files {
        assert_eq!(*mode, 0o600, "{}", p.display());
    }
    let b = open(&bundle, &output.stderr);
    assert_eq!(
        b.manifest().collection.outcome,
        CollectionOutcome::Interrupted
    );
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(spools(&out_dir).is_empty(), "{:?}", spools(&out_dir));
}

#[test]
fn existing_output_is_refused_without_force() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() {
        return;
    }
    let node = lab.node().bridge().pods(1).build().unwrap();
    let bin = collector_bin().unwrap().to_string_lossy().into_owned();
    let path = node.tmp_dir().join("existing.tar.zst");
    std::fs::write(&path, b"precious").unwrap();
    let p = path.to_string_lossy().into_owned();
    let out = node
        .run_in_node_raw(
            &[&bin, "--no-api", "--quiet", "-o", &p],
            &[],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "netsnap-collect: error: {p} already exists; refusing to overwrite it (use --force to replace it)"
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    assert!(spools(node.tmp_dir()).is_empty());

    let out = node
        .run_in_node_raw(
            &[&bin, "--no-api", "--quiet", "--force", "-o", &p],
            &[],
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    let b = open(&path, &out.stderr);
    assert!(b.manifest().artifact(layout::NETNS_INDEX).is_some());
}

/// Lines of `s` holding a raw control character or a bidi override (what could drive a
/// terminal), the same check as the analyzer's own `tests/security.rs`.
fn raw_controls(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| {
            l.chars().any(|c| {
                (c.is_control() && c != '\t')
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            })
        })
        .map(|l| format!("{l:?}"))
        .collect()
}

/// Clear screen, set the window title, bell: fits a 15-byte `comm`.
const HOSTILE_COMM: &[u8] = b"\x1b[2J\x1b]0;pwn\x07";
/// Red, set the title, bell: fits a 15-byte interface name (IFNAMSIZ is 16).
const HOSTILE_IFNAME: &[u8] = b"\x1b[31m\x1b]0;if\x07";

#[test]
fn a_pods_comm_and_interface_name_never_reach_the_readers_terminal_raw() {
    let Some(lab) = require_lab() else { return };
    if !lab.require_collector() || !lab.require_tools(&["ip"]) {
        return;
    }
    let Some(analyzer) = analyzer_bin() else {
        return;
    };
    let mut node = lab.node().flannel().pods(2).build().unwrap();
    // Any process on the node can name itself; the collector lists it in its namespace.
    let pid = node.pod_process_with_comm(0, HOSTILE_COMM).unwrap();
    let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        &comm[..comm.len() - 1],
        HOSTILE_COMM,
        "the kernel kept the name"
    );
    let comm_netns = netns_id_of(pid);
    // A pod with NET_ADMIN can name a link it owns; the kernel refuses only '/', ':',
    // whitespace and names of 16 bytes or more.
    let pod_netns = node.pods()[1].netns.clone();
    let octal: String = HOSTILE_IFNAME
        .iter()
        .map(|b| format!("\\{b:03o}"))
        .collect();
    node.sh(&format!(
        "ip -n {pod_netns} link add sec12a type veth peer name sec12b && \
         ip -n {pod_netns} link set dev sec12a name \"$(printf '{octal}')\""
    ))
    .unwrap();
    let links = node
        .run_in_node(&["ip", "-n", &pod_netns, "-o", "link", "show"])
        .unwrap()
        .stdout;
    assert!(
        links.contains(std::str::from_utf8(HOSTILE_IFNAME).unwrap()),
        "the kernel took the name: {links:?}"
    );

    let run = node
        .collect(&["--no-api", "--sample-interval", "0.2", "--quiet"])
        .unwrap();
    assert!(run.output.success(), "{}", run.output.stderr);
    let bundle = run.bundle.to_string_lossy().into_owned();
    let analyze = |args: &[&str]| {
        let out = Command::new(&analyzer).args(args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {:?} {stderr}",
            out.status.code()
        );
        assert!(
            raw_controls(&stderr).is_empty(),
            "{args:?} stderr: {stderr:?}"
        );
        stdout
    };
    // The bundle keeps the exact bytes (JSON stays exact): the sanitizer, not the collector,
    // is what the text outputs are tested on.
    let json = analyze(&["inspect", &bundle, "netns", "--format", "json"]);
    let comm_s = std::str::from_utf8(HOSTILE_COMM).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .to_string()
            .contains(&serde_json::to_string(comm_s).unwrap()[1..comm_s.len()]),
        "{json}"
    );
    let json = analyze(&["inspect", &bundle, "links", "--format", "json"]);
    let ifname_json = serde_json::to_string(std::str::from_utf8(HOSTILE_IFNAME).unwrap()).unwrap();
    assert!(json.contains(&ifname_json), "{json}");

    // Shown, escaped as `cat -v` does, where the views show them.
    let netns_view = analyze(&["inspect", &bundle, "netns"]);
    assert!(netns_view.contains("^[[2J^[]0;pwn^G"), "{netns_view}");
    assert!(netns_view.contains(&comm_netns), "{netns_view}");
    let links_view = analyze(&["inspect", &bundle, "links"]);
    assert!(links_view.contains("^[[31m^[]0;if^G"), "{links_view}");
    let mut outputs = vec![
        ("inspect netns", netns_view),
        ("inspect links", links_view),
        (
            "inspect links --netns",
            analyze(&["inspect", &bundle, "links", "--netns", &comm_netns]),
        ),
        ("inspect addrs", analyze(&["inspect", &bundle, "addrs"])),
        ("inspect routes", analyze(&["inspect", &bundle, "routes"])),
        ("manifest", analyze(&["manifest", &bundle])),
        (
            "analyze",
            analyze(&["analyze", &bundle, "--color", "never"]),
        ),
        (
            "analyze markdown",
            analyze(&["analyze", &bundle, "--format", "markdown"]),
        ),
    ];
    // A rule may name the renamed veth (its peer is in the same namespace): then it is
    // escaped too. Either way no raw control byte is printed.
    let (_, text) = &outputs[6];
    if text.contains("if^G") {
        assert!(text.contains("^[[31m^[]0;if^G"), "{text}");
    }
    for (what, out) in outputs.drain(..) {
        let bad = raw_controls(&out);
        assert!(bad.is_empty(), "{what}: raw control characters in {bad:#?}");
        assert!(!out.contains('\u{9b}'), "{what}: a C1 CSI");
    }
}
