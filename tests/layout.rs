//! The source layout's promises, checked on the source itself: no import
//! cycle between files, and leaf primitives import nothing of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a source file: `src/rules/engine/mod.rs` → `rules::engine`.
fn module_of(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [] => None,
        [only] if only == "lib" || only == "main" => None,
        _ => Some(parts),
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What each `crate::` or `super::` path in code names (comments skipped):
/// its module path and the item after it, if any; `{a, b::c}` lists expand.
fn references(module: &[String], text: &str) -> BTreeSet<(Vec<String>, Option<String>)> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len() - 1].to_vec()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            let paths: Vec<&str> = if let Some(list) = rest.strip_prefix('{') {
                list[..list.find('}').unwrap_or(0)].split(',').collect()
            } else {
                vec![rest]
            };
            for p in paths {
                let mut full = base.clone();
                let mut item = None;
                for seg in p.trim().split("::") {
                    let seg: String = seg
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if seg.is_empty() {
                        break;
                    }
                    if !seg.chars().all(|c| c.is_lowercase() || c == '_') {
                        item = Some(seg);
                        break;
                    }
                    if seg != "self" {
                        full.push(seg);
                    }
                }
                if !full.is_empty() {
                    out.insert((full, item));
                }
            }
        }
    }
    out
}

/// Items a module re-exports from one of its own children
/// (`pub use child::Item;` or `pub use child::{A, B};`): item → child.
fn reexports(module: &[String], text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((child, items)) = rest.split_once("::") else {
            continue;
        };
        if child == "crate" || child == "super" || child.contains(' ') {
            continue;
        }
        for item in items
            .trim_end_matches(';')
            .trim_matches(['{', '}'])
            .split(',')
        {
            let item = item.trim();
            if !item.is_empty() {
                let mut m = module.to_vec();
                m.push(child.to_owned());
                out.insert(item.to_owned(), m);
            }
        }
    }
    out
}

/// File-level import graph: module → modules (files) it names. A name
/// re-exported by a parent resolves to the child that defines it.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let modules: BTreeSet<Vec<String>> = paths
        .iter()
        .filter_map(|p| module_of(p.strip_prefix(&src).unwrap()))
        .collect();
    let mut reexported = BTreeMap::new();
    for p in &paths {
        if let Some(m) = module_of(p.strip_prefix(&src).unwrap()) {
            let text = std::fs::read_to_string(p).unwrap();
            reexported.insert(m.clone(), reexports(&m, &text));
        }
    }
    let mut edges = BTreeMap::new();
    for p in &paths {
        let Some(m) = module_of(p.strip_prefix(&src).unwrap()) else {
            continue;
        };
        let text = std::fs::read_to_string(p).unwrap();
        let mut to = BTreeSet::new();
        for (mut r, item) in references(&m, &text) {
            // The longest prefix that is a file: items name their module.
            while !r.is_empty() && !modules.contains(&r) {
                r.pop();
            }
            if let Some(child) = item.and_then(|i| reexported.get(&r)?.get(&i).cloned()) {
                r = child;
            }
            if !r.is_empty() && r != m && !m.starts_with(&r) {
                to.insert(r);
            }
        }
        edges.insert(m, to);
    }
    edges
}

#[test]
fn no_import_cycle_between_files() {
    let g = graph();
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        m: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle: Vec<String> = stack[i..].iter().map(|s| s.join("::")).collect();
            cycle.push(m.join("::"));
            return Some(cycle);
        }
        if !done.insert(m.clone()) {
            return None;
        }
        stack.push(m.clone());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(cycle) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
    assert!(g.len() > 40, "walked the source tree: {} files", g.len());
}

#[test]
fn primitives_import_nothing_of_the_crate() {
    let g = graph();
    for (m, to) in &g {
        if m[0] == "primitives" {
            let outside: Vec<_> = to.iter().filter(|t| t[0] != "primitives").collect();
            assert!(outside.is_empty(), "{} imports {outside:?}", m.join("::"));
        }
    }
}
