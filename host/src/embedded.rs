//! The shipped plugins (`plugins/`: the demo trading swarm, hello-agent, echo-tool), built by
//! the build script and embedded in the binary so the main job runs with nothing beside it.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Writes every embedded plugin into `dir` (creating it) unless a file of that name exists.
/// Returns the files written.
pub fn install(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, bytes) in PLUGINS {
        let path = dir.join(name);
        if !path.exists() {
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
