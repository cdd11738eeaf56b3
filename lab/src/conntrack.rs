//! Real conntrack entries for lab nodes, inserted with `conntrack -R` (the
//! batch form of `conntrack -I`): one process loads ~100,000 entries per
//! second, so a 200,000-entry table costs a couple of seconds.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::kubeproxy::Proto;

/// One conntrack entry to insert (original tuple, optional NATed reply tuple).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    /// Protocol.
    pub proto: Proto,
    /// Original source address.
    pub src: Ipv4Addr,
    /// Original destination address (a Service VIP for NATed flows).
    pub dst: Ipv4Addr,
    /// Original source port.
    pub sport: u16,
    /// Original destination port.
    pub dport: u16,
    /// Reply source (the DNAT endpoint) and its port, when the flow was DNATed.
    pub reply_src: Option<(Ipv4Addr, u16)>,
    /// Reply destination (the SNAT address) and its port, when the flow was SNATed.
    pub reply_dst: Option<(Ipv4Addr, u16)>,
    /// Timeout in seconds.
    pub timeout: u32,
}

impl CtEntry {
    /// An ESTABLISHED TCP flow without NAT.
    pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> CtEntry {
        CtEntry {
            proto: Proto::Tcp,
            src,
            dst,
            sport,
            dport,
            reply_src: None,
            reply_dst: None,
            timeout: 3600,
        }
    }

    /// An ESTABLISHED TCP flow masqueraded to `snat:port` (what pod egress through
    /// MASQUERADE leaves behind).
    pub fn tcp_snat(
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        snat: (Ipv4Addr, u16),
    ) -> CtEntry {
        CtEntry {
            reply_dst: Some(snat),
            ..CtEntry::tcp(src, sport, dst, dport)
        }
    }

    /// A UDP flow to a VIP that was DNATed to `endpoint:port` (what a DNS query leaves behind).
    pub fn udp_dnat(
        src: Ipv4Addr,
        sport: u16,
        vip: Ipv4Addr,
        dport: u16,
        endpoint: (Ipv4Addr, u16),
    ) -> CtEntry {
        CtEntry {
            proto: Proto::Udp,
            src,
            dst: vip,
            sport,
            dport,
            reply_src: Some(endpoint),
            reply_dst: None,
            timeout: 120,
        }
    }

    /// One line of `conntrack -R` input (the arguments of `conntrack -I`).
    pub fn to_load_line(&self) -> String {
        let mut s = format!(
            "-I -p {} -s {} -d {} --sport {} --dport {}",
            self.proto.lower(),
            self.src,
            self.dst,
            self.sport,
            self.dport
        );
        if self.reply_src.is_some() || self.reply_dst.is_some() {
            let (rsrc, rsport) = self.reply_src.unwrap_or((self.dst, self.dport));
            let (rdst, rdport) = self.reply_dst.unwrap_or((self.src, self.sport));
            let _ = write!(
                s,
                " -r {rsrc} -q {rdst} --reply-port-src {rsport} --reply-port-dst {rdport}"
            );
        }
        if self.proto == Proto::Tcp {
            s.push_str(" --state ESTABLISHED -u ASSURED");
        }
        let _ = write!(s, " -t {}", self.timeout);
        s
    }
}

/// `n` distinct ESTABLISHED TCP entries from synthetic clients (`10.200.0.0/14`,
/// 50,000 source ports each) to `dst:dport`, as `conntrack -R` input.
/// `start` offsets the sequence so successive fills never collide.
pub fn fill_lines(start: usize, n: usize, dst: Ipv4Addr, dport: u16) -> String {
    let mut out = String::with_capacity(n * 110);
    let base = u32::from(Ipv4Addr::new(10, 200, 0, 0));
    for i in start..start + n {
        let src = Ipv4Addr::from(base + (i / 50_000) as u32 + 1);
        let sport = 10_000 + (i % 50_000) as u16;
        out.push_str(&CtEntry::tcp(src, sport, dst, dport).to_load_line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_lines_are_distinct_and_well_formed() {
        let text = fill_lines(0, 120_000, Ipv4Addr::new(10, 96, 0, 1), 443);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 120_000);
        let unique: std::collections::HashSet<&str> = lines.iter().copied().collect();
        assert_eq!(unique.len(), 120_000);
        assert!(lines[0].starts_with("-I -p tcp -s 10.200.0.1 -d 10.96.0.1 --sport 10000"));
        let next = fill_lines(120_000, 10, Ipv4Addr::new(10, 96, 0, 1), 443);
        assert!(next.lines().all(|l| !unique.contains(l)));
        let nat = CtEntry::udp_dnat(
            Ipv4Addr::new(10, 244, 0, 5),
            40000,
            Ipv4Addr::new(10, 96, 0, 10),
            53,
            (Ipv4Addr::new(10, 244, 0, 9), 53),
        )
        .to_load_line();
        assert!(
            nat.contains("-r 10.244.0.9 -q 10.244.0.5 --reply-port-src 53 --reply-port-dst 40000")
        );
        let snat = CtEntry::tcp_snat(
            Ipv4Addr::new(10, 244, 0, 5),
            40000,
            Ipv4Addr::new(93, 184, 216, 34),
            443,
            (Ipv4Addr::new(172, 18, 0, 10), 33000),
        )
        .to_load_line();
        assert!(
            snat.contains(
                "-r 93.184.216.34 -q 172.18.0.10 --reply-port-src 443 --reply-port-dst 33000"
            ),
            "{snat}"
        );
    }
}
