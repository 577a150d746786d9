//! The structure ARCHITECTURE.md promises, checked on the sources: which module may use
//! which, no import circle between the top-level modules, a planner without file I/O,
//! files under 600 lines and long functions that say why (issue 12).
//!
//! A module's dependencies are the top-level modules its non-test code names through
//! `crate::` paths (`use` lines and inline paths alike); `tests.rs` files and
//! `#[cfg(test)] mod tests { … }` blocks are test code and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> Vec<PathBuf> {
    let mut v = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut v);
    v.sort();
    v
}

/// `src/exec/driver.rs` → `exec`; `src/cli.rs` → `cli`.
fn module_of(path: &Path) -> String {
    let rel = path
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests` block.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `crate::` in `code`, braces included
/// (`crate::{a::{self, b}, c}` names `a` and `c`).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |i: usize| {
        let end = (i..bytes.len())
            .find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_'))
            .unwrap_or(bytes.len());
        (code[i..end].to_string(), end)
    };
    let mut from = 0;
    while let Some(k) = code[from..].find("crate::") {
        let mut i = from + k + "crate::".len();
        if bytes.get(i) == Some(&b'{') {
            let mut depth = 0;
            let mut expect_name = true;
            while i < bytes.len() {
                match bytes[i] {
                    b'{' => {
                        depth += 1;
                        expect_name = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect_name = true,
                    c if expect_name && depth == 1 && (c.is_ascii_alphabetic() || c == b'_') => {
                        let (name, end) = ident(i);
                        out.insert(name);
                        expect_name = false;
                        i = end;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            out.insert(ident(i).0);
        }
        from = i;
    }
    out.retain(|m| m != "self");
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in src() {
        if p.file_name().unwrap() == "tests.rs" {
            continue;
        }
        let m = module_of(&p);
        let refs = crate_refs(&code(&p));
        let deps = g.entry(m.clone()).or_default();
        deps.extend(refs.into_iter().filter(|r| *r != m));
    }
    g
}

#[test]
fn crate_refs_reads_nested_use_lists() {
    let r = crate_refs("use crate::{a::{self, b}, c, d::{e}};\nlet x = crate::f::g();");
    let want: BTreeSet<String> = ["a", "c", "d", "f"].map(String::from).into();
    assert_eq!(r, want);
}

#[test]
fn no_import_circle_between_modules() {
    let g = graph();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("import circle: {}\n{g:#?}", c.join(" → "));
        }
    }
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let g = graph();
    let forbidden: &[(&str, &[&str])] = &[
        // The floors: they import no stage.
        (
            "hash",
            &[
                "spec", "recipe", "plan", "data", "model", "method", "train", "store", "exec",
                "report",
            ],
        ),
        (
            "spec",
            &[
                "recipe", "plan", "data", "model", "method", "train", "store", "exec", "report",
            ],
        ),
        (
            "links",
            &[
                "spec", "recipe", "plan", "data", "model", "method", "train", "store", "exec",
                "report",
            ],
        ),
        (
            "rng",
            &[
                "spec", "recipe", "plan", "data", "model", "train", "store", "exec",
            ],
        ),
        // The stages that read run specs do not reach up to the planner or the recipes.
        ("data", &["plan", "recipe", "train", "exec", "store"]),
        (
            "model",
            &["plan", "recipe", "train", "exec", "store", "method"],
        ),
        ("method", &["plan", "recipe", "train", "exec", "store"]),
        ("train", &["plan", "recipe", "exec", "report"]),
        // The results folder: nothing that writes into it, not the planner.
        (
            "store",
            &["train", "exec", "plan", "recipe", "report", "model"],
        ),
        (
            "plan",
            &["store", "exec", "train", "report", "data", "model"],
        ),
        ("recipe", &["plan", "store", "exec", "train", "report"]),
        ("exec", &["report", "commands", "cli", "recipe"]),
        ("report", &["exec", "train", "commands", "cli"]),
    ];
    let mut wrong = Vec::new();
    for (m, bad) in forbidden {
        for d in g.get(*m).into_iter().flatten() {
            if bad.contains(&d.as_str()) {
                wrong.push(format!("{m} uses {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_planner_reads_no_file() {
    for p in src() {
        if module_of(&p) != "plan" || p.file_name().unwrap() == "tests.rs" {
            continue;
        }
        let c = code(&p);
        for bad in ["std::fs", "fs::", "File::", "read_dir", "canonicalize"] {
            assert!(!c.contains(bad), "{} uses {bad}", p.display());
        }
    }
}

#[test]
fn no_source_file_is_above_600_lines() {
    let long: Vec<String> = src()
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:?}");
}

/// A function longer than 80 lines says why in a comment starting `// Long:` just above
/// it (among its doc comment and attributes).
#[test]
fn long_functions_say_why() {
    let mut missing = Vec::new();
    for p in src() {
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "unsafe fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p));
            if !is_fn {
                continue;
            }
            let close = format!("{indent}}}");
            let Some(end) = (i + 1..lines.len()).find(|&j| lines[j] == close) else {
                continue;
            };
            if end - i < 80 {
                continue;
            }
            let noted = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("//") || t.starts_with("#[")
                })
                .any(|l| l.trim_start().starts_with("// Long:"));
            if !noted {
                missing.push(format!("{}:{} ({} lines)", p.display(), i + 1, end - i + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "long functions without a `// Long:` note: {missing:#?}"
    );
}
