//! The layering of `src/`, checked: every module has a layer, imports point
//! down (or sideways, within a layer) only, and no two modules need each
//! other, except the map core's three files.
//!
//! The layer table lives twice — here, as `LAYERS`, and in
//! `docs/architecture.md` — and this test compares them, so the document
//! cannot drift from the code either.
//!
//! What counts as an import: every path that starts with `crate::`,
//! `super::` or `self::`, and every path in a `mod.rs` that starts with the
//! name of one of its own submodules (`pub use child::Item`), in `use`
//! declarations (braces expanded, `as` renames dropped) and in code alike.
//! Comments (doc links included) are not code, and neither is an item under
//! `#[cfg(test)]` (what follows it is). A path names the longest module that
//! is a prefix of it: `crate::map::Ctx` is an import of `map` (its `mod.rs`,
//! which re-exports `Ctx`), `super::ctx::Ctx` from `map/registry.rs` one of
//! `map::ctx`. A path to what the crate root re-exports (`crate::Map`) names
//! the module the root takes it from, and after a glob import
//! (`use crate::*`, `use super::*`) a bare path that starts with one of the
//! glob's modules or items names that module.
//!
//! A submodule that uses its parent (`super::Item`) is part of the parent's
//! module, not above or below it: that edge must respect the layers, but it
//! does not count towards a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module → layer, from the bottom up. The same table as
/// `docs/architecture.md`'s "Layers" table.
const LAYERS: &[(u8, &[&str])] = &[
    (
        1,
        &[
            "token",
            "readiness",
            "error",
            "address",
            "report",
            "trace",
            "timer",
            "seal",
            "clock",
            "memory",
            "memory::net",
            "memory::pipe",
            "memory::socket_rules",
        ],
    ),
    (
        2,
        &[
            "poller",
            "poller::epoll",
            "poller::poll",
            "poller::select",
            "poller::eventfd",
            "poller::scripted",
            "machine",
        ],
    ),
    (3, &["channel", "channel::adopt", "channel::socket", "channel::file", "channel::datagram"]),
    (
        4,
        &[
            "map",
            "map::entry",
            "map::ctx",
            "map::registry",
            "map::registry::wait",
            "map::registry::shutdown",
            "map::registry::insert",
            "map::registry::panics",
            "map::registry::swapped",
            "map::slot",
        ],
    ),
    (
        5,
        &[
            "transport",
            "buffered",
            "chat::async_chat",
            "chat::output",
            "chat::producer",
            "chat::terminator",
            "tls::session",
        ],
    ),
    (6, &["handler", "chat::handler", "chat", "tls"]),
    (
        7,
        &[
            "dispatch",
            "dispatch::entry",
            "dispatch::stream",
            "dispatch::listener",
            "dispatch::fd",
            "dispatch::own",
        ],
    ),
    (
        8,
        &[
            "event_loop",
            "mailbox",
            "signal",
            "kept",
            "sim",
            "sim::check",
            "sim::chooser",
            "sim::config",
            "sim::log",
            "sim::peer",
            "sim::script",
            "sim::settle",
            "sim::join",
            "assertions",
        ],
    ),
];

/// Imports that may point up a layer, each with the reason. At most three.
const ALLOWED_UPWARD: &[(&str, &str, &str)] = &[
    // (from, to, why)
];

/// The one import cycle the crate allows: an entry's callbacks take a `Ctx`,
/// a `Ctx` changes the registry, the registry runs entries.
const ALLOWED_CYCLE: &[&str] = &["map::entry", "map::ctx", "map::registry"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its module path (`""` for `lib.rs`).
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let join = |n: &str| if prefix.is_empty() { n.to_owned() } else { format!("{prefix}::{n}") };
        if path.is_dir() {
            modules(&path, &join(&name), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "lib" if prefix.is_empty() => String::new(),
                "mod" => prefix.to_owned(),
                _ => join(&name),
            };
            out.insert(module, path);
        }
    }
}

/// The code of a file: comments blanked, string and char literals emptied,
/// and every `#[cfg(test)]` item cut out (a unit test may use what it
/// likes); the code after such an item is kept, so nothing placed after a
/// test module escapes the check.
fn code(text: &str) -> String {
    cut_test_items(&blank(text))
}

/// Cuts what each `#[cfg(test)]` applies to from `code` (comments and
/// literals already blanked, so brackets match): the attribute, and the
/// item up to its `;` or its block's `}`, or the field, variant, match arm
/// or statement up to its `,` or `;`. Brackets of all three kinds nest; a
/// closing one that opened before the attribute (the end of the enclosing
/// block) ends what is cut and stays.
fn cut_test_items(code: &str) -> String {
    const ATTRIBUTE: &str = "#[cfg(test)]";
    const ITEMS: &[&str] = &[
        "pub",
        "fn",
        "mod",
        "struct",
        "enum",
        "union",
        "impl",
        "use",
        "const",
        "static",
        "trait",
        "type",
        "macro_rules",
        "extern",
        "unsafe",
        "async",
    ];
    let bytes = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while let Some(at) = code[i..].find(ATTRIBUTE) {
        out.push_str(&code[i..i + at]);
        let mut j = i + at + ATTRIBUTE.len();
        // Whether an item follows (past more attributes): only a field,
        // variant, arm or statement ends at a comma.
        let mut after = code[j..].trim_start();
        while let Some((_, rest)) = after.strip_prefix("#[").and_then(|a| a.split_once(']')) {
            after = rest.trim_start();
        }
        let word: String = after.chars().take_while(|&c| is_ident(c)).collect();
        let item = ITEMS.contains(&word.as_str());
        let mut depth = 0usize;
        while j < bytes.len() {
            match bytes[j] {
                b'{' | b'(' | b'[' => depth += 1,
                b'}' | b')' | b']' if depth == 0 => break, // the enclosing block's
                b'}' | b')' | b']' => {
                    depth -= 1;
                    if depth == 0 && bytes[j] == b'}' && item {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    j += 1;
                    break;
                }
                b',' if depth == 0 && !item => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        i = j.min(bytes.len());
    }
    out.push_str(&code[i..]);
    out
}

/// `text` with comments blanked and string and char literals emptied.
fn blank(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            i += end;
        } else if rest.starts_with('"') || raw_string_hashes(rest).is_some() {
            // A string literal: skip to its end (raw strings end at `"` plus
            // as many `#` as they began with).
            let hashes = raw_string_hashes(rest).unwrap_or(0);
            let (open, close) = if rest.starts_with('r') {
                (2 + hashes, format!("\"{}", "#".repeat(hashes)))
            } else {
                (1, String::from("\""))
            };
            let mut j = i + open;
            while j < bytes.len() {
                if !rest.starts_with('r') && bytes[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if bytes[j..].starts_with(close.as_bytes()) {
                    j += close.len();
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j.min(bytes.len());
        } else if rest.starts_with("'\\")
            || (rest.len() > 2 && rest.as_bytes()[2] == b'\'' && rest.starts_with('\''))
        {
            // A char literal ('x' or '\n'); lifetimes ('a) are left alone.
            let end = rest[1..].find('\'').map_or(1, |e| e + 2);
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// How many `#` a raw string starting at `text` has (`r"`: 0, `r##"`: 2),
/// if one starts there.
fn raw_string_hashes(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('r')?;
    let hashes = rest.bytes().take_while(|&b| b == b'#').count();
    (rest.as_bytes().get(hashes) == Some(&b'"')).then_some(hashes)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    // `a as b`: the path is `a`. Then the spaces go.
    let mut words = Vec::new();
    let mut tokens = tree.split_whitespace();
    while let Some(word) = tokens.next() {
        if word == "as" {
            // The alias, with what sticks to it (`b,` or `b}`): keep that.
            let alias = tokens.next().unwrap_or("");
            words.push(alias.trim_start_matches(is_ident).to_owned());
        } else {
            words.push(word.to_owned());
        }
    }
    let tree: String = words.concat();
    let Some(open) = tree.find('{') else { return vec![tree] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// Every path the code names: the expanded `use` trees, and the paths in
/// the rest of the code.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = String::new();
    let mut i = 0;
    while let Some(at) = code[i..].find("use ") {
        let start = i + at;
        let word_start = start == 0 || !is_ident(code[..start].chars().last().unwrap());
        let end = code[start..].find(';').map_or(code.len(), |e| start + e);
        rest.push_str(&code[i..start]);
        if word_start && !code[start..end].contains('(') {
            found.extend(expand(&code[start + 4..end]));
            i = end;
        } else {
            rest.push_str("use ");
            i = start + 4;
        }
    }
    rest.push_str(&code[i..]);
    // Paths in code: identifiers joined by `::`, not preceded by `::` or an
    // identifier character.
    let chars: Vec<char> = rest.chars().collect();
    let mut j = 0;
    while j < chars.len() {
        let after_colons = j >= 2 && chars[j - 1] == ':' && chars[j - 2] == ':';
        let starts = is_ident(chars[j]) && (j == 0 || !(is_ident(chars[j - 1]) || after_colons));
        if !starts {
            j += 1;
            continue;
        }
        let mut k = j;
        let mut path = String::new();
        loop {
            let seg_start = k;
            while k < chars.len() && is_ident(chars[k]) {
                k += 1;
            }
            path.extend(&chars[seg_start..k]);
            if k + 2 < chars.len() && chars[k] == ':' && chars[k + 1] == ':' && is_ident(chars[k + 2]) {
                path.push_str("::");
                k += 2;
            } else {
                break;
            }
        }
        if path.contains("::") {
            found.push(path);
        }
        j = k.max(j + 1);
    }
    found
}

/// What a path is resolved against: the crate's modules, and the module
/// behind each item the crate root re-exports, so that `crate::Map` names
/// `map` as `crate::map::Map` does.
struct Crate {
    modules: BTreeSet<String>,
    root: BTreeMap<String, String>,
}

impl Crate {
    /// The module a path from module `from` names, if it is one of the crate's.
    fn resolve(&self, from: &str, from_is_mod_rs: bool, path: &str) -> Option<String> {
        let (modules, root) = (&self.modules, &self.root);
        let segments: Vec<&str> = path.split("::").collect();
        let parent = |m: &str| m.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_owned());
        // The module `self::` means, from this file.
        let here = from.to_owned();
        let (mut base, rest) = match segments[0] {
            "crate" => (String::new(), &segments[1..]),
            "self" => (here.clone(), &segments[1..]),
            "super" => {
                let mut base = parent(&here);
                let mut rest = &segments[1..];
                while rest.first() == Some(&"super") {
                    base = parent(&base);
                    rest = &rest[1..];
                }
                (base, rest)
            }
            first if from_is_mod_rs || from.is_empty() => {
                let child = if from.is_empty() { first.to_owned() } else { format!("{from}::{first}") };
                if !modules.contains(&child) {
                    return None;
                }
                (here.clone(), &segments[..])
            }
            _ => return None,
        };
        if base.is_empty()
            && let Some(first) = rest.first()
            && !modules.contains(*first)
        {
            return root.get(*first).cloned();
        }
        let mut named = base.clone();
        for segment in rest {
            let next = if base.is_empty() { (*segment).to_owned() } else { format!("{base}::{segment}") };
            if !modules.contains(&next) {
                break;
            }
            base = next;
            named = base.clone();
        }
        (!named.is_empty()).then_some(named)
    }

    /// The modules the code of `module` names, itself left out.
    fn imports(&self, module: &str, is_mod_rs: bool, code: &str) -> BTreeSet<String> {
        let (names, root) = (&self.modules, &self.root);
        let found = paths(code);
        // A glob import (`use crate::*`, `use super::*`) brings a module's items
        // into scope: a bare path can then start with one of them.
        let globs: Vec<String> = found
            .iter()
            .filter_map(|p| p.strip_suffix("::*"))
            .filter_map(|base| match base {
                "crate" => Some(String::new()),
                _ if base.split("::").all(|s| s == "super")
                    && module.matches("::").count() < base.matches("super").count() =>
                {
                    Some(String::new())
                }
                _ => self.resolve(module, is_mod_rs, &format!("{base}::_")),
            })
            .collect();
        found
            .iter()
            .filter_map(|p| {
                self.resolve(module, is_mod_rs, p).or_else(|| {
                    let first = p.split("::").next()?;
                    if matches!(first, "crate" | "self" | "super") {
                        return None;
                    }
                    globs.iter().find_map(|base| {
                        if base.is_empty() && !names.contains(first) {
                            return root.get(first).cloned();
                        }
                        let child =
                            if base.is_empty() { first.to_owned() } else { format!("{base}::{first}") };
                        names.contains(&child).then(|| self.resolve(base, true, p)).flatten()
                    })
                })
            })
            .filter(|m| m != module)
            .collect()
    }
}

/// The crate's import graph: module → the modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    modules(&src(), "", &mut files);
    let names: BTreeSet<String> = files.keys().filter(|m| !m.is_empty()).cloned().collect();
    let krate = with_root(names, &fs::read_to_string(&files[""]).unwrap());
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        if module.is_empty() {
            continue; // lib.rs: the root re-exports everything
        }
        let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
        let text = fs::read_to_string(path).unwrap();
        graph.insert(module.clone(), krate.imports(module, is_mod_rs, &code(&text)));
    }
    graph
}

/// The crate of `modules`, with what its root `lib_rs` re-exports (its
/// `pub use` items), by name, and the module each comes from.
fn with_root(modules: BTreeSet<String>, lib_rs: &str) -> Crate {
    let mut krate = Crate { modules, root: BTreeMap::new() };
    let code = code(lib_rs);
    // `pub use a::B as C` re-exports B under the name C: `expand` keeps the
    // path, so the renames are read here.
    let words: Vec<&str> = code.split(|c: char| !is_ident(c)).filter(|w| !w.is_empty()).collect();
    let renamed: BTreeMap<&str, &str> =
        words.windows(3).filter(|w| w[1] == "as").map(|w| (w[0], w[2])).collect();
    let root = paths(&code)
        .iter()
        .filter_map(|p| {
            let last = p.rsplit("::").next()?;
            let name = renamed.get(last).copied().unwrap_or(last);
            // An item names the module it is in; a module, itself.
            let module = krate.resolve("", true, p)?;
            Some((name.to_owned(), module))
        })
        .collect();
    krate.root = root;
    krate
}

fn layer_of() -> BTreeMap<&'static str, u8> {
    LAYERS.iter().flat_map(|(layer, modules)| modules.iter().map(move |m| (*m, *layer))).collect()
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    of.starts_with(&format!("{ancestor}::"))
}

#[test]
fn every_module_has_a_layer_and_every_layer_entry_is_a_module() {
    let graph = graph();
    let layers = layer_of();
    let missing: Vec<_> = graph.keys().filter(|m| !layers.contains_key(m.as_str())).collect();
    assert!(missing.is_empty(), "modules with no row in LAYERS (and docs/architecture.md): {missing:?}");
    let stale: Vec<_> = layers.keys().filter(|m| !graph.contains_key(**m)).collect();
    assert!(stale.is_empty(), "LAYERS names modules that do not exist: {stale:?}");
}

#[test]
fn imports_point_down_only() {
    assert!(ALLOWED_UPWARD.len() <= 3, "at most three upward imports may be allowed");
    let graph = graph();
    let layers = layer_of();
    let mut upward = Vec::new();
    for (from, imports) in &graph {
        let Some(&from_layer) = layers.get(from.as_str()) else { continue };
        for to in imports {
            let Some(&to_layer) = layers.get(to.as_str()) else { continue };
            let allowed = ALLOWED_UPWARD.iter().any(|(f, t, _)| f == from && t == to);
            if to_layer > from_layer && !allowed {
                upward.push(format!("{from} (layer {from_layer}) imports {to} (layer {to_layer})"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up:\n  {}", upward.join("\n  "));
}

#[test]
fn no_import_cycle_but_the_map_core() {
    let graph = graph();
    // Edges for the cycle check: a submodule's use of its ancestors is
    // within one module, not an import between two.
    let edges: BTreeMap<&str, Vec<&str>> = graph
        .iter()
        .map(|(m, imports)| {
            (m.as_str(), imports.iter().map(String::as_str).filter(|i| !is_ancestor(i, m)).collect())
        })
        .collect();
    // Tarjan's strongly connected components.
    struct Tarjan<'a> {
        edges: &'a BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.edges.get(v).map(Vec::as_slice).unwrap_or(&[]) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut tarjan = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &v in edges.keys() {
        if !tarjan.index.contains_key(v) {
            tarjan.visit(v);
        }
    }
    let cycles: Vec<Vec<&str>> = tarjan
        .components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut c| {
            c.sort();
            c
        })
        .filter(|c| !c.iter().all(|m| ALLOWED_CYCLE.contains(m)))
        .collect();
    assert!(cycles.is_empty(), "import cycles (only the map core's may exist): {cycles:?}");
}

#[test]
fn the_layer_table_in_the_docs_is_this_one() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let mut documented: BTreeMap<String, u8> = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| 4 | `map`, `map::entry` | what it does |`
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u8>() else { continue };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                documented.insert(module.to_owned(), layer).is_none(),
                "docs/architecture.md lists {module} twice"
            );
        }
    }
    let expected: BTreeMap<String, u8> = layer_of().into_iter().map(|(m, l)| (m.to_owned(), l)).collect();
    assert_eq!(documented, expected, "docs/architecture.md's layer table differs from LAYERS in this test");
}

#[test]
fn the_parser_sees_what_it_must() {
    let names: BTreeSet<String> =
        ["map", "map::ctx", "map::registry", "chat", "chat::handler", "poller", "poller::scripted"]
            .into_iter()
            .map(String::from)
            .collect();
    let krate = with_root(names.clone(), "pub use map::{Ctx, Map as TheMap};\npub use poller::Backend;\n");
    let root = &krate.root;
    assert_eq!(root.get("Ctx").map(String::as_str), Some("map"));
    assert_eq!(root.get("TheMap").map(String::as_str), Some("map"), "re-exported under its new name");
    assert_eq!(root.get("Map"), None, "and only under it");
    let with_module = with_root(names.clone(), "pub use chat::handler;\n");
    assert_eq!(with_module.resolve("poller", true, "crate::handler::X").as_deref(), Some("chat::handler"));
    assert_eq!(root.get("Backend").map(String::as_str), Some("poller"));
    assert_eq!(krate.resolve("chat::handler", false, "crate::Ctx").as_deref(), Some("map"));
    assert_eq!(krate.resolve("chat", true, "super::Backend").as_deref(), Some("poller"));
    assert_eq!(expand("crate::map as m"), ["crate::map"]);
    assert_eq!(
        expand("crate::{map as m, poller::{Backend as B, Interest}}"),
        ["crate::map", "crate::poller::Backend", "crate::poller::Interest"]
    );
    // A glob of the root, then a bare path through it.
    let through_glob =
        krate.imports("chat::handler", false, "use crate::*; fn f() { poller::x(); Ctx::y(); }");
    assert_eq!(through_glob.into_iter().collect::<Vec<_>>(), ["map", "poller"]);
    assert_eq!(
        expand("crate::map::{Ctx, ctx::{A, B}}"),
        ["crate::map::Ctx", "crate::map::ctx::A", "crate::map::ctx::B"]
    );
    assert_eq!(krate.resolve("map::registry", false, "super::ctx::Ctx").as_deref(), Some("map::ctx"));
    assert_eq!(krate.resolve("map::registry", false, "crate::map::Ctx").as_deref(), Some("map"));
    assert_eq!(krate.resolve("chat", true, "handler::ChatHandler").as_deref(), Some("chat::handler"));
    assert_eq!(krate.resolve("chat::handler", false, "handler::Foo"), None);
    assert_eq!(krate.resolve("poller", true, "std::io::Result"), None);
    let blanked =
        code("// use crate::sim;\n/// [`x`](crate::sim)\nlet s = \"crate::sim\"; use crate::map::{Ctx};\n");
    assert_eq!(paths(&blanked), ["crate::map::Ctx"]);
    // A test item is cut, braces in its strings and all; what follows it
    // is still read.
    let later = code(
        "fn a() {}\n#[cfg(test)]\n#[allow(unused)]\nmod tests { fn t() { crate::sim::x(\"}\"); } }\n\
         #[cfg(test)]\nuse crate::sim::Y;\nfn b() { super::event_loop::run(); }\n",
    );
    assert_eq!(paths(&later), ["super::event_loop::run"]);
    // A test-only field, variant, arm or statement: cut to its comma or
    // semicolon, never past the block it is in.
    for (source, expected) in [
        ("struct A {\n #[cfg(test)]\n x: u32,\n y: crate::sim::Y,\n}\n", vec!["crate::sim::Y"]),
        ("enum E { #[cfg(test)] A, B(crate::sim::T) }", vec!["crate::sim::T"]),
        (
            "enum E { B(crate::sim::T), #[cfg(test)] A }\nfn f() { crate::map::g(); }",
            vec!["crate::sim::T", "crate::map::g"],
        ),
        ("fn f(v: u8) { match v { #[cfg(test)] 0 => (), _ => crate::sim::q(), } }", vec!["crate::sim::q"]),
        ("fn f() { #[cfg(test)] let a = crate::map::a(); crate::sim::b(); }", vec!["crate::sim::b"]),
        (
            "#[cfg(test)]\nconst N: [u8; 2] = crate::sim::X;\nfn k() { crate::map::k(); }",
            vec!["crate::map::k"],
        ),
        (
            "#[cfg(test)]\nfn f<A, B>() -> [u8; 2] { crate::sim::x() }\nfn k() { crate::map::k(); }",
            vec!["crate::map::k"],
        ),
        (
            "#[cfg(test)]\n#[allow(dead_code)]\n#[inline]\nfn f<A, B>() { crate::sim::x() }\nfn k() { crate::map::k(); }",
            vec!["crate::map::k"],
        ),
        (
            "#[cfg(test)]\nmod t { const S: &str = r##\"say \"{\" now\"##; }\nfn k() { crate::sim::y(); }\n",
            vec!["crate::sim::y"],
        ),
    ] {
        assert_eq!(paths(&code(source)), expected, "{source}");
    }
}
