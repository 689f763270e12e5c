//! The WIT package this binary was built with (`wit/` and `wit/deps/`), embedded so that
//! `colony tools build` generates bindings for exactly the worlds this host links, with no
//! checkout beside the binary.
//!
//! The table is written by hand (no build script); the test below fails when a `.wit` file is
//! added to or removed from `wit/` without this table following.

use std::path::Path;

/// Every `.wit` file under `wit/`: (path relative to `wit/`, contents), sorted by path.
pub const FILES: &[(&str, &str)] = &[
    (
        "deps/cli/cli.wit",
        include_str!("../../../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/http/http.wit",
        include_str!("../../../../wit/deps/http/http.wit"),
    ),
    (
        "deps/io/io.wit",
        include_str!("../../../../wit/deps/io/io.wit"),
    ),
    (
        "deps/random/random.wit",
        include_str!("../../../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../../../wit/deps/sockets/sockets.wit"),
    ),
    ("handler.wit", include_str!("../../../../wit/handler.wit")),
    ("log.wit", include_str!("../../../../wit/log.wit")),
    (
        "market-data.wit",
        include_str!("../../../../wit/market-data.wit"),
    ),
    (
        "messaging.wit",
        include_str!("../../../../wit/messaging.wit"),
    ),
    ("orders.wit", include_str!("../../../../wit/orders.wit")),
    ("state.wit", include_str!("../../../../wit/state.wit")),
    ("timers.wit", include_str!("../../../../wit/timers.wit")),
    (
        "tool-handler.wit",
        include_str!("../../../../wit/tool-handler.wit"),
    ),
    ("tools.wit", include_str!("../../../../wit/tools.wit")),
    ("types.wit", include_str!("../../../../wit/types.wit")),
    ("worlds.wit", include_str!("../../../../wit/worlds.wit")),
];

/// Name of the world [`without_http`] derives from the `tool` world.
pub const TOOL_WITHOUT_HTTP: &str = "tool-without-http";

/// Writes the package into `dir`, as `wit/` is laid out in the repository, plus
/// `build-worlds.wit` holding the [`TOOL_WITHOUT_HTTP`] world.
pub fn write_to(dir: &Path) -> std::io::Result<()> {
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    let extra = without_http().map_err(std::io::Error::other)?;
    std::fs::write(dir.join("build-worlds.wit"), extra)?;
    Ok(())
}

/// A WIT file declaring the `tool` world of `worlds.wit` less its `wasi:http` imports (and
/// their doc comments), as [`TOOL_WITHOUT_HTTP`]. componentize-py keeps every import of the
/// world it targets, and registration refuses a tool importing `wasi:http` without an
/// `http.outbound` grant, so a Python tool that asks for no such grant is built against this.
pub fn without_http() -> Result<String, String> {
    let worlds = FILES
        .iter()
        .find(|(p, _)| *p == "worlds.wit")
        .map(|(_, t)| *t)
        .ok_or("the embedded WIT package has no worlds.wit")?;
    let package = worlds
        .lines()
        .find(|l| l.trim_start().starts_with("package "))
        .ok_or("worlds.wit has no package declaration")?;
    let start = worlds
        .find("world tool {")
        .ok_or("worlds.wit declares no `world tool {`")?;
    let body_start = start + "world tool {".len();
    let mut depth = 1usize;
    let mut end = None;
    for (i, c) in worlds[body_start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(body_start + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let end = end.ok_or("the `tool` world in worlds.wit is not closed")?;
    let mut kept: Vec<&str> = Vec::new();
    for line in worlds[body_start..end].lines() {
        if line.contains("wasi:http") {
            while kept
                .last()
                .is_some_and(|l| l.trim_start().starts_with("///"))
            {
                kept.pop();
            }
            continue;
        }
        kept.push(line);
    }
    Ok(format!(
        "{package}\n\n/// The `tool` world less its HTTP imports, for `colony tools build` \
         (generated).\nworld {TOOL_WITHOUT_HTTP} {{{}\n}}\n",
        kept.join("\n").trim_end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn wit_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                wit_files(root, &p, out);
            } else if p.extension().is_some_and(|e| e == "wit") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }

    #[test]
    fn the_table_holds_every_wit_file_of_the_repository() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut on_disk = Vec::new();
        wit_files(&root, &root, &mut on_disk);
        on_disk.sort();
        let table: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            table, on_disk,
            "host/cli/src/tools/wit.rs must list every .wit file under wit/"
        );
        for (rel, text) in FILES {
            let disk = std::fs::read_to_string(root.join(rel)).unwrap();
            assert_eq!(*text, disk, "{rel}");
        }
    }

    #[test]
    fn the_package_is_written_as_laid_out() {
        let dir = tempfile::tempdir().unwrap();
        write_to(dir.path()).unwrap();
        let worlds = std::fs::read_to_string(dir.path().join("worlds.wit")).unwrap();
        assert!(worlds.contains("world tool"));
        for (rel, _) in FILES {
            assert!(dir.path().join(rel).is_file(), "{rel}");
        }
        assert!(dir.path().join("build-worlds.wit").is_file());
    }

    #[test]
    fn the_derived_world_is_the_tool_world_without_http() {
        let text = without_http().unwrap();
        assert!(text.starts_with("package colony:plugin@"), "{text}");
        assert!(text.contains("world tool-without-http {"), "{text}");
        assert!(text.contains("import log;"), "{text}");
        assert!(text.contains("export tool-handler;"), "{text}");
        assert!(!text.contains("wasi:http"), "{text}");
        assert!(!text.contains("Outbound HTTP"), "{text}");
    }
}
