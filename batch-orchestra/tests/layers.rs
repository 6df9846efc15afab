//! The library's modules import downward only: each top-level module sits in a layer, and a
//! `crate::` path in a module may name only modules of its own layer or below, with no circle
//! among them. Read from the sources, so a new upward import fails here with its file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    // Foundation: what a record is, errors, the failure policy, the connector contracts.
    &["record"],
    &["error"],
    &["failure", "connector", "cache", "encryption", "quarantine"],
    &["store", "pipeline", "metrics", "client"],
    &["snapshot", "job", "macro_support"],
    // Engine: what every activity shares, then the kinds of job, then the worker.
    &["activity"],
    &["batch"],
    &["sharded", "stream"],
    &["worker", "connectors"],
    // Operating jobs, test support, and the command line on top.
    &["ops", "testing"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a source file belongs to (`None` for the crate root and the binary).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "bin").then(|| name.to_owned())
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

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of every `crate::` path in `code`, braces included
/// (`crate::{a::X, b}` names `a` and `b`).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` in a macro and `batch_orchestra::` are not this crate's paths by name.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    names.insert(first);
                }
            }
        } else {
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.insert(first);
        }
    }
    names
}

/// The root's re-exports (`pub use module::{A, B}`), by name: where each comes from.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    let code = code(lib).replace('\n', " ");
    for statement in code.split(';') {
        let Some(used) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = used.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            if !item.is_empty() {
                exports.insert(item.to_owned(), module.trim().to_owned());
            }
        }
    }
    exports
}

/// Every import between top-level modules, with a file that makes it.
fn imports() -> BTreeMap<(String, String), PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exports = root_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        for name in crate_paths(&code(&std::fs::read_to_string(&file).unwrap())) {
            let to = if layer_of(&name).is_some() {
                name
            } else if let Some(module) = exports.get(&name) {
                module.clone()
            } else {
                // The proc macros (`pipeline`, `batch_source`, ...) and `__private`.
                continue;
            };
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| file.clone());
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(&src, f))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "place these modules in LAYERS: {unplaced:?}"
    );
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let upward: Vec<String> = imports()
        .into_iter()
        .filter(|((from, to), _)| layer_of(to) > layer_of(from))
        .map(|((from, to), file)| format!("{from} -> {to} ({})", file.display()))
        .collect();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let edges = imports();
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth-first search; a module met again on the current path closes a circle.
    fn visit<'a>(
        at: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|m| *m == at) {
            let mut circle = path[start..].to_vec();
            circle.push(at);
            return Some(circle);
        }
        if !done.insert(at) {
            return None;
        }
        path.push(at);
        for to in next.get(at).into_iter().flatten() {
            if let Some(circle) = visit(to, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in next.keys() {
        let circle = visit(module, &next, &mut Vec::new(), &mut done);
        assert!(
            circle.is_none(),
            "a circle: {}",
            circle.unwrap().join(" -> ")
        );
    }
}

#[test]
fn the_reader_sees_imports_in_every_form() {
    let code = "use crate::job::JobHandle;\nuse crate::{error::JobError, record};\n\
                let x = crate::batch::RequestOf::<P>::new();\n$crate::pipeline::X";
    let found = crate_paths(code);
    let expected: BTreeSet<String> = ["job", "error", "record", "batch"].map(String::from).into();
    assert_eq!(found, expected);
}
