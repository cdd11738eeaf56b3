//! deploy/ keeps the collector's first promise (nothing written to the node) and
//! names the image in one place (deploy/kustomization.yaml).

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join(file)).expect("read manifest");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect()
}

fn pod_specs() -> Vec<Value> {
    docs("daemonset.yaml")
        .into_iter()
        .filter_map(|d| d["spec"]["template"]["spec"].as_mapping().cloned())
        .map(Value::Mapping)
        .collect()
}

#[test]
fn host_paths_are_read_only_and_never_created() {
    let specs = pod_specs();
    assert!(!specs.is_empty(), "no pod template in daemonset.yaml");
    for spec in specs {
        let volumes = spec["volumes"].as_sequence().cloned().unwrap_or_default();
        let host: Vec<&str> = volumes
            .iter()
            .filter(|v| v.get("hostPath").is_some())
            .map(|v| v["name"].as_str().expect("volume name"))
            .collect();
        assert!(!host.is_empty());
        for v in volumes.iter().filter(|v| v.get("hostPath").is_some()) {
            let ty = v["hostPath"]["type"].as_str().unwrap_or("");
            assert!(
                matches!(ty, "" | "Directory" | "File" | "Socket"),
                "{}: hostPath type {ty} creates files on the node",
                v["name"].as_str().unwrap_or("?")
            );
        }
        for c in spec["containers"].as_sequence().expect("containers") {
            for m in c["volumeMounts"].as_sequence().cloned().unwrap_or_default() {
                let name = m["name"].as_str().expect("mount name");
                if host.contains(&name) {
                    assert_eq!(
                        m["readOnly"].as_bool(),
                        Some(true),
                        "hostPath {name} is mounted writable"
                    );
                }
            }
        }
    }
}

#[test]
fn the_image_is_named_only_in_the_kustomization() {
    let k = &docs("kustomization.yaml")[0];
    let images = k["images"].as_sequence().expect("images");
    assert_eq!(images.len(), 1);
    let placeholder = images[0]["name"].as_str().expect("name");
    assert!(images[0]["newName"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(images[0]["newTag"].as_str().is_some_and(|n| !n.is_empty()));
    for spec in pod_specs() {
        for c in spec["containers"].as_sequence().expect("containers") {
            assert_eq!(c["image"].as_str(), Some(placeholder));
        }
    }
    // Every manifest the kustomization applies exists.
    for r in k["resources"].as_sequence().expect("resources") {
        assert!(
            deploy_dir().join(r.as_str().expect("path")).is_file(),
            "{r:?}"
        );
    }
}
