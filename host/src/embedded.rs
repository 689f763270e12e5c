//! The shipped plugins (`plugins/`: the demo trading swarm, hello-agent, echo-tool), built by
//! the build script and embedded in the binary so the main job runs with nothing beside it.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Writes every embedded plugin into `dir` (creating it) where a file of that name is missing
/// or holds other bytes (a build from another version of `colony`, or an edited copy, which
/// the demo would not trust), atomically. Other files in `dir` are left alone. Returns the
/// files written.
pub fn install(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, bytes) in PLUGINS {
        let path = dir.join(name);
        let current = std::fs::read(&path).ok();
        if current.as_deref() != Some(*bytes) {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Whether `digest` (blake3 hex) is the build of one of the shipped plugins, byte for byte.
/// The demo grants exactly these builds what their manifests request
/// (`HostConfig::trust_shipped`); a changed file is not trusted.
pub fn is_shipped(digest: &str) -> bool {
    static DIGESTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    DIGESTS
        .get_or_init(|| {
            PLUGINS
                .iter()
                .map(|(_, bytes)| blake3::hash(bytes).to_hex().to_string())
                .collect()
        })
        .iter()
        .any(|d| d == digest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn install_writes_missing_and_changed_shipped_files_and_leaves_others_alone() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::install(dir.path()).unwrap();
        assert_eq!(first.len(), super::PLUGINS.len());
        assert!(
            super::install(dir.path()).unwrap().is_empty(),
            "nothing changed"
        );
        let (name, bytes) = super::PLUGINS[0];
        std::fs::write(dir.path().join(name), b"an older build").unwrap();
        std::fs::write(dir.path().join("mine.wasm"), b"the user's own").unwrap();
        assert_eq!(super::install(dir.path()).unwrap(), [dir.path().join(name)]);
        assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), bytes);
        assert_eq!(
            std::fs::read(dir.path().join("mine.wasm")).unwrap(),
            b"the user's own"
        );
        assert!(super::is_shipped(&blake3::hash(bytes).to_hex()));
        assert!(!super::is_shipped(
            &blake3::hash(b"an older build").to_hex()
        ));
    }
}
