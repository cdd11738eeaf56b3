//! The bundle arguments of `analyze`: bundles, extracted bundle directories, or directories
//! of bundles (one per node, as `kubectl netsnap collect --all-nodes` writes them).

use std::path::{Path, PathBuf};

use netsnap_bundle::layout;

/// Why a bundle argument cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The directory could not be listed.
    #[error("{0}: cannot list the directory: {1}")]
    List(String, #[source] std::io::Error),
    /// A directory that is neither an extracted bundle nor holds any bundle.
    #[error(
        "{0} is neither an extracted bundle (no manifest.json) nor a directory of bundles (no *.tar.zst, *.tar or extracted bundle in it)"
    )]
    Empty(String),
}

/// True for a file name a bundle can have.
fn is_bundle_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".tar.zst") || name.ends_with(".tzst") || name.ends_with(".tar")
}

/// Expands each directory of bundles into the bundles it holds (sorted by name, not
/// recursively); bundle files and extracted bundles (a directory with `manifest.json`) stay
/// as they are.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() || p.join(layout::MANIFEST).is_file() {
            out.push(p.clone());
            continue;
        }
        let shown = p.display().to_string();
        let mut found: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| InputError::List(shown.clone(), e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|e| {
                (e.is_file() && is_bundle_file(e))
                    || (e.is_dir() && e.join(layout::MANIFEST).is_file())
            })
            .collect();
        if found.is_empty() {
            return Err(InputError::Empty(shown));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_bundles_expand_and_others_stay() {
        let d = tempfile::tempdir().unwrap();
        let set = d.path().join("run");
        std::fs::create_dir_all(set.join("node-c")).unwrap();
        std::fs::write(set.join("node-c").join("manifest.json"), "{}").unwrap();
        std::fs::write(set.join("node-b.tar.zst"), "").unwrap();
        std::fs::write(set.join("node-a.tar"), "").unwrap();
        std::fs::write(set.join("notes.txt"), "").unwrap();
        let single = d.path().join("x.tar.zst");
        std::fs::write(&single, "").unwrap();
        let got = expand(&[set.clone(), single.clone(), set.join("node-c")]).unwrap();
        assert_eq!(
            got,
            [
                set.join("node-a.tar"),
                set.join("node-b.tar.zst"),
                set.join("node-c"),
                single,
                set.join("node-c"),
            ]
        );
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = expand(&[empty]).unwrap_err().to_string();
        assert!(e.contains("neither an extracted bundle"), "{e}");
    }
}
