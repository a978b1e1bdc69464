//! The architecture's rules, read from the sources: top-level modules depend one way (hub and output, then
//! model, then data, then infer/log, then config, then train, then cli), and no file imports a
//! sibling that imports it back (a file may use its parent module's items: that is Rust's
//! ordinary parent/child pairing, not a cycle). clap appears only in `src/cli/` and `main.rs`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rank(top: &str) -> usize {
    match top {
        "hub" | "host" | "output" => 0,
        "model" => 1,
        "data" => 2,
        "infer" | "log" => 3,
        "config" => 4,
        "train" => 5,
        "cli" => 6,
        other => panic!("src/{other}: a new top-level module needs a place in tests/layers.rs"),
    }
}

/// `src/a/b.rs` -> ["a", "b"]; `src/a/mod.rs` -> ["a"].
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without its `#[cfg(test)]` tail and comments (unit tests may use anything).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules (files) a source names through `crate::` and `super::` paths.
fn imports(file: &Path, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let me = module_of(file);
    let text = code(file);
    let mut out = BTreeSet::new();
    for (i, _) in text
        .match_indices("crate::")
        .chain(text.match_indices("super::"))
    {
        let mut path: Vec<String> = if text[i..].starts_with("crate::") {
            vec![]
        } else {
            // `super`: the parent of this file's module (`a/b.rs` and `a/b/mod.rs` are both `a::b`)
            me[..me.len().saturating_sub(1)].to_vec()
        };
        let rest = &text[i + text[i..].find("::").unwrap() + 2..];
        let ident = |s: &str| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        };
        let mut r = rest;
        loop {
            let seg = ident(r);
            if seg.is_empty() {
                break;
            }
            path.push(seg.clone());
            r = &r[seg.len()..];
            if !r.starts_with("::") {
                break;
            }
            r = &r[2..];
        }
        let mut names = vec![path.clone()];
        if let Some(inner) = r.strip_prefix('{') {
            let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
            for item in inner.split(',') {
                let seg = ident(item.trim());
                names.push([path.clone(), vec![seg]].concat());
            }
        }
        for n in names {
            if let Some(m) = (1..=n.len())
                .rev()
                .map(|k| n[..k].to_vec())
                .find(|p| modules.contains(p))
            {
                if m != me {
                    out.insert(m);
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    files.retain(|f| !f.ends_with("main.rs") && !f.ends_with("lib.rs"));
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    files
        .iter()
        .map(|f| (module_of(f), imports(f, &modules)))
        .collect()
}

#[test]
fn top_level_modules_depend_one_way() {
    let mut bad = vec![];
    for (from, tos) in graph() {
        for to in tos {
            if from[0] != to[0] && rank(&to[0]) >= rank(&from[0]) {
                bad.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let g = graph();
    // A file using its ancestor module's items is the ordinary parent/child pairing.
    let ancestor = |a: &Vec<String>, b: &Vec<String>| b.len() < a.len() && a.starts_with(b);
    let edges = |m: &Vec<String>| -> Vec<Vec<String>> {
        g.get(m)
            .into_iter()
            .flatten()
            .filter(|t| !ancestor(m, t) && !ancestor(t, m))
            .cloned()
            .collect()
    };
    let mut cycles = vec![];
    for start in g.keys() {
        // depth-first search for a path back to `start`
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for t in edges(&m) {
                if &t == start {
                    let names: Vec<String> =
                        path.iter().chain([&t]).map(|p| p.join("::")).collect();
                    cycles.push(names.join(" -> "));
                } else if seen.insert(t.clone()) {
                    stack.push((t.clone(), [path.clone(), vec![t]].concat()));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn clap_only_in_the_command_line() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let bad: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src().join("cli")) && !f.ends_with("main.rs"))
        .filter(|f| code(f).contains("clap"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(bad.is_empty(), "clap outside src/cli and main.rs: {bad:?}");
}
