//! `colony tools build TOOL.py`: a Python source file to a component of the `tool` world.
//!
//! The file's `# colony: KEY = VALUE` lines give the manifest (name, version, description,
//! requested capabilities and limits); `componentize-py` (pinned at
//! [`COMPONENTIZE_PY_VERSION`]) compiles the module against the WIT package embedded in this
//! binary ([`super::wit`]); then the manifest is appended to the component as a top-level
//! `colony-manifest` custom section, which the loader reads like the SDK's embedded one.
//! Nothing here panics on what the source file or componentize-py produce: every failure is a
//! [`BuildError`] naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasmtime::wasmparser::{Parser, Payload};

use colony_caps::manifest::{self, Kind, Manifest, RequestedLimits};
use colony_host::plugin::MAX_FILE_BYTES;

/// The componentize-py release `colony tools build` is written and tested against.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// How to install it.
pub const INSTALL: &str = "python3 -m pip install componentize-py==0.25.1";
/// Environment variable naming the componentize-py program (default: `componentize-py` on
/// `PATH`).
pub const PROGRAM_ENV: &str = "COLONY_COMPONENTIZE_PY";
/// Version of a tool whose header names none.
pub const DEFAULT_VERSION: &str = "0.1.0";
/// Largest Python source file read.
const MAX_SOURCE_BYTES: u64 = 4 * 1024 * 1024;
/// Module names componentize-py's generated code takes, and the world's own name.
const RESERVED_MODULES: &[&str] = &[
    "tool",
    "wit_world",
    "componentize_py_types",
    "componentize_py_runtime",
    "componentize_py_async_support",
    "poll_loop",
];

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The source, its header, or what componentize-py said about it (exit 3).
    #[error("{0}")]
    Source(String),
    /// componentize-py is missing or could not run, or a file could not be written (exit 1).
    #[error("{0}")]
    Toolchain(String),
}

/// What the `# colony:` lines of a source file say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Header {
    /// `name`: the tool's name (must be what `describe()` answers).
    pub name: Option<String>,
    /// `version`: semver.
    pub version: Option<String>,
    /// `description`: one paragraph; repeated lines are joined with a space.
    pub description: Option<String>,
    /// `capability`: one requested capability string per line.
    pub capabilities: Vec<String>,
    /// `fuel`, `cpu_ms` (or its old name `deadline_ms`), `memory_bytes`, `output_bytes`.
    pub limits: RequestedLimits,
}

const KEYS: &str =
    "name, version, description, capability, fuel, cpu_ms, memory_bytes, output_bytes";

/// Reads every line of the form `# colony: KEY = VALUE` (`KEY: VALUE` also works).
/// Errors name the line.
pub fn parse_header(source: &str) -> Result<Header, String> {
    let mut h = Header::default();
    for (i, line) in source.lines().enumerate() {
        let n = i + 1;
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("colony:") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(['=', ':']) else {
            return Err(format!(
                "line {n}: `# colony:` needs KEY = VALUE (keys: {KEYS})"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(format!("line {n}: `{key}` has no value"));
        }
        let once = |slot: &mut Option<String>| {
            if slot.is_some() {
                return Err(format!("line {n}: `{key}` is given twice"));
            }
            *slot = Some(value.to_string());
            Ok(())
        };
        let number = || -> Result<u64, String> {
            let digits: String = value.chars().filter(|c| *c != '_').collect();
            match digits.parse::<u64>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(format!(
                    "line {n}: `{key}` must be a whole number greater than zero, not {value:?}"
                )),
            }
        };
        match key {
            "name" => once(&mut h.name)?,
            "version" => once(&mut h.version)?,
            "description" => {
                h.description = Some(match h.description.take() {
                    Some(d) => format!("{d} {value}"),
                    None => value.to_string(),
                });
            }
            "capability" => h.capabilities.push(value.to_string()),
            "fuel" => h.limits.fuel = Some(number()?),
            "cpu_ms" | "deadline_ms" => h.limits.cpu_ms = Some(number()?),
            "memory_bytes" => h.limits.memory_bytes = Some(number()?),
            "output_bytes" => h.limits.output_bytes = Some(number()?),
            other => {
                return Err(format!("line {n}: unknown key `{other}` (keys: {KEYS})"));
            }
        }
    }
    Ok(h)
}

/// The manifest JSON for `header`, checked by the host's own manifest rules. `stem` names the
/// tool when neither `name_override` nor the header does (`fetch_quote` → `fetch-quote`).
pub fn manifest_for(
    header: &Header,
    stem: &str,
    name_override: Option<&str>,
    version_override: Option<&str>,
) -> Result<(Manifest, Vec<u8>), String> {
    let name = name_override
        .map(str::to_string)
        .or_else(|| header.name.clone())
        .unwrap_or_else(|| Manifest::fallback(stem, Kind::Tool).name);
    let version = version_override
        .or(header.version.as_deref())
        .unwrap_or(DEFAULT_VERSION);
    let mut json = serde_json::json!({
        "schema": manifest::SCHEMA,
        "name": name,
        "version": version,
        "kind": "tool",
        "description": header.description.clone().unwrap_or_default(),
        "capabilities": header.capabilities,
    });
    if header.limits != RequestedLimits::default() {
        json["limits"] = serde_json::to_value(&header.limits).map_err(|e| e.to_string())?;
    }
    let bytes = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
    let parsed = Manifest::from_embedded(&bytes).map_err(|e| e.to_string())?;
    Ok((parsed, bytes))
}

/// Appends `json` to `component` as a top-level custom section named `colony-manifest`
/// (id 0, LEB128 size, LEB128 name length, name, payload). Refuses bytes that are not a
/// component or already carry such a section.
pub fn embed_manifest(component: &[u8], json: &[u8]) -> Result<Vec<u8>, String> {
    if !Parser::is_component(component) {
        return Err("componentize-py's output is not a WebAssembly component".into());
    }
    for payload in Parser::new(0).parse_all(component) {
        match payload {
            Ok(Payload::CustomSection(s)) if s.name() == manifest::SECTION => {
                return Err(format!(
                    "the component already has a `{}` section",
                    manifest::SECTION
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("componentize-py's output is malformed: {e}")),
        }
    }
    let mut body = Vec::with_capacity(manifest::SECTION.len() + json.len() + 5);
    leb128(&mut body, manifest::SECTION.len() as u64);
    body.extend_from_slice(manifest::SECTION.as_bytes());
    body.extend_from_slice(json);
    let mut out = Vec::with_capacity(component.len() + body.len() + 6);
    out.extend_from_slice(component);
    out.push(0);
    leb128(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    Ok(out)
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A built tool component.
#[derive(Debug)]
pub struct Built {
    /// Where it was written.
    pub output: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its size in bytes.
    pub size: u64,
    /// blake3 of the bytes, hex.
    pub digest: String,
    /// Time componentize-py took.
    pub componentize: Duration,
}

/// What `colony tools build` was asked.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The Python source.
    pub source: PathBuf,
    /// The component to write.
    pub output: PathBuf,
    /// `--name`.
    pub name: Option<String>,
    /// `--version`.
    pub version: Option<String>,
}

/// Builds `req.source` into `req.output` (written to a temporary file beside it, then
/// renamed). Blocking: it runs componentize-py.
pub fn build(req: &BuildRequest) -> Result<Built, BuildError> {
    let src = std::path::absolute(&req.source)
        .map_err(|e| BuildError::Source(format!("{}: {e}", req.source.display())))?;
    let shown = req.source.display();
    let fail = |what: String| BuildError::Source(format!("{shown}: {what}"));
    if src.extension().is_none_or(|e| e != "py") {
        return Err(fail(
            "a Python tool's file name must end in `.py` (its stem is the module name)".into(),
        ));
    }
    let meta = match std::fs::metadata(&src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail("no such file".into()));
        }
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    };
    if !meta.is_file() {
        return Err(fail("is not a file".into()));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(fail(format!(
            "is {} bytes, more than the {MAX_SOURCE_BYTES}-byte limit for a tool's source",
            meta.len()
        )));
    }
    if std::path::absolute(&req.output).is_ok_and(|o| o == src) {
        return Err(fail(
            "the output would overwrite the source; give another file to -o".into(),
        ));
    }
    let text = colony_host::files::read_regular(&src, MAX_SOURCE_BYTES)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    let text = String::from_utf8(text).map_err(|_| fail("is not UTF-8 text".into()))?;
    let module = src
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    check_module_name(&module).map_err(fail)?;
    let header = parse_header(&text).map_err(fail)?;
    let (manifest, json) = manifest_for(
        &header,
        &module,
        req.name.as_deref(),
        req.version.as_deref(),
    )
    .map_err(|e| fail(format!("manifest from the `# colony:` lines: {e}")))?;
    let src_dir = src.parent().map(Path::to_path_buf).unwrap_or_default();

    let componentize = find_componentize()?;

    let tmp = TempDir::new()
        .map_err(|e| BuildError::Toolchain(format!("cannot create a temporary directory: {e}")))?;
    let wit_dir = tmp.0.join("wit");
    super::wit::write_to(&wit_dir).map_err(|e| {
        BuildError::Toolchain(format!(
            "cannot write the WIT package to {}: {e}",
            wit_dir.display()
        ))
    })?;
    // componentize-py keeps every import of the world it targets: a tool that asks for no
    // `http.outbound` grant is built without `wasi:http`, so it registers without one.
    let wants_http = manifest
        .capabilities
        .iter()
        .any(|c| c.starts_with("http.outbound"));
    let world = if wants_http {
        "tool"
    } else {
        super::wit::TOOL_WITHOUT_HTTP
    };
    let raw = tmp.0.join("component.wasm");
    // The interpreter inside componentize-py writes `__pycache__/*.cpython-3NN.pyc` beside
    // the source while it imports the module; what it adds is removed again below.
    let pycache = PyCache::before(&src_dir);
    let started = Instant::now();
    let out = componentize
        .command()
        .arg("-q")
        .arg("-d")
        .arg(&wit_dir)
        .args(["-w", world, "componentize", &module, "-p"])
        .arg(&src_dir)
        .arg("-o")
        .arg(&raw)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .map_err(|e| BuildError::Toolchain(format!("cannot run {}: {e}", componentize.shown())))?;
    let took = started.elapsed();
    pycache.clean();
    if !out.status.success() {
        let said = clean_stderr(&out, &src_dir);
        let hint = if !wants_http && said.contains("wit_world.imports.") {
            "\n(wasi:http is only in the bindings of a tool that asks for it: add \
             `# colony: capability = http.outbound:<scheme>://<host>[:<port>]`)"
        } else {
            ""
        };
        return Err(fail(format!(
            "componentize-py could not build it ({}):\n{said}{hint}",
            exit_text(&out),
        )));
    }
    let bytes = std::fs::read(&raw).map_err(|e| {
        BuildError::Toolchain(format!(
            "componentize-py reported success but wrote no readable {}: {e}",
            raw.display()
        ))
    })?;
    let bytes = embed_manifest(&bytes, &json).map_err(fail)?;
    let size = bytes.len() as u64;
    if size > MAX_FILE_BYTES {
        return Err(fail(format!(
            "the component is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit on a \
             plugin file (import fewer or smaller packages)"
        )));
    }
    write_atomically(&req.output, &bytes).map_err(|e| {
        BuildError::Toolchain(format!("cannot write {}: {e}", req.output.display()))
    })?;
    Ok(Built {
        output: req.output.clone(),
        manifest,
        size,
        digest: blake3::hash(&bytes).to_hex().to_string(),
        componentize: took,
    })
}

/// The stem becomes a Python module name for componentize-py.
fn check_module_name(module: &str) -> Result<(), String> {
    let ident = module.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && module
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident {
        return Err(format!(
            "the file's stem {module:?} is the module name and must be a Python identifier \
             (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if RESERVED_MODULES.contains(&module) {
        return Err(format!(
            "the module name {module:?} is taken by the generated bindings; rename the file"
        ));
    }
    Ok(())
}

/// How componentize-py is run: a program and the arguments before componentize-py's own.
struct Componentize {
    program: PathBuf,
    prefix: &'static [&'static str],
}

/// The package's console-script entry point, run through `python3 -c`.
const PYTHON_ENTRY: &str = "import sys; from componentize_py import script; sys.exit(script())";

impl Componentize {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(self.prefix);
        c.stdin(Stdio::null());
        c
    }

    fn shown(&self) -> String {
        match self.prefix.is_empty() {
            true => self.program.display().to_string(),
            false => format!("{} -c '{PYTHON_ENTRY}'", self.program.display()),
        }
    }

    /// `--version`'s answer, or why it could not be had.
    fn version(&self) -> Result<String, String> {
        let out = self
            .command()
            .arg("--version")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            let last = said.lines().rev().find(|l| !l.trim().is_empty());
            return Err(format!(
                "`--version` failed ({}): {}",
                exit_text(&out),
                last.unwrap_or("").trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// `$COLONY_COMPONENTIZE_PY` if set; else `componentize-py` on `PATH`; else the installed
/// package through `python3 -c` (pip may put the script where `PATH` does not look: a pyenv
/// without a rehash, a `--user` install). Missing everywhere is an error carrying the install
/// command; a version other than [`COMPONENTIZE_PY_VERSION`] is a warning.
fn find_componentize() -> Result<Componentize, BuildError> {
    let candidates = match std::env::var_os(PROGRAM_ENV).filter(|v| !v.is_empty()) {
        Some(p) => vec![Componentize {
            program: PathBuf::from(p),
            prefix: &[],
        }],
        None => vec![
            Componentize {
                program: PathBuf::from("componentize-py"),
                prefix: &[],
            },
            Componentize {
                program: PathBuf::from("python3"),
                prefix: &["-c", PYTHON_ENTRY],
            },
        ],
    };
    let mut why = Vec::new();
    for c in candidates {
        match c.version() {
            Ok(said) => {
                if said.split_whitespace().nth(1) != Some(COMPONENTIZE_PY_VERSION) {
                    tracing::warn!(
                        found = %said,
                        "colony tools build is tested with componentize-py \
                         {COMPONENTIZE_PY_VERSION}; install it with: {INSTALL}"
                    );
                }
                return Ok(c);
            }
            Err(e) => why.push(format!("{}: {e}", c.shown())),
        }
    }
    Err(BuildError::Toolchain(format!(
        "componentize-py is not installed or cannot run ({}); install it with: {INSTALL}",
        why.join("; ")
    )))
}

fn exit_text(out: &Output) -> String {
    match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    }
}

/// componentize-py's stderr without its own Python wrapper traceback and Rust backtrace, with
/// the in-component path of the source directory (`/0/`) shown as the real one.
fn clean_stderr(out: &Output, src_dir: &Path) -> String {
    let all = String::from_utf8_lossy(&out.stderr);
    let mut text: &str = &all;
    if let Some(i) = text.find("AssertionError: ") {
        text = &text[i + "AssertionError: ".len()..];
    }
    if let Some(i) = text.find("Stack backtrace:") {
        text = &text[..i];
    }
    let text = text.trim();
    let text = if text.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        text.to_string()
    };
    text.replace("\"/0/", &format!("\"{}/", src_dir.display()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tool.wasm".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// `DIR/__pycache__` as it was before a build: absent, or these entries.
struct PyCache {
    dir: PathBuf,
    before: Option<std::collections::HashSet<std::ffi::OsString>>,
}

impl PyCache {
    fn before(src_dir: &Path) -> PyCache {
        let dir = src_dir.join("__pycache__");
        let before = std::fs::read_dir(&dir)
            .ok()
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect());
        PyCache { dir, before }
    }

    /// Removes what the build added (the whole directory if it made it); best effort.
    fn clean(self) {
        match self.before {
            None => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Some(before) => {
                for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                    if !before.contains(&entry.file_name()) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
}

/// A directory under the system temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last = None;
        for attempt in 0..16u32 {
            let dir = base.join(format!(
                "colony-build-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no temporary directory")))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_gives_the_manifest() {
        let src = "# colony: name = fetch-quote\n# colony: version=1.2.0\n\
                   #colony: description = Fetches a quote.\n# colony: description = Twice.\n\
                   # colony: capability = http.outbound:https://api.example.com\n\
                   # colony: fuel = 150_000_000\n# colony: deadline_ms: 1500\n\
                   import json  # colony: name = not-a-header-line\n";
        let h = parse_header(src).unwrap();
        assert_eq!(h.name.as_deref(), Some("fetch-quote"));
        assert_eq!(h.version.as_deref(), Some("1.2.0"));
        assert_eq!(h.description.as_deref(), Some("Fetches a quote. Twice."));
        assert_eq!(
            h.capabilities,
            vec!["http.outbound:https://api.example.com"]
        );
        assert_eq!(h.limits.fuel, Some(150_000_000));
        assert_eq!(h.limits.cpu_ms, Some(1500));
        let (m, json) = manifest_for(&h, "fetch_quote", None, Some("2.0.0")).unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_str()),
            ("fetch-quote", "2.0.0")
        );
        assert_eq!(Manifest::from_embedded(&json).unwrap(), m);
    }

    #[test]
    fn without_a_header_the_stem_names_the_tool() {
        let (m, _) = manifest_for(&Header::default(), "position_size", None, None).unwrap();
        assert_eq!(m.name, "position-size");
        assert_eq!(m.version, DEFAULT_VERSION);
        assert!(m.limits == RequestedLimits::default());
    }

    #[test]
    fn bad_headers_name_the_line() {
        for (src, want) in [
            ("\n# colony: colour = red\n", "line 2: unknown key `colour`"),
            (
                "# colony: fuel = lots\n",
                "line 1: `fuel` must be a whole number",
            ),
            ("# colony: fuel = 0\n", "greater than zero"),
            (
                "# colony: name = a\n# colony: name = b\n",
                "line 2: `name` is given twice",
            ),
            ("# colony: name\n", "line 1: `# colony:` needs KEY = VALUE"),
            ("# colony: version =\n", "`version` has no value"),
        ] {
            let err = parse_header(src).unwrap_err();
            assert!(err.contains(want), "{src:?}: {err}");
        }
        let h = parse_header("# colony: version = 1.2\n").unwrap();
        let err = manifest_for(&h, "x", None, None).unwrap_err();
        assert!(err.contains("`version`"), "{err}");
        let err = manifest_for(&Header::default(), "x", Some("Bad_Name"), None).unwrap_err();
        assert!(err.contains("`name`"), "{err}");
    }

    #[test]
    fn module_names_must_be_identifiers_and_not_taken() {
        assert!(check_module_name("fetch_quote").is_ok());
        assert!(check_module_name("fetch-quote").is_err());
        assert!(check_module_name("1tool").is_err());
        assert!(check_module_name("wit_world").is_err());
        assert!(check_module_name("tool").is_err());
    }

    #[test]
    fn the_manifest_section_is_found_by_a_parser_and_only_once() {
        // The smallest component: preamble only.
        let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let json = br#"{"schema":1,"name":"a","version":"1.0.0","kind":"tool"}"#;
        let with = embed_manifest(&empty, json).unwrap();
        let found: Vec<Vec<u8>> = Parser::new(0)
            .parse_all(&with)
            .filter_map(|p| match p.unwrap() {
                Payload::CustomSection(s) if s.name() == manifest::SECTION => {
                    Some(s.data().to_vec())
                }
                _ => None,
            })
            .collect();
        assert_eq!(found, vec![json.to_vec()]);
        let err = embed_manifest(&with, json).unwrap_err();
        assert!(err.contains("already has"), "{err}");
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(embed_manifest(&core, json).is_err());
    }

    #[test]
    fn leb128_encodes_sizes_past_one_byte() {
        let mut v = Vec::new();
        leb128(&mut v, 624_485);
        assert_eq!(v, [0xe5, 0x8e, 0x26]);
    }
}
