//! The kernel log: `/dev/kmsg` read without waiting, rendered like `dmesg`, the
//! last [`KERNEL_LOG_TAIL`] lines plus every networking line.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

/// Lines kept from the end of the kernel log (networking lines are kept regardless).
pub const KERNEL_LOG_TAIL: usize = 2000;
/// Cap on networking lines kept from before the tail.
pub const KERNEL_LOG_NET_MAX: usize = 10_000;

fn net_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)conntrack|table full|dropping packet|neighbou?r|martian|\barp\b|veth|bridge|br_netfilter|\bcni|flannel|calico|cilium|vxlan|geneve|ip_?vs|iptables|ip6tables|nf_tables|nftables|netfilter|nfnetlink|\bxt_|netdev|link is (up|down)|\b(eth|ens|enp|eno|bond|wlan)\d|\btcp:|\budp:|dst cache|rtnl|\bsocket\b|\bdropped\b|mtu",
        )
        .ok()
    })
    .as_ref()
}

/// True for kernel log lines about networking.
pub fn is_network_line(line: &str) -> bool {
    net_re().is_some_and(|re| re.is_match(line))
}

/// Keeps the last `tail` lines plus every networking line before them (capped), in order.
#[derive(Debug)]
pub struct LogFilter {
    tail: VecDeque<String>,
    tail_max: usize,
    net: Vec<String>,
    /// Lines seen.
    pub total: u64,
    /// Networking lines dropped at the cap.
    pub net_dropped: u64,
}

impl LogFilter {
    /// A filter keeping `tail_max` trailing lines.
    pub fn new(tail_max: usize) -> Self {
        LogFilter {
            tail: VecDeque::new(),
            tail_max,
            net: Vec::new(),
            total: 0,
            net_dropped: 0,
        }
    }

    /// Feeds one line.
    pub fn push(&mut self, line: String) {
        self.total += 1;
        self.tail.push_back(line);
        if self.tail.len() > self.tail_max
            && let Some(old) = self.tail.pop_front()
            && is_network_line(&old)
        {
            if self.net.len() < KERNEL_LOG_NET_MAX {
                self.net.push(old);
            } else {
                self.net_dropped += 1;
            }
        }
    }

    /// The kept lines, oldest first, newline-terminated.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in self.net.iter().chain(self.tail.iter()) {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// Renders one `/dev/kmsg` record like `dmesg`: `[    5.123456] message`.
pub fn render_kmsg(record: &str) -> Option<String> {
    let (head, rest) = record.split_once(';')?;
    let msg = rest.lines().next().unwrap_or("");
    let ts: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some(format!(
        "[{:>5}.{:06}] {}",
        ts / 1_000_000,
        ts % 1_000_000,
        msg
    ))
}

/// Reads all of `/dev/kmsg` without blocking.
pub fn read_kmsg(path: &Path, filter: &mut LogFilter) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = render_kmsg(&rec) {
                    filter.push(line);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            // EPIPE: records were overwritten while we read; the next read continues.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
