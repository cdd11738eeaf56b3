//! `ipvs`: IPVS virtual services like `ipvsadm -Ln` (from `ipvsadm -Ln`, else the
//! kernel's `/proc/net/ip_vs`), `--stats` counters merged in when collected, and
//! `-t VIP:PORT` / `-u VIP:PORT` for one service.

use std::net::SocketAddr;

use netsnap_bundle::{Bundle, layout};
use serde::Serialize;

use super::load::{self, no_data};
use super::{Format, InspectArgs, InspectError, Outcome};
use crate::parse::ipvs::{self, ForwardMethod, IpvsProtocol, ServiceKey, VirtualService};

/// One virtual service with its real servers (the JSON row).
#[derive(Debug, Serialize)]
pub struct IpvsRow<'a> {
    /// `TCP`, `UDP`, `SCTP`, `FWM`.
    pub protocol: String,
    /// `VIP:PORT`, or the firewall mark.
    pub service: String,
    /// The parsed service.
    #[serde(flatten)]
    pub detail: &'a VirtualService,
}

fn key_text(k: &ServiceKey) -> (String, String) {
    match k {
        ServiceKey::Address {
            protocol,
            address,
            port,
        } => (
            protocol.as_str().to_string(),
            SocketAddr::new(*address, *port).to_string(),
        ),
        ServiceKey::Fwmark { mark, ipv6 } => (
            "FWM".into(),
            if *ipv6 {
                format!("{mark} IPv6")
            } else {
                mark.to_string()
            },
        ),
    }
}

fn forward_text(f: &Option<ForwardMethod>) -> String {
    match f {
        Some(ForwardMethod::Masq) => "Masq".into(),
        Some(ForwardMethod::Route) => "Route".into(),
        Some(ForwardMethod::Tunnel) => "Tunnel".into(),
        Some(ForwardMethod::Local) => "Local".into(),
        Some(ForwardMethod::Other(s)) => s.clone(),
        None => "-".into(),
    }
}

fn parse_filter(
    flag: &'static str,
    v: &str,
    proto: IpvsProtocol,
) -> Result<ServiceKey, InspectError> {
    let sa: SocketAddr = v.parse().map_err(|_| InspectError::BadFilter {
        flag,
        value: v.to_string(),
        reason: "expected VIP:PORT (IPv6: [VIP]:PORT)",
    })?;
    Ok(ServiceKey::Address {
        protocol: proto,
        address: sa.ip(),
        port: sa.port(),
    })
}

/// `inspect ipvs`.
pub fn ipvs(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let text = match load::text(bundle, layout::ipvs::LIST)? {
        Some(t) => t,
        None => match load::text(bundle, layout::ipvs::PROC)? {
            Some(t) => t,
            None => return Ok(Outcome::NoData(no_data("ipvs", bundle, layout::ipvs::LIST))),
        },
    };
    let mut table = ipvs::parse_ipvs_list(&text);
    if let Some(stats) = load::text(bundle, layout::ipvs::STATS)? {
        table.merge(&ipvs::parse_ipvs_list(&stats));
    }
    let filter = match (&args.tcp_service, &args.udp_service) {
        (Some(t), _) => Some(parse_filter("-t", t, IpvsProtocol::Tcp)?),
        (None, Some(u)) => Some(parse_filter("-u", u, IpvsProtocol::Udp)?),
        _ => None,
    };
    let services: Vec<&VirtualService> = table
        .services
        .iter()
        .filter(|s| filter.as_ref().is_none_or(|k| &s.key == k))
        .collect();
    if args.format == Format::Json {
        let rows: Vec<IpvsRow> = services
            .iter()
            .map(|s| {
                let (protocol, service) = key_text(&s.key);
                IpvsRow {
                    protocol,
                    service,
                    detail: s,
                }
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&rows)
            .map_err(|e| InspectError::Serialize(e.to_string()))?;
        s.push('\n');
        return Ok(Outcome::Rendered(s));
    }
    // ipvsadm's own layout (ipvsadm.c print_service_entry / print_title).
    let mut out = String::new();
    if filter.is_none() {
        out.push_str(&format!(
            "IP Virtual Server version {} (size={})\n",
            table.version.as_deref().unwrap_or("?"),
            table
                .conn_table_size
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        ));
    }
    out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for s in services {
        let (proto, svc) = key_text(&s.key);
        let mut line = format!("{proto:<4} {svc} {}", s.scheduler.as_deref().unwrap_or("-"));
        if let Some(p) = &s.persistence {
            line.push_str(" persistent");
            if let Some(t) = p.timeout_seconds {
                line.push_str(&format!(" {t}"));
            }
        }
        if s.one_packet {
            line.push_str(" ops");
        }
        for f in &s.other_flags {
            line.push(' ');
            line.push_str(f);
        }
        out.push_str(line.trim_end());
        out.push('\n');
        for r in &s.real_servers {
            let addr = SocketAddr::new(r.address, r.port).to_string();
            out.push_str(&format!(
                "  -> {addr:<28} {:<7} {:<6} {:<10} {}\n",
                forward_text(&r.forward),
                r.weight.map_or_else(|| "-".into(), |w| w.to_string()),
                r.active_conns.map_or_else(|| "-".into(), |w| w.to_string()),
                r.inactive_conns
                    .map_or_else(|| "-".into(), |w| w.to_string()),
            ));
        }
    }
    Ok(Outcome::Rendered(out))
}
