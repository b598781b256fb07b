//! The repository stands alone.
//!
//! - Every rule code the code, tests and docs cite (`A7`, `C8`, `D18`, `E9`,
//!   `P4`, `T12`: letter and number, see `docs/rules.md`) has exactly one
//!   definition: a table row in `docs/*.md` whose first cell is the code.
//! - Every peer conformance item cited ("item 6" in a test under `tests/`,
//!   "conformance item 6" anywhere) has a row in the "Peer conformance items"
//!   table of `docs/rules.md`.
//! - No text file points at a path outside the repository: no absolute path
//!   into a home or work directory, and no relative `..` path that climbs
//!   above the repository's root.
//!
//! Plain file reading from `CARGO_MANIFEST_DIR`: no git, no other tool.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The letters of rule codes: asyncore, asynchat, deliberate differences,
/// experiments, pitfalls, CPython tests.
const LETTERS: &[u8] = b"ACDEPT";

/// Where rule codes are looked for (directories, searched recursively, and
/// single files), relative to the root.
const CODE_SOURCES: &[&str] =
    &["src", "tests", "docs", "examples", "fuzz", "benches", "README.md", "CHANGELOG.md"];

/// The heading of the conformance items' table in `docs/rules.md`.
const CONFORMANCE_HEADING: &str = "## Peer conformance items";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// Paths never walked: git's own (a directory, or in a worktree a file
/// naming the real one), build output, and what the root `.gitignore` anchors
/// (`/target`, `/fuzz/artifacts`, …).
fn skipped_dirs() -> BTreeSet<PathBuf> {
    let root = root();
    let mut skip = BTreeSet::from([root.join(".git")]);
    if let Ok(ignore) = fs::read_to_string(root.join(".gitignore")) {
        for line in ignore.lines().map(str::trim) {
            if let Some(anchored) = line.strip_prefix('/') {
                skip.insert(root.join(anchored.trim_end_matches('/')));
            }
        }
    }
    skip
}

/// Every file under `dir`, sorted, skipping the directories above and any
/// directory named `target`.
fn walk(dir: &Path, skip: &BTreeSet<PathBuf>, out: &mut Vec<PathBuf>) {
    if skip.contains(dir) || dir.file_name().is_some_and(|n| n == "target") {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, skip, out);
        } else if path.is_file() && !skip.contains(&path) {
            out.push(path);
        }
    }
}

/// A file's text, or `None` for a binary file (not UTF-8, or with a NUL).
fn text(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Rule codes in `s`: one of [`LETTERS`], then one or two digits, with no
/// letter, digit or underscore on either side (so `0xA1`, `E0599` and `T1x`
/// are not codes). A command-line flag (` -A1`) is not a code either.
fn codes_in(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut found = Vec::new();
    for i in 0..b.len() {
        if !LETTERS.contains(&b[i]) || (i > 0 && is_word(b[i - 1])) {
            continue;
        }
        if i > 0 && b[i - 1] == b'-' && (i == 1 || matches!(b[i - 2], b' ' | b'\t' | b'\'' | b'"')) {
            continue;
        }
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=2).contains(&digits) || b.get(i + 1 + digits).is_some_and(|&c| is_word(c)) {
            continue;
        }
        found.push(s[i..i + 1 + digits].to_string());
    }
    found
}

/// The first cell of a Markdown table row, trimmed.
fn first_cell(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('|')?;
    Some(rest.split('|').next()?.trim())
}

/// Every definition row in `docs/*.md`: code → where it is defined.
fn definitions() -> BTreeMap<String, Vec<String>> {
    let mut defs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    for doc in docs {
        let body = text(&doc).unwrap_or_default();
        for (n, line) in body.lines().enumerate() {
            if let Some(cell) = first_cell(line)
                && codes_in(cell).first().is_some_and(|c| c == cell)
            {
                defs.entry(cell.to_string()).or_default().push(format!("{}:{}", rel(&doc), n + 1));
            }
        }
    }
    defs
}

/// Comment markers and line breaks removed, so that a citation wrapped over
/// two comment lines ("conformance" / "item 21") is found whole.
fn flattened(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        let mut l = line.trim_start();
        for marker in ["//!", "///", "//", "*"] {
            if let Some(rest) = l.strip_prefix(marker) {
                l = rest;
                break;
            }
        }
        out.push_str(l.trim());
        out.push(' ');
    }
    out.to_ascii_lowercase()
}

/// The numbers following `needle` in `s` ("item 6" → 6).
fn numbers_after(s: &str, needle: &str) -> Vec<u32> {
    s.match_indices(needle)
        .filter_map(|(i, _)| {
            let rest = &s[i + needle.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn files_citing_codes() -> Vec<PathBuf> {
    let root = root();
    let skip = skipped_dirs();
    let mut files = Vec::new();
    for source in CODE_SOURCES {
        let path = root.join(source);
        if path.is_dir() {
            walk(&path, &skip, &mut files);
        } else if path.is_file() {
            files.push(path);
        }
    }
    files.retain(|p| p.extension().is_some_and(|x| x == "rs" || x == "md"));
    files
}

#[test]
fn every_rule_code_used_is_defined_exactly_once_in_docs() {
    let defs = definitions();
    let mut problems = Vec::new();
    for (code, places) in &defs {
        if places.len() > 1 {
            problems.push(format!("{code} is defined {} times: {}", places.len(), places.join(", ")));
        }
    }
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files_citing_codes() {
        let Some(body) = text(&file) else { continue };
        for code in codes_in(&body) {
            used.entry(code).or_default().insert(rel(&file));
        }
    }
    assert!(used.len() > 100, "too few codes found ({}): is the scan broken?", used.len());
    for (code, files) in &used {
        if !defs.contains_key(code) {
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            problems.push(format!("{code} has no definition row in docs/ (used in {})", files.join(", ")));
        }
    }
    assert!(
        problems.is_empty(),
        "rule codes (define each as a table row, `| CODE | … |`, in docs/rules.md or the page it names):\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_conformance_item_cited_is_defined_in_docs() {
    let rules = text(&root().join("docs/rules.md")).expect("docs/rules.md is readable");
    let section = rules
        .split_once(CONFORMANCE_HEADING)
        .map(|(_, after)| after.split("\n## ").next().unwrap_or(after))
        .expect("docs/rules.md has the conformance items' table");
    let defined: BTreeSet<u32> =
        section.lines().filter_map(first_cell).filter_map(|c| c.parse().ok()).collect();
    assert!(defined.len() >= 25, "the conformance table has {} rows", defined.len());

    let mut problems = Vec::new();
    for file in files_citing_codes() {
        let Some(body) = text(&file) else { continue };
        let flat = flattened(&body);
        let mut cited = numbers_after(&flat, "conformance item ");
        // The behaviour tests cite the items they prove as "item N".
        if rel(&file).starts_with("tests/") && file.extension().is_some_and(|e| e == "rs") {
            cited.extend(numbers_after(&flat, "item "));
        }
        for n in cited {
            if !defined.contains(&n) {
                problems.push(format!(
                    "conformance item {n} (cited in {}) has no row in docs/rules.md",
                    rel(&file)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// How many `..` components a relative path starting at `s` climbs: two for
/// a path that starts with two `..` components, whatever follows them.
fn climbs(s: &str) -> usize {
    let up = concat!("..", "/");
    let mut rest = s;
    let mut n = 0;
    loop {
        if let Some(r) = rest.strip_prefix(up) {
            n += 1;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("..") {
            if !r.starts_with(|c: char| c.is_alphanumeric() || "./_-".contains(c)) {
                n += 1;
            }
            return n;
        } else {
            return n;
        }
    }
}

#[test]
fn no_text_file_points_outside_the_repository() {
    let root = root();
    let skip = skipped_dirs();
    let mut files = Vec::new();
    walk(&root, &skip, &mut files);
    assert!(files.len() > 50, "too few files found ({}): is the walk broken?", files.len());
    // Built from pieces, so that this file does not contain them.
    let needles = [
        concat!("/wo", "rk/"),
        concat!("/ho", "me/"),
        concat!("/Us", "ers/"),
        concat!("..", "/shared"),
        concat!("file", ":/"),
    ];
    let up = concat!("..", "/");
    let mut problems = Vec::new();
    for file in &files {
        let Some(body) = text(file) else { continue };
        // How deep the file's directory is below the root.
        let depth =
            file.parent().and_then(|d| d.strip_prefix(&root).ok()).map_or(0, |d| d.components().count());
        for (n, line) in body.lines().enumerate() {
            for needle in needles {
                if line.contains(needle) {
                    problems.push(format!("{}:{}: `{needle}`: {}", rel(file), n + 1, line.trim()));
                }
            }
            for (i, _) in line.match_indices(up) {
                if i > 0 && matches!(line.as_bytes()[i - 1], b'.' | b'/') {
                    continue; // inside a longer path, counted from its start
                }
                if climbs(&line[i..]) > depth {
                    problems.push(format!(
                        "{}:{}: climbs above the repository: {}",
                        rel(file),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "paths outside the repository:\n{}", problems.join("\n"));
}
