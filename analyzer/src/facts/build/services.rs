//! Service facts: Services joined with their EndpointSlices, resolv.conf files and
//! duplicate addresses.

use std::collections::{BTreeMap, HashMap, HashSet};

use netsnap_bundle::k8s::{EndpointSliceRecord, ServiceRecord};
use netsnap_bundle::layout;

use super::*;

impl Builder<'_> {
    pub(super) fn services(
        &mut self,
        services: &[(u64, ServiceRecord)],
        slices: &[(u64, EndpointSliceRecord)],
    ) {
        let node = self.facts.node.name.clone();
        let live_pod_by_ip: HashMap<String, String> = self
            .facts
            .pods
            .iter()
            .filter(|p| p.live && !p.host_network)
            .flat_map(|p| p.ips.iter().map(move |ip| (ip.clone(), p.key.clone())))
            .collect();
        let mut by_service: HashMap<(String, String), Vec<(u64, &EndpointSliceRecord)>> =
            HashMap::new();
        for (line, s) in slices {
            if let Some(name) = &s.service_name {
                by_service
                    .entry((s.namespace.clone(), name.clone()))
                    .or_default()
                    .push((*line, s));
            }
        }
        let mut endpoint_pods: HashSet<String> = HashSet::new();
        let mut dns_pods: HashSet<String> = HashSet::new();
        for (line, s) in services {
            let key = format!("{}/{}", s.namespace, s.name);
            let headless = s.cluster_ips.iter().any(|ip| ip == "None");
            let cluster_ips: Vec<String> = s
                .cluster_ips
                .iter()
                .filter(|ip| *ip != "None" && !ip.is_empty())
                .cloned()
                .collect();
            let proxied = s.type_ != "ExternalName"
                && !cluster_ips.is_empty()
                && !s
                    .labels
                    .contains_key("service.kubernetes.io/service-proxy-name");
            let my_slices = by_service
                .get(&(s.namespace.clone(), s.name.clone()))
                .cloned()
                .unwrap_or_default();
            let mut endpoints: Vec<EndpointFacts> = Vec::new();
            let mut newest_slice = None;
            for (sline, sl) in &my_slices {
                if sl.created_at > newest_slice {
                    newest_slice = sl.created_at;
                }
                for e in &sl.endpoints {
                    for a in &e.addresses {
                        if endpoints.iter().any(|x| &x.ip == a) {
                            continue;
                        }
                        let ready = e.ready.unwrap_or(true);
                        endpoints.push(EndpointFacts {
                            ip: a.clone(),
                            ready,
                            serving: e.serving.unwrap_or(ready),
                            terminating: e.terminating.unwrap_or(false),
                            node_name: e.node_name.clone(),
                            local: e.node_name.as_deref() == Some(node.as_str()),
                            pod: live_pod_by_ip.get(a).cloned(),
                            source: Some(Source::line(layout::k8s::ENDPOINT_SLICES, *sline)),
                        });
                    }
                }
            }
            for e in endpoints.iter().filter(|e| e.ready) {
                if let Some(p) = &e.pod {
                    endpoint_pods.insert(p.clone());
                }
            }
            if key == "kube-system/kube-dns" {
                dns_pods.extend(endpoints.iter().filter_map(|e| e.pod.clone()));
            }
            let ready_ips: Vec<String> = endpoints
                .iter()
                .filter(|e| e.ready)
                .map(|e| e.ip.clone())
                .collect();
            let serving_ips: Vec<String> = if ready_ips.is_empty() {
                endpoints
                    .iter()
                    .filter(|e| e.serving)
                    .map(|e| e.ip.clone())
                    .collect()
            } else {
                ready_ips.clone()
            };
            let mut ports = Vec::new();
            for vip in &cluster_ips {
                for p in &s.ports {
                    let pname = p.name.clone().unwrap_or_default();
                    let mut ready_endpoints = Vec::new();
                    for (_, sl) in &my_slices {
                        let Some(sp) = sl
                            .ports
                            .iter()
                            .find(|sp| sp.name.clone().unwrap_or_default() == pname)
                        else {
                            continue;
                        };
                        let Some(port) = sp.port else { continue };
                        for e in sl.endpoints.iter().filter(|e| e.ready.unwrap_or(true)) {
                            for a in &e.addresses {
                                let ep = ip_port(a, port);
                                if !ready_endpoints.contains(&ep) {
                                    ready_endpoints.push(ep);
                                }
                            }
                        }
                    }
                    ports.push(ServicePortFacts {
                        name: pname,
                        protocol: p.protocol.clone(),
                        port: i64::from(p.port),
                        node_port: p.node_port.map(i64::from),
                        vip: vip.clone(),
                        key: service_key(vip, p.port, &p.protocol),
                        ready_endpoints,
                        serving_endpoint_ips: serving_ips.clone(),
                        ..ServicePortFacts::default()
                    });
                }
            }
            self.facts.services.push(ServiceFacts {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                key: key.clone(),
                type_: s.type_.clone(),
                cluster_ips,
                headless,
                proxied,
                has_selector: !s.selector.is_empty(),
                external_traffic_policy: s.external_traffic_policy.clone(),
                internal_traffic_policy: s.internal_traffic_policy.clone(),
                age_seconds: age(self.now, s.created_at),
                endpoints_age_seconds: age(self.now, newest_slice),
                critical: key == "kube-system/kube-dns" || key == "default/kubernetes",
                is_cluster_dns: key == "kube-system/kube-dns",
                ready_endpoint_count: ready_ips.len() as u64,
                local_ready_endpoint_count: endpoints.iter().filter(|e| e.ready && e.local).count()
                    as u64,
                endpoints,
                ports,
                source: Some(Source::line(layout::k8s::SERVICES, *line)),
            });
        }
        for p in &mut self.facts.pods {
            p.is_endpoint = endpoint_pods.contains(&p.key);
            p.is_dns_endpoint = dns_pods.contains(&p.key);
        }
    }

    pub(super) fn resolv_confs(&mut self) {
        let paths: Vec<(String, String)> = self
            .bundle
            .manifest()
            .artifacts
            .iter()
            .filter(|a| {
                a.path.starts_with("netns/") && a.path.ends_with(layout::netns::RESOLV_CONF)
            })
            .map(|a| {
                let ns = a.netns.clone().unwrap_or_else(|| {
                    a.path
                        .trim_start_matches("netns/")
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                });
                (a.path.clone(), ns)
            })
            .collect();
        // Indexes, so that the join stays linear: 2,000 pods x 20,000 Services.
        let mut service_by_ip: HashMap<String, String> = HashMap::new();
        for s in &self.facts.services {
            for ip in &s.cluster_ips {
                service_by_ip
                    .entry(ip.clone())
                    .or_insert_with(|| s.key.clone());
            }
        }
        let mut pods_by_netns: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in self.facts.pods.iter().enumerate() {
            if let Some(ns) = &p.netns {
                pods_by_netns.entry(ns.clone()).or_default().push(i);
            }
        }
        for (path, ns) in paths {
            let Some(lines) = self.lines(&path) else {
                continue;
            };
            let mut r = ResolvConfFacts::default();
            for (n, l) in lines {
                let mut t = l.split_whitespace();
                match t.next() {
                    Some("nameserver") => {
                        if r.source.is_none() {
                            r.source = Some(Source::line(&path, n));
                        }
                        r.nameservers.extend(t.next().map(str::to_string));
                    }
                    Some("search") => r.search = t.map(str::to_string).collect(),
                    Some("domain") => r.search = t.map(str::to_string).collect(),
                    Some("options") => r.options.extend(t.map(str::to_string)),
                    _ => {}
                }
            }
            r.nameserver_service = r
                .nameservers
                .first()
                .and_then(|ip| service_by_ip.get(ip))
                .cloned();
            for &i in pods_by_netns.get(&ns).into_iter().flatten() {
                self.facts.pods[i].resolv_conf = Some(r.clone());
            }
        }
    }

    pub(super) fn duplicates(&mut self) {
        let mut by_ip: BTreeMap<String, DuplicateIp> = BTreeMap::new();
        for p in self.facts.pods.iter().filter(|p| p.live && !p.host_network) {
            for ip in &p.ips {
                let d = by_ip.entry(ip.clone()).or_default();
                d.ip = ip.clone();
                d.pods.push(p.key.clone());
                d.sources.extend(p.source.clone());
            }
        }
        for n in self.facts.netns.iter().filter(|n| !n.is_host) {
            for ip in &n.addresses {
                let d = by_ip.entry(ip.clone()).or_default();
                d.ip = ip.clone();
                d.netns.push(n.id.clone());
                d.sources.extend(n.source.clone());
            }
        }
        self.facts.ips.duplicates = by_ip
            .into_values()
            .filter(|d| d.pods.len() > 1 || d.netns.len() > 1)
            .collect();
    }
}
