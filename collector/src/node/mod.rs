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
//!
//! Layout: [`privileges`](mod@privileges), [`sysctls`] and [`kernel_log`] hold the logic;
//! [`step`] holds the four [`crate::step::Step`]s.

pub mod kernel_log;
pub mod privileges;
pub mod step;
pub mod sysctls;

pub use kernel_log::{
    KERNEL_LOG_NET_MAX, KERNEL_LOG_TAIL, LogFilter, is_network_line, read_kmsg, render_kmsg,
};
pub use privileges::{cap_eff, check_privileges, privileges};
pub use sysctls::{NODE_SYSCTLS, bridge_ports, node_sysctls};

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
