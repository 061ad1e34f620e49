//! Which way the arrows point (DESIGN.md, "Layout, and which way the arrows point").
//!
//! A module here is a top-level module of the crate: `src/audit.rs` is `audit`,
//! `src/channels/sms/twilio.rs` is `channels`, `src/main.rs` is `main`; `src/lib.rs` only
//! lists the modules and is exempt. Every `crate::NAME` path in a module's files (in a
//! `use`, grouped over several lines or not, or inline in code like
//! `crate::clock::now_ms()`) is an arrow from that module to `NAME`; in `main.rs`,
//! `tinbao::NAME` is one too. `super::` stays inside a module and is not an arrow.
//!
//! ```text
//! layer 0: main, cli, app      the command line; app builds everything and runs it
//! layer 1: web, console        the edges: residents' pages, API, webhooks; the console
//! layer 2: state               what a request handler may reach (AppState, extractors)
//! layer 3: intake, dialog, broadcast, reports, delivery, audit, accounts, alerts
//!                              the services
//! layer 4: channels            provider adapters: transport only
//! layer 5: store, tips, geo    the only SQL; the domain
//! layer 6: crypto, config, i18n, clock
//! ```
//!
//! The rules, each checked on every arrow:
//! - an arrow down to a lower layer (a higher number) is fine;
//! - an arrow up to a higher layer is not;
//! - an arrow within a layer only when [`PEER_ARROWS`] lists it;
//! - nothing imports `app` but `main` and `cli`;
//! - every module of `src/` is in [`LAYERS`];
//! - the modules form no cycle.
//!
//! `state` sits below the edges because every handler of `web` and `console` takes the
//! `AppState` it defines, and above the services because it holds them: the state is the
//! edges' view of the services, built by `app`.
//!
//! A new module joins a layer in [`LAYERS`]; a new sideways arrow joins [`PEER_ARROWS`]
//! only if it is obviously right, and never both ways.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;

/// The layers, top (0) to bottom (6): an arrow may point down this list, never up.
pub const LAYERS: &[&[&str]] = &[
    /* 0 */ &["main", "cli", "app"],
    /* 1 */ &["web", "console"],
    /* 2 */ &["state"],
    /* 3 */
    &[
        "intake",
        "dialog",
        "broadcast",
        "reports",
        "retention",
        "delivery",
        "audit",
        "accounts",
        "alerts",
    ],
    /* 4 */ &["channels"],
    /* 5 */ &["store", "tips", "geo"],
    /* 6 */ &["crypto", "config", "i18n", "clock"],
];

/// The only arrows allowed within a layer.
pub const PEER_ARROWS: &[(&str, &str)] = &[
    // The command line starts the application; nothing else does.
    ("main", "cli"),
    ("main", "app"),
    ("cli", "app"),
    // A chat conversation ends in intake, subscribes to broadcasts and sends its answers
    // through the outbox.
    ("dialog", "intake"),
    ("dialog", "broadcast"),
    ("dialog", "delivery"),
    // A broadcast fans out into the outbox and checks who may approve it.
    ("broadcast", "delivery"),
    ("broadcast", "accounts"),
    // Intake queues the police's follow-up messages to the tipster in the outbox.
    ("intake", "delivery"),
    // Alerts go out through the outbox, about tips intake took in.
    ("alerts", "delivery"),
    ("alerts", "intake"),
    // Places are stored; the store speaks the domain's types.
    ("geo", "store"),
    ("store", "tips"),
];

/// Modules that may import `app`.
const STARTERS: &[&str] = &["main", "cli"];

/// The crate's own name, as `main.rs` (a crate of its own) names the library.
const CRATE_NAME: &str = env!("CARGO_PKG_NAME");

/// The layer of a module, if the table has it.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// A broken rule, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file and line of the path (of a cycle's first arrow, of a missing module's
    /// first file).
    pub file: String,
    pub line: usize,
    /// `from → to`; the whole loop for a cycle; the module for one missing from the table.
    pub what: String,
    /// The rule it breaks, in words.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.what, self.rule
        )
    }
}

/// One `crate::NAME` path: the arrow from the file's module to `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Arrow {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// Checks the files of `src/` (paths like `src/store/mod.rs`, and their text) against the
/// layers. Returns every broken rule: modules missing from the table first, then arrows in
/// file and line order, then cycles.
pub fn check(files: &[(String, String)]) -> Vec<Violation> {
    let mut files: Vec<(String, &str)> = files
        .iter()
        .map(|(path, text)| (path.replace('\\', "/"), text.as_str()))
        .collect();
    files.sort();
    let modules: BTreeMap<String, String> = files.iter().fold(BTreeMap::new(), |mut m, f| {
        if let Some(module) = module_of(&f.0) {
            m.entry(module).or_insert_with(|| f.0.clone());
        }
        m
    });
    let reexports = files
        .iter()
        .find(|(path, _)| path == "src/lib.rs")
        .map(|(_, text)| root_reexports(text, &modules))
        .unwrap_or_default();

    let mut found = Vec::new();
    for (module, first_file) in &modules {
        if layer_of(module).is_none() {
            found.push(Violation {
                file: first_file.clone(),
                line: 1,
                what: module.clone(),
                rule: format!("module `{module}` is not in the layer table (LAYERS)"),
            });
        }
    }

    let mut arrows = Vec::new();
    for (path, text) in &files {
        let Some(from) = module_of(path) else {
            continue;
        };
        for (name, line) in crate_paths(text) {
            let to = reexports.get(&name).cloned().unwrap_or(name);
            if to != from {
                arrows.push(Arrow {
                    file: path.clone(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    arrows.sort();

    for a in &arrows {
        let what = format!("{} → {}", a.from, a.to);
        let rule = match (layer_of(&a.from), layer_of(&a.to)) {
            // Already reported once for the whole module.
            (None, _) => continue,
            (Some(_), None) if modules.contains_key(&a.to) => continue,
            (Some(_), None) => format!(
                "`crate::{}` names no module in the layer table (LAYERS)",
                a.to
            ),
            _ if a.to == "app" && !STARTERS.contains(&a.from.as_str()) => {
                "nothing imports app but main and cli".to_owned()
            }
            (Some(from), Some(to)) if to < from => format!(
                "up a layer: {} is in layer {from}, {} in layer {to}; arrows point down",
                a.from, a.to
            ),
            (Some(from), Some(to))
                if to == from && !PEER_ARROWS.contains(&(a.from.as_str(), a.to.as_str())) =>
            {
                format!("sideways within layer {from}, and not listed in PEER_ARROWS")
            }
            _ => continue,
        };
        found.push(Violation {
            file: a.file.clone(),
            line: a.line,
            what,
            rule,
        });
    }

    found.extend(cycles(&arrows));
    found
}

/// The top-level module a file of `src/` belongs to; `None` for `src/lib.rs` (and for what
/// is not a Rust file under `src/`).
fn module_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    if !rest.ends_with(".rs") {
        return None;
    }
    let first = rest.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (module != "lib").then(|| module.to_owned())
}

/// Every module named by a `crate::` path in `text`, with its line (once a line).
fn crate_paths(text: &str) -> BTreeSet<(String, usize)> {
    let toks = tokens(&strip(text));
    let mut out = BTreeSet::new();
    for i in 0..toks.len() {
        let root = toks[i].text.as_str();
        let is_root = root == "crate" || root == CRATE_NAME;
        let after_path = i > 0 && matches!(toks[i - 1].text.as_str(), "::" | ".");
        if !is_root || after_path || toks.get(i + 1).map(|t| t.text.as_str()) != Some("::") {
            continue;
        }
        let mut leaves = Vec::new();
        use_tree(&toks, i, Vec::new(), &mut leaves);
        for leaf in leaves {
            if let Some(seg) = leaf.path.get(1) {
                if !matches!(seg.text.as_str(), "self" | "super" | "crate" | "*") {
                    out.insert((seg.text.clone(), seg.line));
                }
            }
        }
    }
    out
}

/// What `src/lib.rs` re-exports at the crate root (`pub use app::{AppState, ...}`): the
/// name and the module it comes from, so `crate::AppState` is an arrow to `app`.
fn root_reexports(text: &str, modules: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let toks = tokens(&strip(text));
    let mut out = BTreeMap::new();
    for i in 0..toks.len() {
        if toks[i].text != "use" || (i > 0 && toks[i - 1].text == "::") {
            continue;
        }
        let mut leaves = Vec::new();
        use_tree(&toks, i + 1, Vec::new(), &mut leaves);
        for leaf in leaves {
            let segs: Vec<&str> = leaf
                .path
                .iter()
                .map(|s| s.text.as_str())
                .skip_while(|s| matches!(*s, "crate" | "self"))
                .collect();
            let (Some(module), Some(last)) = (segs.first(), segs.last()) else {
                continue;
            };
            let name = leaf.alias.as_deref().unwrap_or(last);
            let known = modules.contains_key(*module) || layer_of(module).is_some();
            if known && name != *module && name != "*" {
                out.insert(name.to_owned(), (*module).to_owned());
            }
        }
    }
    out
}

/// A token of stripped source, and its line (from 1).
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    line: usize,
}

/// One path of a use tree (`a::b::{c, d as e}` has two), or the path at the start of an
/// inline `crate::a::b(..)`.
#[derive(Debug)]
struct Leaf {
    path: Vec<Tok>,
    alias: Option<String>,
}

/// Reads a use tree (or an inline path) from `i` on, after `prefix`; returns the index
/// after it. Paths end at anything that is neither a name, `::`, nor a group.
fn use_tree(toks: &[Tok], mut i: usize, mut path: Vec<Tok>, out: &mut Vec<Leaf>) -> usize {
    loop {
        let Some(tok) = toks.get(i) else {
            if !path.is_empty() {
                out.push(Leaf { path, alias: None });
            }
            return i;
        };
        match tok.text.as_str() {
            "{" => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| t.text.as_str()) {
                        None => return i,
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some(_) => {
                            let next = use_tree(toks, i, path.clone(), out);
                            i = next.max(i + 1);
                        }
                    }
                }
            }
            "*" => {
                path.push(tok.clone());
                out.push(Leaf { path, alias: None });
                return i + 1;
            }
            t if is_ident(t) => {
                path.push(tok.clone());
                i += 1;
                if toks.get(i).is_some_and(|t| t.text == "::") {
                    i += 1;
                    continue;
                }
                let mut alias = None;
                if toks.get(i).is_some_and(|t| t.text == "as") {
                    alias = toks.get(i + 1).map(|t| t.text.clone());
                    i += 2;
                }
                out.push(Leaf { path, alias });
                return i;
            }
            _ => {
                if !path.is_empty() {
                    out.push(Leaf { path, alias: None });
                }
                return i;
            }
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_alphabetic())
}

/// Names, numbers, `::` and single punctuation marks, with their lines.
fn tokens(code: &str) -> Vec<Tok> {
    let chars: Vec<char> = code.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            toks.push(Tok {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            toks.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            toks.push(Tok {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    toks
}

/// The code with comments (line, doc and nested block comments) and the contents of
/// string, raw string, byte string and character literals blanked out; lines are kept.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(text.len());
    // Blanks `chars[from..to]`, keeping its newlines.
    let blank = |out: &mut String, from: usize, to: usize| {
        out.extend(chars[from..to.min(n)].iter().map(|&c| match c {
            '\n' => '\n',
            _ => ' ',
        }));
    };
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let starts_token = i == 0 || !is_ident_char(chars[i - 1]);
        if c == '/' && next == Some('/') {
            let end = (i..n).find(|&j| chars[j] == '\n').unwrap_or(n);
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < n && depth > 0 {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(&chars, i).filter(|_| starts_token) {
            blank(&mut out, i, end);
            i = end;
        } else if c == '"' || (starts_token && matches!(c, 'b' | 'c') && next == Some('"')) {
            let mut j = if c == '"' { i + 1 } else { i + 2 };
            while j < n && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == '\'' || (starts_token && c == 'b' && next == Some('\'')) {
            let q = if c == '\'' { i } else { i + 1 };
            let end = if chars.get(q + 1) == Some(&'\\') {
                // An escape: '\n', '\'', '\u{1F600}'.
                (q + 3..n).find(|&j| chars[j] == '\'').map(|j| j + 1)
            } else if chars.get(q + 2) == Some(&'\'') {
                Some(q + 3)
            } else {
                None // a lifetime or a label
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The end (exclusive) of a raw string literal (`r"…"`, `r#"…"#`, `br##"…"##`,
/// `cr"…"`) starting at `i`, if one does.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// One violation for each group of modules that reach each other, naming one loop through
/// them and where each of its arrows is.
fn cycles(arrows: &[Arrow]) -> Vec<Violation> {
    // The first place each arrow is drawn (arrows are sorted by file and line).
    let mut first: BTreeMap<(&str, &str), &Arrow> = BTreeMap::new();
    for a in arrows {
        first.entry((a.from.as_str(), a.to.as_str())).or_insert(a);
    }
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for &(from, to) in first.keys() {
        next.entry(from).or_default().insert(to);
    }
    let reach = |start: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(m) = todo.pop() {
            for &n in next.get(m).into_iter().flatten() {
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&m| (m, reach(m))).collect();

    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for (&start, from_start) in &reaches {
        if done.contains(start) || !from_start.contains(start) {
            continue;
        }
        let group: BTreeSet<&str> = from_start
            .iter()
            .copied()
            .filter(|m| reaches.get(m).is_some_and(|r| r.contains(start)))
            .collect();
        done.extend(group.iter().copied());
        // The shortest loop from `start` back to it, inside the group.
        let mut back: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        while let Some(m) = queue.pop_front() {
            if next.get(m).is_some_and(|n| n.contains(start)) {
                last = Some(m);
                break;
            }
            for &n in next.get(m).into_iter().flatten() {
                if group.contains(n) && n != start && !back.contains_key(n) {
                    back.insert(n, m);
                    queue.push_back(n);
                }
            }
        }
        let mut path = vec![start];
        let mut m = last.expect("a module in a cycle has a way back");
        let mut tail = vec![];
        while m != start {
            tail.push(m);
            m = back[m];
        }
        path.extend(tail.into_iter().rev());
        path.push(start);
        let steps: Vec<&Arrow> = path.windows(2).map(|w| first[&(w[0], w[1])]).collect();
        out.push(Violation {
            file: steps[0].file.clone(),
            line: steps[0].line,
            what: path.join(" → "),
            rule: format!(
                "a cycle among {}: {}",
                group.iter().copied().collect::<Vec<_>>().join(", "),
                steps
                    .iter()
                    .map(|a| format!("{} → {} at {}:{}", a.from, a.to, a.file, a.line))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    out
}

/// Every `.rs` file under `dir`, as (`src/…` path, text).
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap();
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The violations, one a line, then how many of each arrow.
fn report(violations: &[Violation]) -> String {
    let mut by_arrow: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for v in violations {
        *by_arrow.entry((&v.what, &v.rule)).or_default() += 1;
    }
    let mut text = format!(
        "{} places break the layers (the table is in tests/api/layers.rs):\n",
        violations.len()
    );
    for v in violations {
        text.push_str(&format!("  {v}\n"));
    }
    text.push_str("by arrow:\n");
    for ((what, rule), n) in by_arrow {
        text.push_str(&format!("  {what} ({n}×): {rule}\n"));
    }
    text
}

#[test]
fn arrows_in_src_point_down_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &root.join("src"), &mut files);
    assert!(
        files.iter().any(|(p, _)| p == "src/lib.rs") && files.len() > 10,
        "read src/: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    // A slip of the stripper (a quote read wrongly) would blank code or keep a string: the
    // braces of every file would no longer pair up.
    for (path, text) in &files {
        let code = strip(text);
        let (open, close) = (code.matches('{').count(), code.matches('}').count());
        assert_eq!(
            open, close,
            "{path}: braces after stripping comments and strings"
        );
    }
    let violations = check(&files);
    assert!(violations.is_empty(), "{}", report(&violations));
}

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

/// (file, line, arrow) of each violation.
fn places(violations: &[Violation]) -> Vec<(&str, usize, &str)> {
    violations
        .iter()
        .map(|v| (v.file.as_str(), v.line, v.what.as_str()))
        .collect()
}

#[test]
fn the_checker_reports_a_forbidden_import_in_a_file() {
    let store = "//! The store.\n\
        use crate::web::Lang;\n\
        use crate::{tips::Category,\n  \
          audit::AuditLog};\n\
        use super::records;\n\
        // crate::app::run in a comment, /* and */ crate::console in another\n\
        /* a block comment: crate::app /* nested */ crate::web */\n\
        const SQL: &str = \"SELECT 'crate::app::x'\";\n\
        const RAW: &str = r#\"crate::console \"quoted\"\"#;\n\
        pub(crate) fn now<'a>(q: &'a str) -> i64 { let _ = ('\"', q); crate::clock::now_ms() }\n";
    let found = check(&[file("src/store/x.rs", store)]);
    assert_eq!(
        places(&found),
        [
            ("src/store/x.rs", 2, "store → web"),
            ("src/store/x.rs", 4, "store → audit")
        ],
        "{}",
        report(&found)
    );
    assert!(
        found.iter().all(|v| v.rule.starts_with("up a layer")),
        "{found:?}"
    );
    assert_eq!(
        found[0].to_string(),
        "src/store/x.rs:2: store → web: up a layer: store is in layer 5, web in layer 1; \
         arrows point down"
    );
}

#[test]
fn the_checker_knows_every_rule() {
    let found = check(&[
        // `crate::AppState` is `app`, through the root's re-export.
        file(
            "src/lib.rs",
            "pub mod app;\npub use app::{AppState, Application};\n",
        ),
        file(
            "src/web/mod.rs",
            "use crate::AppState;\nuse crate::console::Page;\n",
        ),
        file("src/console/mod.rs", "fn f() { crate::web::render() }\n"),
        file(
            "src/intake/mod.rs",
            "use crate::{\n    dialog::Bot,\n    store,\n};\n",
        ),
        file("src/dialog/mod.rs", "use crate::intake::Intake;\n"),
        file("src/widgets.rs", "use crate::store::Store;\n"),
        file("src/store/mod.rs", "use crate::gadgets::Gadget;\n"),
    ]);
    let got: Vec<(&str, usize, &str, &str)> = found
        .iter()
        .map(|v| (v.file.as_str(), v.line, v.what.as_str(), v.rule.as_str()))
        .map(|(f, l, w, r)| (f, l, w, r.split(' ').next().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("src/widgets.rs", 1, "widgets", "module"),
            ("src/console/mod.rs", 1, "console → web", "sideways"),
            ("src/intake/mod.rs", 2, "intake → dialog", "sideways"),
            ("src/store/mod.rs", 1, "store → gadgets", "`crate::gadgets`"),
            ("src/web/mod.rs", 1, "web → app", "nothing"),
            ("src/web/mod.rs", 2, "web → console", "sideways"),
            ("src/console/mod.rs", 1, "console → web → console", "a"),
            ("src/dialog/mod.rs", 1, "dialog → intake → dialog", "a"),
        ],
        "{}",
        report(&found)
    );
    assert!(found[6].rule.contains("web → console at src/web/mod.rs:2"));
}

#[test]
fn a_clean_tree_passes() {
    let found = check(&[
        file(
            "src/lib.rs",
            "pub mod app;\npub use app::Application;\npub use config::Config;\n",
        ),
        file("src/main.rs", "fn main() { tinbao::cli::run() }\n"),
        file("src/cli.rs", "use crate::{app::Application, Config};\n"),
        file("src/app.rs", "use crate::{web, console, store::Store};\n"),
        file(
            "src/web/mod.rs",
            "use crate::{\n    intake::Intake,\n    i18n::t,\n};\nuse super::pages;\n",
        ),
        file(
            "src/web/pages.rs",
            "fn f() -> u64 { crate::clock::now_ms() }\n",
        ),
        file(
            "src/console/mod.rs",
            "use crate::{audit, accounts::Role};\n",
        ),
        file(
            "src/dialog/engine.rs",
            "use crate::{intake, broadcast, channels::Provider};\n",
        ),
        file("src/geo.rs", "use crate::store::Store;\n"),
        file(
            "src/store/mod.rs",
            "use crate::{tips::Category, crypto::Key};\n",
        ),
    ]);
    assert!(found.is_empty(), "{}", report(&found));
}
