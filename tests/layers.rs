//! Tidy test: the modules of `sim/` import each other in one direction only.
//!
//! The layer order is declared once, in ARCHITECTURE.md's "Layers" block; this test reads it,
//! collects every `crate::` path of every `sim/**/*.rs` file (and `cnisim::` in `main.rs`), and
//! fails when a file imports a module of a later layer, or when modules of one layer import each
//! other in a circle. In the spirit of rust-analyzer's tidy tests: the rule lives next to the
//! code and cannot drift.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first: `(layer name, modules)`, read from ARCHITECTURE.md's block
/// between the `<!-- layers -->` and `<!-- /layers -->` markers (lines `name: mod mod ...`).
fn declared_layers(architecture: &str) -> Vec<(String, Vec<String>)> {
    let start = architecture.find("<!-- layers -->").expect("ARCHITECTURE.md has a <!-- layers --> block");
    let end = architecture
        .find("<!-- /layers -->")
        .expect("ARCHITECTURE.md closes the block with <!-- /layers -->");
    architecture[start..end]
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches(|c: char| c.is_ascii_digit() || c == '.').trim();
            let (name, mods) = l.split_once(':')?;
            let name = name.trim().trim_matches('`');
            if name.is_empty() || name.contains(' ') {
                return None;
            }
            let mods = mods.split_whitespace().map(|m| m.trim_matches(|c| c == '`' || c == ',').to_string());
            Some((name.to_string(), mods.filter(|m| !m.is_empty()).collect()))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `sim/proxy/ipvs.rs` and `sim/proxy.rs` are `proxy`.
fn module_of(sim: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(sim).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Source without comments and string literals, so doc links and messages are not imports.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // a char literal such as '"'
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every module named after `crate::` (or `cnisim::`), including each item of a
/// `use crate::{a, b::c}` group.
fn imported_modules(code: &str, root: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let pat = format!("{root}::");
    let mut rest = code;
    while let Some(at) = rest.find(&pat) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `foo_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let (mut depth, mut item, mut end) = (0, String::new(), group.len());
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = k;
                        break;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 && c == ',' {
                    push_ident(&item, &mut found);
                    item.clear();
                } else if depth == 0 {
                    item.push(c);
                }
            }
            push_ident(&item, &mut found);
            rest = &group[end..];
        } else {
            push_ident(rest, &mut found);
        }
    }
    found
}

fn push_ident(s: &str, found: &mut BTreeSet<String>) {
    let ident: String = s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if !ident.is_empty() && ident != "self" {
        found.insert(ident);
    }
}

#[test]
fn imports_follow_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let layers = declared_layers(&architecture);
    assert!(layers.len() > 5, "ARCHITECTURE.md's layers block declares too few layers: {layers:?}");
    let mut layer_of: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, (name, mods)) in layers.iter().enumerate() {
        for m in mods {
            let earlier = layer_of.insert(m.clone(), (i, name.clone()));
            assert!(earlier.is_none(), "ARCHITECTURE.md lists module {m} in two layers");
        }
    }

    let sim = root.join("sim");
    let mut files = Vec::new();
    rust_files(&sim, &mut files);
    files.sort();
    let mut problems = Vec::new();
    // Module-level edges within a layer, for the circle check.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&sim, file);
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        let Some((layer, layer_name)) = layer_of.get(&module).cloned() else {
            problems
                .push(format!("{shown}: module {module} is in no layer of ARCHITECTURE.md's layers block"));
            continue;
        };
        let code = code_only(&fs::read_to_string(file).unwrap());
        let root_name = if module == "main" { "cnisim" } else { "crate" };
        for imported in imported_modules(&code, root_name) {
            if imported == module {
                continue;
            }
            let Some((their, their_name)) = layer_of.get(&imported) else {
                problems.push(format!("{shown} imports {imported}, a module in no layer of ARCHITECTURE.md"));
                continue;
            };
            if *their > layer {
                problems.push(format!(
                    "{shown} imports {imported}, a later module (layer {layer_name} imports layer {their_name})"
                ));
            } else if *their == layer {
                edges.entry(module.clone()).or_default().insert(imported);
            }
        }
    }
    if let Some(circle) = find_circle(&edges) {
        problems.push(format!("modules of one layer import each other in a circle: {}", circle.join(" -> ")));
    }
    assert!(problems.is_empty(), "imports against the layer order:\n  {}", problems.join("\n  "));
}

/// A circle in the module graph, as the list of modules along it (first repeated at the end).
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut circle = path[at..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_parser_sees_groups_and_paths() {
    let code = code_only(
        "use crate::{a, b::{c, d}, e::f};\n// crate::commented\nlet s = \"crate::quoted\";\nx(crate::g::h);",
    );
    let got: Vec<_> = imported_modules(&code, "crate").into_iter().collect();
    assert_eq!(got, ["a", "b", "e", "g"]);
}
