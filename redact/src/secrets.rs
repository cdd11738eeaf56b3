//! Secrets never leave the node: node configuration files (CNI configs under
//! `/etc/cni/net.d`, the kubelet config, flannel's env file, IPAM state) are
//! parsed before they are stored, and credentials in them are withheld.
//!
//! - A **kubeconfig-shaped** file (a mapping with `users` and `clusters` or
//!   `contexts`: Calico's `calico-kubeconfig`, Multus's kubeconfig) is withheld
//!   whole; only its API server URLs are kept, in the record's attributes.
//! - In JSON and YAML files, the value of every **secret-named key** (tokens,
//!   passwords, secrets, API/access/private keys, credentials, `*-key-data`,
//!   `*-certificate-data`, `auth`/`authorization` headers), every header map
//!   (`staticPodURLHeader`, `headers`), every embedded kubeconfig and every
//!   string that *looks* secret whatever its key (PEM blocks, JWTs, `Bearer` /
//!   `Basic` credentials) is replaced by `"<withheld: WHAT>"`; the structure
//!   (plugin types, IPAM ranges, MTU, hairpin mode, cluster DNS) is kept.
//! - Other text (env files, unparseable files) is scanned line by line with
//!   the same rules (`KEY=value` / `key: value` lines, PEM blocks, JWTs).
//!
//! A file without anything to withhold is stored byte for byte; otherwise the
//! stored content is the re-serialized (or line-edited) text and the record
//! lists every location withheld and why.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// One withheld value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// Where it was: a JSON path (`plugins[0].ipam.password`) or `line N`.
    pub location: String,
    /// What it was (`token`, `password`, `private key`, `certificate`, `kubeconfig`, …).
    pub what: &'static str,
}

/// The result of filtering one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Nothing to withhold: store the bytes as read.
    Verbatim,
    /// Secrets replaced by markers: store `content` instead.
    Redacted {
        /// The content to store.
        content: Vec<u8>,
        /// What was withheld, in document order.
        withheld: Vec<Withheld>,
        /// How the content was produced (`json`, `yaml`, `text`).
        format: &'static str,
    },
    /// The whole file is withheld (a kubeconfig).
    WithheldWhole {
        /// Why, for the record.
        reason: String,
        /// The API server URLs it named (not secret, useful for diagnosis).
        servers: Vec<String>,
    },
}

/// The marker that replaces a withheld value.
pub fn marker(what: &str) -> String {
    format!("<withheld: {what}>")
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// What a key names when its value is a secret, else None.
pub fn secret_key(key: &str) -> Option<&'static str> {
    let k = normalize(key);
    const CONTAINS: &[(&str, &str)] = &[
        ("privatekey", "private key"),
        ("token", "token"),
        ("password", "password"),
        ("passwd", "password"),
        ("passphrase", "password"),
        ("secret", "secret"),
        ("apikey", "api key"),
        ("accesskey", "access key"),
        ("credential", "credential"),
        ("bearer", "token"),
    ];
    if let Some((_, what)) = CONTAINS.iter().find(|(p, _)| k.contains(p)) {
        return Some(what);
    }
    if k.ends_with("keydata") {
        return Some("private key");
    }
    if k.ends_with("data") && k.contains("cert") {
        return Some("certificate");
    }
    match k.as_str() {
        "key" | "tlskey" => Some("private key"),
        "pass" | "pwd" => Some("password"),
        "auth" | "authorization" | "proxyauthorization" | "cookie" => Some("credential"),
        _ => None,
    }
}

/// True for keys whose value is a map or list of HTTP headers (all withheld).
fn header_container(key: &str) -> bool {
    matches!(
        normalize(key).as_str(),
        "staticpodurlheader" | "headers" | "httpheaders" | "header"
    )
}

fn jwt_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*").ok())
        .as_ref()
}

fn credential_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}").ok())
        .as_ref()
}

/// What a string value is when it looks secret whatever its key (PEM, JWT, credential).
pub fn secret_value(s: &str) -> Option<&'static str> {
    if s.contains("-----BEGIN") {
        return Some(if s.contains("CERTIFICATE") {
            "certificate"
        } else {
            "private key"
        });
    }
    if jwt_re().is_some_and(|re| re.is_match(s)) {
        return Some("token");
    }
    if credential_re().is_some_and(|re| re.is_match(s)) {
        return Some("credential");
    }
    None
}

/// True for a kubeconfig: a mapping with `users` and `clusters` or `contexts`.
fn is_kubeconfig(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.contains_key("users") && (m.contains_key("clusters") || m.contains_key("contexts"))
    })
}

fn kubeconfig_servers(v: &Value) -> Vec<String> {
    v.get("clusters")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.pointer("/cluster/server").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(v: &mut Value, path: &str, out: &mut Vec<Withheld>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let here = join(path, k);
                let what = if is_kubeconfig(child) {
                    Some("kubeconfig")
                } else if header_container(k) && !child.is_null() {
                    Some("header")
                } else if matches!(child, Value::Bool(_) | Value::Null) {
                    None
                } else {
                    secret_key(k)
                };
                match what {
                    Some(what) => {
                        *child = Value::String(marker(what));
                        out.push(Withheld {
                            location: here,
                            what,
                        });
                    }
                    None => walk(child, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                walk(child, &format!("{path}[{i}]"), out);
            }
        }
        Value::String(s) => {
            if let Some(what) = secret_value(s) {
                *s = marker(what);
                out.push(Withheld {
                    location: if path.is_empty() {
                        "(root)".into()
                    } else {
                        path.to_string()
                    },
                    what,
                });
            }
        }
        _ => {}
    }
}

fn structured(mut v: Value, format: &'static str) -> Option<Filtered> {
    if is_kubeconfig(&v) {
        return Some(Filtered::WithheldWhole {
            reason: "kubeconfig-shaped file (credentials for the Kubernetes API)".into(),
            servers: kubeconfig_servers(&v),
        });
    }
    let mut withheld = Vec::new();
    walk(&mut v, "", &mut withheld);
    if withheld.is_empty() {
        return Some(Filtered::Verbatim);
    }
    let content = match format {
        "json" => serde_json::to_vec_pretty(&v).ok().map(|mut b| {
            b.push(b'\n');
            b
        })?,
        _ => serde_yaml_ng::to_string(&v).ok()?.into_bytes(),
    };
    Some(Filtered::Redacted {
        content,
        withheld,
        format,
    })
}

fn kv_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"["']?([A-Za-z0-9_.\-]+)["']?\s*[:=]\s*"#).ok())
        .as_ref()
}

/// Line-by-line filter for text that is not JSON or YAML.
pub fn filter_text(text: &str) -> Filtered {
    let mut out = String::with_capacity(text.len());
    let mut withheld = Vec::new();
    let mut in_pem = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let (body, eol) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if in_pem {
            if body.contains("-----END") {
                in_pem = false;
            }
            continue;
        }
        if body.contains("-----BEGIN") {
            let what = if body.contains("CERTIFICATE") {
                "certificate"
            } else {
                "private key"
            };
            in_pem = !body.contains("-----END");
            out.push_str(&marker(what));
            out.push_str(eol);
            withheld.push(Withheld {
                location: format!("line {n}"),
                what,
            });
            continue;
        }
        // The first `key=value` / `key: value` / `"key": value` whose key names a
        // secret: the rest of the line is its value.
        let secret_kv = kv_re().and_then(|re| {
            re.captures_iter(body).find_map(|c| {
                let (all, key) = (c.get(0)?, c.get(1)?);
                let what = secret_key(key.as_str())?;
                (all.end() < body.len()).then_some((all.end(), what))
            })
        });
        if let Some((value_at, what)) = secret_kv {
            out.push_str(&body[..value_at]);
            out.push_str(&marker(what));
            out.push_str(eol);
            withheld.push(Withheld {
                location: format!("line {n}"),
                what,
            });
            continue;
        }
        if let Some(what) = secret_value(body) {
            let mut edited = body.to_string();
            for re in [jwt_re(), credential_re()].into_iter().flatten() {
                edited = re.replace_all(&edited, marker(what).as_str()).into_owned();
            }
            out.push_str(&edited);
            out.push_str(eol);
            withheld.push(Withheld {
                location: format!("line {n}"),
                what,
            });
            continue;
        }
        out.push_str(line);
    }
    if withheld.is_empty() {
        Filtered::Verbatim
    } else {
        Filtered::Redacted {
            content: out.into_bytes(),
            withheld,
            format: "text",
        }
    }
}

/// Filters one configuration file's bytes (see the module doc).
pub fn filter_config(bytes: &[u8]) -> Filtered {
    let Ok(text) = std::str::from_utf8(bytes) else {
        // Binary: no structure to keep and nothing a reader needs; scan what is text.
        return match filter_text(&String::from_utf8_lossy(bytes)) {
            Filtered::Verbatim => Filtered::Verbatim,
            _ => Filtered::WithheldWhole {
                reason: "binary file with credential-like content".into(),
                servers: Vec::new(),
            },
        };
    };
    let head = text.trim_start();
    if (head.starts_with('{') || head.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(text)
        && let Some(f) = structured(v, "json")
    {
        return f;
    }
    if let Ok(y) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        && matches!(
            y,
            serde_yaml_ng::Value::Mapping(_) | serde_yaml_ng::Value::Sequence(_)
        )
        && let Ok(v) = serde_json::to_value(&y)
        && let Some(f) = structured(v, "yaml")
    {
        return f;
    }
    filter_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-9f3b2c7d-token";

    fn redacted(f: &Filtered) -> (String, Vec<String>) {
        match f {
            Filtered::Redacted {
                content, withheld, ..
            } => (
                String::from_utf8_lossy(content).into_owned(),
                withheld
                    .iter()
                    .map(|w| format!("{} ({})", w.location, w.what))
                    .collect(),
            ),
            other => panic!("not redacted: {other:?}"),
        }
    }

    #[test]
    fn conflist_keeps_structure_and_withholds_secrets() {
        let conf = format!(
            r#"{{"name":"k8s","cniVersion":"0.3.1","plugins":[{{"type":"calico","mtu":1440,"ipam":{{"type":"calico-ipam","password":"{CANARY}"}},"etcd_key_file":"/etc/calico/key.pem","kubernetes":{{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"}},"policy":{{"type":"k8s","k8s_auth_token":"{CANARY}"}},"hairpinMode":true}},{{"type":"x","apiKey":12345,"header":"Bearer {CANARY}"}}]}}"#
        );
        let f = filter_config(conf.as_bytes());
        let (text, withheld) = redacted(&f);
        assert!(!text.contains(CANARY), "{text}");
        assert!(!text.contains("12345"), "{text}");
        assert_eq!(
            withheld,
            vec![
                "plugins[0].ipam.password (password)",
                "plugins[0].policy.k8s_auth_token (token)",
                "plugins[1].apiKey (api key)",
                "plugins[1].header (header)",
            ]
        );
        let v: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(v.pointer("/plugins/0/mtu"), Some(&Value::from(1440)));
        assert_eq!(
            v.pointer("/plugins/0/kubernetes/kubeconfig"),
            Some(&Value::from("/etc/cni/net.d/calico-kubeconfig")),
            "a path to a kubeconfig is not a secret"
        );
        assert_eq!(
            v.pointer("/plugins/0/ipam/password"),
            Some(&Value::from("<withheld: password>"))
        );
        assert_eq!(
            v.pointer("/plugins/0/hairpinMode"),
            Some(&Value::Bool(true))
        );
    }

    #[test]
    fn kubeconfigs_are_withheld_whole() {
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://10.96.0.1:443\n    certificate-authority-data: LS0tLS1\nusers:\n- name: calico\n  user:\n    token: {CANARY}\ncontexts:\n- name: calico-context\n  context: {{cluster: local, user: calico}}\ncurrent-context: calico-context\n"
        );
        assert_eq!(
            filter_config(kc.as_bytes()),
            Filtered::WithheldWhole {
                reason: "kubeconfig-shaped file (credentials for the Kubernetes API)".into(),
                servers: vec!["https://10.96.0.1:443".into()],
            }
        );
        // Inline in a CNI config (Multus can embed one): the whole object goes.
        let conf = format!(
            r#"{{"type":"multus","kubeconfig":{{"clusters":[],"users":[{{"user":{{"token":"{CANARY}"}}}}]}}}}"#
        );
        let (text, withheld) = redacted(&filter_config(conf.as_bytes()));
        assert!(!text.contains(CANARY));
        assert_eq!(withheld, vec!["kubeconfig (kubeconfig)"]);
    }

    #[test]
    fn kubelet_static_pod_header_and_clean_files() {
        let cfg = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- 10.96.0.10\nhairpinMode: hairpin-veth\nstaticPodURL: https://example.invalid/pods\nstaticPodURLHeader:\n  Authorization:\n  - Bearer {CANARY}\n"
        );
        let (text, withheld) = redacted(&filter_config(cfg.as_bytes()));
        assert!(!text.contains(CANARY), "{text}");
        assert_eq!(withheld, vec!["staticPodURLHeader (header)"]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("still YAML");
        assert_eq!(v["hairpinMode"].as_str(), Some("hairpin-veth"));
        assert_eq!(v["clusterDNS"][0].as_str(), Some("10.96.0.10"));
        // Nothing to withhold: byte for byte.
        let clean =
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 110\n";
        assert_eq!(filter_config(clean.as_bytes()), Filtered::Verbatim);
        let flannel = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.0.1/24\n";
        assert_eq!(filter_config(flannel.as_bytes()), Filtered::Verbatim);
        let ipam = "0123abcd\r\neth0";
        assert_eq!(filter_config(ipam.as_bytes()), Filtered::Verbatim);
    }

    #[test]
    fn text_lines_pem_and_jwt() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl";
        let text = format!(
            "FLANNEL_MTU=1450\nETCD_PASSWORD={CANARY}\nnote {jwt} here\n-----BEGIN RSA PRIVATE KEY-----\n{CANARY}\n-----END RSA PRIVATE KEY-----\nend\n"
        );
        let (out, withheld) = redacted(&filter_text(&text));
        assert_eq!(
            out,
            "FLANNEL_MTU=1450\nETCD_PASSWORD=<withheld: password>\nnote <withheld: token> here\n<withheld: private key>\nend\n"
        );
        assert_eq!(
            withheld,
            vec![
                "line 2 (password)",
                "line 3 (token)",
                "line 4 (private key)"
            ]
        );
        // A JSON-looking file that does not parse still gets the line filter.
        let broken = format!("{{\"password\": \"{CANARY}\",\n");
        let (out, _) = redacted(&filter_config(broken.as_bytes()));
        assert!(!out.contains(CANARY), "{out}");
    }

    #[test]
    fn key_names() {
        for (k, what) in [
            ("client-key-data", "private key"),
            ("client-certificate-data", "certificate"),
            ("certificate-authority-data", "certificate"),
            ("tokenFile", "token"),
            ("Authorization", "credential"),
            ("SECRET_ACCESS_KEY", "secret"),
        ] {
            assert_eq!(secret_key(k), Some(what), "{k}");
        }
        for k in [
            "etcd_key_file",
            "type",
            "mtu",
            "ipam",
            "kubeconfig",
            "subnet",
            "keys_total",
            "hairpinMode",
        ] {
            assert_eq!(secret_key(k), None, "{k}");
        }
    }
}
