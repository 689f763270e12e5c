//! Who owns a plugin name. Names are identity: grants, state and the audit are keyed by them,
//! so a file must not run under a name that belongs to another (`docs/manifest.md`, "Who owns
//! a name"). When several files of the plugins folder claim one name, the owner is, in order:
//!
//! 1. the file named after it (`NAME.wasm`, or any file a manifest-less build would be named
//!    `NAME` by: `good_tool.wasm` for `good-tool`), whatever the others' manifests say;
//! 2. the build whose digest is approved for the name (grants are pinned to it);
//! 3. the file already running under it;
//!
//! and the others are impostors, refused with a reason naming the owner. A name held by a
//! registered tool can be taken only by a file named after it. With no owner by these rules
//! (two new, unapproved files claiming a name neither is named after) every claimant is
//! refused: the operator renames one.
//!
//! Pure: the supervisor gathers the claims and applies the verdict.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One file's claim on a name.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    /// The `.wasm` file.
    pub file: PathBuf,
    /// The name its manifest (embedded, sidecar, or the file stem) gives.
    pub name: String,
    /// blake3 of the `.wasm` bytes, hex (what grants are pinned to).
    pub digest: String,
}

/// What the decision needs to know besides the claims.
pub(super) trait Owners {
    /// The digest approved for `name`, if any.
    fn approved(&self, name: &str) -> Option<String>;
    /// The file running under `name`, if any.
    fn running(&self, name: &str) -> Option<PathBuf>;
    /// Whether a registered tool holds `name`.
    fn registered(&self, name: &str) -> bool;
}

/// The name a file is named after: its stem as a manifest-less file would be named
/// (`good_tool.wasm` → `good-tool`).
fn stem(file: &Path) -> Option<String> {
    let stem = file.file_stem().and_then(|s| s.to_str())?;
    Some(colony_caps::manifest::Manifest::fallback(stem, colony_caps::manifest::Kind::Agent).name)
}

/// Every impostor among `claims`, with the reason it is refused.
pub(super) fn impostors(claims: &[Claim], owners: &dyn Owners) -> HashMap<PathBuf, String> {
    let mut by_name: BTreeMap<&str, Vec<&Claim>> = BTreeMap::new();
    for c in claims {
        by_name.entry(&c.name).or_default().push(c);
    }
    let mut out = HashMap::new();
    for (name, claimants) in by_name {
        let named_after = claimants
            .iter()
            .find(|c| stem(&c.file).as_deref() == Some(name));
        let refuse_all = |why: String, out: &mut HashMap<PathBuf, String>| {
            for c in &claimants {
                out.insert(c.file.clone(), why.clone());
            }
        };
        let owner: &Claim = if let Some(owner) = named_after {
            owner
        } else if owners.registered(name) {
            refuse_all(
                format!(
                    "its manifest claims the plugin name \"{name}\", which belongs to the \
                     registered tool {name} (only a file named {name}.wasm may take it)"
                ),
                &mut out,
            );
            continue;
        } else if claimants.len() == 1 {
            continue;
        } else if let Some(owner) = owners.approved(name).and_then(|d| {
            let mut approved = claimants.iter().filter(|c| c.digest == d);
            approved.next().filter(|_| approved.next().is_none())
        }) {
            owner
        } else if let Some(owner) = owners
            .running(name)
            .and_then(|f| claimants.iter().find(|c| c.file == f))
        {
            owner
        } else {
            let files: Vec<String> = claimants
                .iter()
                .map(|c| c.file.display().to_string())
                .collect();
            refuse_all(
                format!(
                    "plugin name \"{name}\" is claimed by {}; none of them is named {name}.wasm, \
                     approved or running, so none gets it (rename all but one)",
                    files.join(" and ")
                ),
                &mut out,
            );
            continue;
        };
        for c in claimants.iter().filter(|c| c.file != owner.file) {
            out.insert(
                c.file.clone(),
                format!(
                    "its manifest claims the plugin name \"{name}\", which belongs to {} ({})",
                    owner.file.display(),
                    if named_after.is_some() {
                        "the file named after it"
                    } else if owners.approved(name).as_deref() == Some(owner.digest.as_str()) {
                        "the build approved for it"
                    } else {
                        "the file already running under it"
                    }
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Known {
        approved: Vec<(&'static str, &'static str)>,
        running: Vec<(&'static str, &'static str)>,
        registered: Vec<&'static str>,
    }

    impl Owners for Known {
        fn approved(&self, name: &str) -> Option<String> {
            self.approved
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| d.to_string())
        }
        fn running(&self, name: &str) -> Option<PathBuf> {
            self.running
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| PathBuf::from(f))
        }
        fn registered(&self, name: &str) -> bool {
            self.registered.contains(&name)
        }
    }

    fn claim(file: &str, name: &str, digest: &str) -> Claim {
        Claim {
            file: PathBuf::from(file),
            name: name.into(),
            digest: digest.into(),
        }
    }

    fn refused(claims: &[Claim], known: &Known) -> Vec<String> {
        let mut v: Vec<String> = impostors(claims, known)
            .into_keys()
            .map(|p| p.display().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn who_owns_a_name() {
        let probe = claim("/p/probe.wasm", "probe", "d1");
        let squatter = claim("/p/aaa.wasm", "probe", "d2");
        let other = claim("/p/zzz.wasm", "probe", "d3");
        let none = Known::default();
        let cases: Vec<(&str, Vec<Claim>, Known, Vec<&str>)> = vec![
            ("alone", vec![squatter.clone()], Known::default(), vec![]),
            (
                "the file named after the name wins, even against an approved squatter",
                vec![squatter.clone(), probe.clone()],
                Known {
                    approved: vec![("probe", "d2")],
                    running: vec![("probe", "/p/aaa.wasm")],
                    ..Known::default()
                },
                vec!["/p/aaa.wasm"],
            ),
            (
                "then the approved build",
                vec![squatter.clone(), other.clone()],
                Known {
                    approved: vec![("probe", "d3")],
                    running: vec![("probe", "/p/aaa.wasm")],
                    ..Known::default()
                },
                vec!["/p/aaa.wasm"],
            ),
            (
                "then the running one",
                vec![squatter.clone(), other.clone()],
                Known {
                    running: vec![("probe", "/p/zzz.wasm")],
                    ..Known::default()
                },
                vec!["/p/aaa.wasm"],
            ),
            (
                "nobody: all refused",
                vec![squatter.clone(), other.clone()],
                none,
                vec!["/p/aaa.wasm", "/p/zzz.wasm"],
            ),
            (
                "a registered name is not taken by a manifest",
                vec![squatter.clone()],
                Known {
                    registered: vec!["probe"],
                    ..Known::default()
                },
                vec!["/p/aaa.wasm"],
            ),
            (
                "but by the file named after it",
                vec![probe.clone()],
                Known {
                    registered: vec!["probe"],
                    ..Known::default()
                },
                vec![],
            ),
        ];
        for (what, claims, known, want) in cases {
            assert_eq!(refused(&claims, &known), want, "{what}");
        }
    }

    #[test]
    fn the_reason_names_the_owner() {
        let got = impostors(
            &[
                claim("/p/aaa.wasm", "probe", "d2"),
                claim("/p/probe.wasm", "probe", "d1"),
            ],
            &Known::default(),
        );
        assert_eq!(
            got[Path::new("/p/aaa.wasm")],
            "its manifest claims the plugin name \"probe\", which belongs to /p/probe.wasm \
             (the file named after it)"
        );
    }
}
