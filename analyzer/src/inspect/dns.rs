//! `dns`: the collector's DNS probes (what `dig @VIP` from each namespace returned).

use netsnap_bundle::native::{DnsProbe, DnsProbeReport};
use netsnap_bundle::{Bundle, layout};

use super::load::{self, no_data};
use super::table::Table;
use super::{InspectArgs, InspectError, Outcome, emit};

/// `inspect dns`.
pub fn dns(bundle: &Bundle, args: &InspectArgs) -> Result<Outcome, InspectError> {
    let Some(report) =
        load::json::<DnsProbeReport>(bundle, layout::dns::PROBES, "DNS probe report")?
    else {
        return Ok(Outcome::NoData(no_data("dns", bundle, layout::dns::PROBES)));
    };
    let rows: Vec<&DnsProbe> = report
        .probes
        .iter()
        .filter(|p| args.netns.as_deref().is_none_or(|n| p.from_netns == n))
        .collect();
    let cd = &report.cluster_dns;
    let header = format!(
        "cluster DNS: service {} endpoints {} domain {} (found via {})\n\n",
        join_or_none(cd.service_ips.iter()),
        join_or_none(cd.endpoint_ips.iter()),
        cd.cluster_domain.as_deref().unwrap_or("<unknown>"),
        cd.source
    );
    emit(args, &rows, |rows| {
        let mut t = Table::new(&[
            "FROM", "SERVER", "ROLE", "PROTO", "QNAME", "TYPE", "OUTCOME", "RTT", "ANSWERS",
        ]);
        t.drop_first(&["TYPE", "ROLE", "PROTO"]);
        for p in rows {
            let from = match &p.from_pod {
                Some(pod) => format!("{} ({pod})", p.from_netns),
                None => p.from_netns.clone(),
            };
            let answers = if p.answers.is_empty() {
                p.error.clone().unwrap_or_else(|| "-".into())
            } else {
                p.answers.join(",")
            };
            t.row(vec![
                from,
                p.server.to_string(),
                p.server_role.clone(),
                p.transport.clone(),
                p.qname.clone(),
                p.qtype.clone(),
                p.outcome.clone(),
                p.latency_ms
                    .map_or_else(|| "-".into(), |l| format!("{l:.1}ms")),
                answers,
            ]);
        }
        format!("{header}{}", t.render())
    })
}

fn join_or_none<T: std::fmt::Display>(it: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = it.map(|x| x.to_string()).collect();
    if v.is_empty() {
        "<none>".into()
    } else {
        v.join(",")
    }
}
