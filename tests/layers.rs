//! The direction of dependencies, as `src/lib.rs` and docs/design.md
//! ("Layers") state it, held by reading every `crate::` path under src/:
//!
//! main -> ops, agent -> catalog, storage, pg, pipeline, offsite, arm, azure
//! -> config, error, schedule, ui
//!
//! Nothing below `ops` imports `ops` or `agent`; `ops` does not import
//! `agent`; `offsite` and `arm` never import `catalog`; `arm` speaks to Azure
//! through `azure`, not `offsite`; `azure` uses only the bottom layer. The
//! blob client is the storage layer's Azure driver: `storage` may use
//! `offsite`'s names and tags, never the reverse, and `storage` never
//! imports `catalog` (the repository is built on the seam, not in it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer (0 is the bottom). A new module
/// goes here, in the layer docs/design.md gives it.
const LAYERS: &[(&str, u8)] = &[
    ("main", 3),
    ("cli", 3),
    ("print", 3),
    ("ops", 2),
    ("agent", 2),
    ("catalog", 1),
    ("storage", 1),
    ("pg", 1),
    ("pipeline", 1),
    ("offsite", 1),
    ("arm", 1),
    ("azure", 1),
    ("config", 0),
    ("error", 0),
    ("schedule", 0),
    ("ui", 0),
];

/// Imports between modules of one layer that the rules forbid.
const FORBIDDEN: &[(&str, &str)] = &[
    ("ops", "agent"),
    ("offsite", "catalog"),
    ("arm", "catalog"),
    ("arm", "offsite"),
    ("arm", "storage"),
    ("offsite", "storage"),
    ("storage", "catalog"),
    ("azure", "offsite"),
    ("azure", "arm"),
    ("azure", "catalog"),
    ("azure", "pg"),
    ("azure", "pipeline"),
    ("azure", "storage"),
];

/// Known breaches, each with the reason it still stands. Remove a line
/// when its import goes.
const KNOWN: &[(&str, &str, &str)] = &[];

/// What `crate::X` at the root re-exports (`pub use` in lib.rs).
fn root_alias(name: &str) -> &str {
    match name {
        "Config" => "config",
        "Error" | "Result" => "error",
        other => other,
    }
}

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under src/ belongs to (`ops/geo/watch.rs` is
/// `ops`, `main.rs` is `main`); `None` for lib.rs, which only declares them.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// The top-level modules a line names after `crate::`, including those in a
/// brace group (`use crate::{config::X, error::Y}`).
fn targets(line: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![after]
        };
        for n in names {
            let ident: String = n
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                out.insert(root_alias(&ident).to_string());
            }
        }
        rest = after;
    }
    out
}

/// `None` when `from` may import `to`, else why not.
fn breach(from: &str, to: &str) -> Option<String> {
    if from == to {
        return None;
    }
    let Some(lf) = layer(from) else {
        return Some(format!("module {from} has no layer: add it to LAYERS"));
    };
    let Some(lt) = layer(to) else {
        return Some(format!("module {to} has no layer: add it to LAYERS"));
    };
    if lt > lf {
        return Some(format!(
            "{from} (layer {lf}) imports upwards {to} (layer {lt})"
        ));
    }
    if FORBIDDEN.contains(&(from, to)) {
        return Some(format!("{from} must not import {to}"));
    }
    None
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut breaches = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(from) = module_of(rel) else { continue };
        let shown = format!("src/{}", rel.display());
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for to in targets(line) {
                let known = KNOWN.iter().any(|(f, t, _)| *f == shown && *t == to);
                if let Some(why) = breach(&from, &to).filter(|_| !known) {
                    breaches.push(format!("{shown}:{}: {why}\n    {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "imports against the layers (docs/design.md, \"Layers\"):\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_reader_sees_groups_and_root_reexports() {
    let t = targets("use crate::{config::Azure, error::Error};");
    assert_eq!(t, BTreeSet::from(["config".into(), "error".into()]));
    assert_eq!(
        targets("f(&crate::Config::x())"),
        BTreeSet::from(["config".into()])
    );
    assert_eq!(
        breach("offsite", "catalog").as_deref(),
        Some("offsite must not import catalog")
    );
    assert!(breach("catalog", "ops").unwrap().contains("upwards"));
    assert!(breach("ops", "catalog").is_none());
    assert!(breach("ops", "agent").is_some());
}
