//! Benchmark helpers (generators of realistic inputs).

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

#[cfg(test)]
mod tests {
    #[test]
    fn generated_inputs_parse_completely() {
        let ct = super::conntrack_extended_table(2_000);
        let list = netsnap_analyzer::parse::conntrack::parse_conntrack_list(&ct);
        assert!(list.unparsed.is_empty(), "{:?}", list.unparsed.first());
        assert_eq!(list.entries.len(), 2_000);
        let lnc = super::ipvsadm_connections(2_000);
        let conns = netsnap_analyzer::parse::ipvs::parse_ipvs_connections(&lnc);
        assert!(conns.unparsed.is_empty(), "{:?}", conns.unparsed.first());
        assert_eq!(conns.connections.len(), 2_000);
    }
}
