//! The shipped plugins (`plugins/hello-agent`, `plugins/echo-tool`), built by the build script
//! and embedded in the binary so the main job runs with nothing beside it.

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
