//! Benchmark helpers (generators of realistic inputs).
//!
//! Generators are deterministic (no randomness, no clock) so figures are comparable
//! between runs, and they reproduce the exact text shapes of the real programs as
//! captured in `fixtures/raw/`.

pub mod resolv_scale;

/// Deterministic xorshift generator so generated inputs are identical across runs.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A `conntrack -L -o extended` table of `lines` entries shaped like a busy Kubernetes node:
/// mostly tcp (ESTABLISHED/TIME_WAIT, many DNATed to pod IPs), udp DNS with `[UNREPLIED]`,
/// some icmp and IPv6, accounting counters on, `delta-time=` and `use=` fields.
pub fn conntrack_extended_table(lines: usize) -> String {
    use std::fmt::Write as _;
    let mut r = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(lines * 260);
    for _ in 0..lines {
        let client = format!("10.244.{}.{}", r.below(64), 2 + r.below(250));
        let pod = format!("10.244.{}.{}", r.below(64), 2 + r.below(250));
        let sport = 32768 + r.below(28000);
        let p = r.below(100);
        let (pk, by) = (1 + r.below(5000), 60 + r.below(9_000_000));
        let _ = if p < 55 {
            let state = ["ESTABLISHED", "TIME_WAIT", "SYN_SENT", "CLOSE_WAIT"][r.below(4) as usize];
            let vip = format!("10.96.{}.{}", r.below(255), 1 + r.below(254));
            writeln!(
                out,
                "ipv4     2 tcp      6 {} {state} src={client} dst={vip} sport={sport} dport=443 packets={pk} bytes={by} src={pod} dst={client} sport=8443 dport={sport} packets={} bytes={} [ASSURED] mark=0 zone=0 delta-time={} use=1",
                r.below(432_000),
                pk.saturating_sub(1),
                by / 3,
                r.below(90_000)
            )
        } else if p < 85 {
            writeln!(
                out,
                "ipv4     2 udp      17 {} src={client} dst=10.96.0.10 sport={sport} dport=53 packets=1 bytes=74 [UNREPLIED] src={pod} dst={client} sport=53 dport={sport} packets=0 bytes=0 mark=0 zone=0 delta-time={} use=1",
                r.below(30),
                r.below(30)
            )
        } else if p < 92 {
            writeln!(
                out,
                "ipv4     2 icmp     1 {} src={client} dst={pod} type=8 code=0 id={} packets=1 bytes=84 src={pod} dst={client} type=0 code=0 id={} packets=1 bytes=84 mark=0 zone=0 delta-time=0 use=1",
                r.below(30),
                sport,
                sport
            )
        } else {
            writeln!(
                out,
                "ipv6     10 tcp      6 {} ESTABLISHED src=fd00:10:244:{:x}::{:x} dst=fd00:10:96::{:x} sport={sport} dport=80 packets={pk} bytes={by} src=fd00:10:244:{:x}::{:x} dst=fd00:10:244:1::5 sport=8080 dport={sport} packets={pk} bytes={by} [ASSURED] mark=0 zone=0 delta-time=12 use=1",
                r.below(432_000),
                r.below(64),
                2 + r.below(250),
                1 + r.below(4000),
                r.below(64),
                2 + r.below(250)
            )
        };
    }
    out
}

/// An `ipvsadm -Lnc` listing of `lines` connections (TCP/UDP, several states, templates).
pub fn ipvsadm_connections(lines: usize) -> String {
    use std::fmt::Write as _;
    let mut r = Xorshift(0x2545_f491_4f6c_dd1d);
    let mut out = String::with_capacity(lines * 90 + 100);
    out.push_str("IPVS connection entries\n");
    out.push_str("pro expire state       source             virtual            destination\n");
    for _ in 0..lines {
        let (proto, state) = match r.below(10) {
            0..=5 => (
                "TCP",
                ["ESTABLISHED", "TIME_WAIT", "FIN_WAIT", "SYN_RECV"][r.below(4) as usize],
            ),
            6..=8 => ("UDP", "UDP"),
            _ => ("IP", "NONE"),
        };
        let exp = r.below(900);
        let src = format!(
            "10.244.{}.{}:{}",
            r.below(64),
            2 + r.below(250),
            32768 + r.below(28000)
        );
        let vip = format!(
            "10.96.{}.{}:{}",
            r.below(255),
            1 + r.below(254),
            [53, 80, 443][r.below(3) as usize]
        );
        let dst = format!("10.244.{}.{}:{}", r.below(64), 2 + r.below(250), 8080);
        let _ = writeln!(
            out,
            "{proto:<3} {:<6} {state:<11} {src:<18} {vip:<18} {dst}",
            format!("{:02}:{:02}", exp / 60, exp % 60)
        );
    }
    out
}

use std::fmt::Write as _;

/// 16 characters from the RFC 4648 base32 alphabet, like kube-proxy's chain hashes.
fn chain_hash(seed: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    // FNV-1a: the content only needs to look like kube-proxy's hashes and be unique.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut h2 = h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = String::with_capacity(16);
    for i in 0..16 {
        let src = if i < 12 { &mut h } else { &mut h2 };
        out.push(char::from(ALPHABET[(*src & 31) as usize]));
        *src >>= 5;
    }
    out
}

/// The probability as `iptables-save` prints it: kube-proxy writes `%0.10f`, the
/// kernel stores it as a 31-bit fixed-point value, and iptables prints `%.11f` of that.
fn printed_probability(p: f64) -> String {
    let input: f64 = format!("{p:.10}").parse().unwrap_or(p);
    let fixed = (input * 2_147_483_648.0).round();
    format!("{:.11}", fixed / 2_147_483_648.0)
}

/// An `iptables-save` (nf_tables backend) dump of a kube-proxy (1.29-style) node with
/// `services` ClusterIP services, each with `endpoints_per_service` endpoints.
///
/// Rules per service: 1 `KUBE-SERVICES` match, 1 masquerade rule, and 3 per endpoint;
/// e.g. 4,500 services x 3 endpoints gives about 50,000 rules (~9 MB).
pub fn kube_proxy_iptables_dump(services: usize, endpoints_per_service: usize) -> String {
    let stamp = "Sat Nov 28 10:31:07 2026";
    let mut out = String::with_capacity(services * (400 + endpoints_per_service * 560) + 4096);
    let _ = writeln!(
        out,
        "# Generated by iptables-save v1.8.9 (nf_tables) on {stamp}"
    );
    out.push_str(concat!(
        "*filter\n",
        ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        ":KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n",
        ":KUBE-SERVICES - [0:0]\n",
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n",
        "-A INPUT -j KUBE-FIREWALL\n",
        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n",
        "COMMIT\n",
    ));
    let _ = writeln!(out, "# Completed on {stamp}");
    let _ = writeln!(
        out,
        "# Generated by iptables-save v1.8.9 (nf_tables) on {stamp}"
    );
    out.push_str(concat!(
        "*nat\n",
        ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
        ":KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n",
    ));

    struct Svc {
        name: String,
        vip: String,
        svc_chain: String,
        eps: Vec<(String, String)>, // (sep chain, ip)
    }
    let mut all = Vec::with_capacity(services);
    let mut ep_counter = 0usize;
    for s in 0..services {
        let name = format!("ns-{}/svc-{s}:http", s % 97);
        let vip = format!("10.96.{}.{}", s / 250, s % 250 + 1);
        let svc_chain = format!("KUBE-SVC-{}", chain_hash(&format!("{name}tcp")));
        let eps = (0..endpoints_per_service)
            .map(|_| {
                ep_counter += 1;
                let ip = format!(
                    "10.{}.{}.{}",
                    244 + ep_counter / 62_500,
                    (ep_counter / 250) % 250,
                    ep_counter % 250 + 1
                );
                (
                    format!("KUBE-SEP-{}", chain_hash(&format!("{name}tcp{ip}:8080"))),
                    ip,
                )
            })
            .collect();
        all.push(Svc {
            name,
            vip,
            svc_chain,
            eps,
        });
    }
    for s in &all {
        let _ = writeln!(out, ":{} - [0:0]", s.svc_chain);
        for (sep, _) in &s.eps {
            let _ = writeln!(out, ":{sep} - [0:0]");
        }
    }
    out.push_str(concat!(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n",
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    ));
    for s in &all {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{} cluster IP\" -m tcp --dport 80 -j {}",
            s.vip, s.name, s.svc_chain
        );
    }
    out.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    for s in &all {
        let _ = writeln!(
            out,
            "-A {} ! -s 10.244.0.0/16 -d {}/32 -p tcp -m comment --comment \"{} cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ",
            s.svc_chain, s.vip, s.name
        );
        let n = s.eps.len();
        for (i, (sep, ip)) in s.eps.iter().enumerate() {
            if i + 1 < n {
                let _ = writeln!(
                    out,
                    "-A {} -m comment --comment \"{} -> {ip}:8080\" -m statistic --mode random --probability {} -j {sep}",
                    s.svc_chain,
                    s.name,
                    printed_probability(1.0 / (n - i) as f64)
                );
            } else {
                let _ = writeln!(
                    out,
                    "-A {} -m comment --comment \"{} -> {ip}:8080\" -j {sep}",
                    s.svc_chain, s.name
                );
            }
        }
        for (sep, ip) in &s.eps {
            let _ = writeln!(
                out,
                "-A {sep} -s {ip}/32 -m comment --comment \"{}\" -j KUBE-MARK-MASQ",
                s.name
            );
            let _ = writeln!(
                out,
                "-A {sep} -p tcp -m comment --comment \"{}\" -m tcp -j DNAT --to-destination {ip}:8080",
                s.name
            );
        }
    }
    out.push_str("COMMIT\n");
    let _ = writeln!(out, "# Completed on {stamp}");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_inputs_parse_completely() {
        let ct = super::conntrack_extended_table(2_000);
        let list = netsnap_parse::conntrack::parse_conntrack_list(&ct);
        assert!(list.unparsed.is_empty(), "{:?}", list.unparsed.first());
        assert_eq!(list.entries.len(), 2_000);
        let lnc = super::ipvsadm_connections(2_000);
        let conns = netsnap_parse::ipvs::parse_ipvs_connections(&lnc);
        assert!(conns.unparsed.is_empty(), "{:?}", conns.unparsed.first());
        assert_eq!(conns.connections.len(), 2_000);
    }
}

#[cfg(test)]
mod kube_proxy_tests {
    use super::*;

    #[test]
    fn probabilities_match_iptables_save() {
        // Values seen in the captured fixtures.
        assert_eq!(printed_probability(1.0 / 3.0), "0.33333333349");
        assert_eq!(printed_probability(0.5), "0.50000000000");
    }

    #[test]
    fn generated_dump_parses_into_the_model() {
        use netsnap_parse::iptables::{kube_proxy_model, parse_iptables_save};
        let text = kube_proxy_iptables_dump(20, 3);
        let dump = parse_iptables_save(&text);
        assert!(dump.unparsed.is_empty());
        let m = kube_proxy_model(&dump);
        assert_eq!(m.services.len(), 20);
        assert!(
            m.services
                .iter()
                .all(|s| s.endpoints.len() == 3 && s.endpoints.iter().all(|e| e.ip.is_some()))
        );
        assert_eq!(dump.rule_count(), 8 + 7 + 1 + 20 * (2 + 3 * 3));
    }
}
