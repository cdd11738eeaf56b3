//! `netsnap-analyze trace` on the real example bundles of `fixtures/bundles/` (collected in
//! lab nodes): a pod to a healthy Service (three endpoints, one of them the pod itself:
//! hairpin masquerade), the same flow where the Service lost its `KUBE-SERVICES` jump, DNS
//! to a VIP whose jumps are gone (with the kernel's UNREPLIED conntrack entry), and bad
//! arguments.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn bundles() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bundles")
}

fn trace(bundle: &str, from: &str, to: &str, format: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netsnap-analyze"))
        .current_dir(bundles())
        .args([
            "trace", bundle, "--from", from, "--to", to, "--format", format,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(bundle: &str, from: &str, to: &str) -> serde_json::Value {
    let (code, out, err) = trace(bundle, from, to, "json");
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn stages(b: &serde_json::Value) -> Vec<String> {
    b["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["stage"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pod_to_service_every_endpoint_with_its_probability() {
    let t = json(
        "healthy-flannel.tar.zst",
        "default/web-rqxrqlj8hb-42gcm",
        "10.96.0.20:80/tcp",
    );
    assert_eq!(t["kind"], "netsnap-trace");
    assert_eq!(t["to"]["names"], "Service default/web:http");
    let branches = t["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 3);
    let mut targets = BTreeSet::new();
    for b in branches {
        let p = b["probability"].as_f64().unwrap();
        assert!((p - 1.0 / 3.0).abs() < 1e-3, "{p}");
        assert_eq!(b["outcome"]["kind"], "delivered", "{b}");
        assert_eq!(
            stages(b),
            [
                "pod route",
                "veth",
                "nat PREROUTING",
                "route",
                "filter FORWARD",
                "nat POSTROUTING"
            ]
        );
        let nat = b["hops"][2]["detail"].as_str().unwrap();
        let to = nat
            .split("DNAT to ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        targets.insert(to.to_string());
        // Each branch ends at the pod behind its DNAT target.
        let ip = to.split(':').next().unwrap();
        assert!(b["hops"][3]["detail"].as_str().unwrap().starts_with(ip));
        // Evidence points at the DNAT rule's line in the save.
        let ev = &b["hops"][2]["evidence"][0];
        assert_eq!(ev["path"], "iptables/iptables-nft-save.txt");
        assert!(ev["line"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        targets,
        BTreeSet::from([
            "10.244.0.3:8080".to_string(),
            "10.244.0.4:8080".to_string(),
            "10.244.0.5:8080".to_string()
        ])
    );
    // The client is itself 10.244.0.5: that branch is hairpin, marked and masqueraded.
    let hairpin = branches
        .iter()
        .find(|b| {
            b["hops"][2]["detail"]
                .as_str()
                .unwrap()
                .contains("10.244.0.5:8080")
        })
        .unwrap();
    assert!(
        hairpin["hops"][5]["detail"]
            .as_str()
            .unwrap()
            .contains("MASQUERADE"),
        "{hairpin}"
    );
    assert!(
        hairpin["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("default/web-rqxrqlj8hb-42gcm")
    );
}

#[test]
fn service_missing_from_kube_services_is_routed_to_the_vip() {
    let t = json("service-missing.tar.zst", "10.244.0.3", "10.96.0.20:80");
    let b = &t["branches"].as_array().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["outcome"]["kind"], "sent");
    assert!(
        b[0]["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("out of eth0")
    );
    assert!(!b[0].to_string().contains("DNAT"));
    assert!(
        t["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("no kube-proxy rule DNATed the packet")),
        "{}",
        t["notes"]
    );
}

#[test]
fn dns_to_a_broken_vip_shows_the_unreplied_conntrack_entry() {
    let (code, text, _) = trace(
        "dns-vip-failing.tar.zst",
        "10.244.0.3",
        "10.96.0.10:53/udp",
        "text",
    );
    assert_eq!(code, 0);
    assert!(
        text.contains("(Service kube-system/kube-dns:dns)"),
        "{text}"
    );
    assert!(text.contains("conntrack entries of this flow:"), "{text}");
    assert!(
        text.contains("udp 10.244.0.3:36916 -> 10.96.0.10:53 reply from 10.96.0.10:53 [UNREPLIED]  [conntrack/conntrack-L.txt:1]"),
        "{text}"
    );
}

#[test]
fn renderings_snapshot() {
    let (_, text, _) = trace(
        "healthy-flannel.tar.zst",
        "default/web-rqxrqlj8hb-42gcm",
        "10.96.0.20:80/tcp",
        "text",
    );
    insta::assert_snapshot!("trace_text_healthy", text);
    let (_, md, _) = trace(
        "service-missing.tar.zst",
        "10.244.0.3",
        "10.96.0.20:80",
        "markdown",
    );
    assert!(md.starts_with("# netsnap trace\n"));
    insta::assert_snapshot!("trace_markdown_service_missing", md);
}

#[test]
fn bad_endpoints_are_one_line_exit_2() {
    for (from, to, want) in [
        ("nope", "10.96.0.20:80", "--from nope"),
        ("10.244.0.3", "web:80", "--to web:80"),
    ] {
        let (code, out, err) = trace("healthy-flannel.tar.zst", from, to, "text");
        assert_eq!(code, 2, "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
}

/// `--format html` is the same walk in a self-contained page: no script, nothing loaded,
/// the text escaped (the hop arrows `>` of the chain path become entities).
#[test]
fn html_is_the_text_walk_in_a_self_contained_page() {
    let (code, text, err) = trace(
        "healthy-flannel.tar.zst",
        "default/web-rqxrqlj8hb-42gcm",
        "10.96.0.20:80/tcp",
        "text",
    );
    assert_eq!(code, 0, "{err}");
    let (code, html, err) = trace(
        "healthy-flannel.tar.zst",
        "default/web-rqxrqlj8hb-42gcm",
        "10.96.0.20:80/tcp",
        "html",
    );
    assert_eq!(code, 0, "{err}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("default-src 'none'"));
    assert!(!html.to_lowercase().contains("<script"));
    let first_hop = text
        .lines()
        .find(|l| l.contains("nat PREROUTING"))
        .expect("a nat hop in the text walk");
    assert!(first_hop.contains(" > "), "{first_hop}");
    assert!(
        html.contains(
            &first_hop
                .replace('&', "&amp;")
                .replace('>', "&gt;")
                .replace('<', "&lt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;")
        ),
        "the text walk's hop, escaped, is in the page: {first_hop}"
    );
}
