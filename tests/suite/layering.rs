//! The layering of src/: each top-level module imports only the modules its row of the
//! "Module map" table in docs/architecture.md lists, and no two modules import each other
//! through any chain. Non-test code only: `#[cfg(test)]` items and files named tests.rs are
//! skipped. No Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules it may import.
type ModuleMap = BTreeMap<String, BTreeSet<String>>;

/// One `crate::<module>` reference in a file of another top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    from: String,
    to: String,
    /// `path/under/src.rs:line`
    at: String,
}

/// What the check finds: imports the table does not allow, and anything else wrong (a module
/// without a row, a row without a module, a cycle).
#[derive(Debug, Default, PartialEq)]
struct Findings {
    forbidden: Vec<Edge>,
    problems: Vec<String>,
}

#[test]
fn src_follows_the_module_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let markdown = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let map = module_map(&markdown).unwrap();
    let mut files = Vec::new();
    read_sources(&root.join("src"), "", &mut files);
    files.sort();
    let findings = check(&map, &files);
    let mut failures: Vec<String> = findings
        .forbidden
        .iter()
        .map(|e| {
            format!(
                "src/{}: `{}` imports `{}`, which its row in docs/architecture.md does not allow",
                e.at, e.from, e.to
            )
        })
        .collect();
    failures.extend(findings.problems);
    assert!(
        failures.is_empty(),
        "the layering of docs/architecture.md's module map is broken:\n{}",
        failures.join("\n")
    );
}

/// The `| module | may import |` table under "## Module map".
fn module_map(markdown: &str) -> Result<ModuleMap, String> {
    let section = markdown
        .split("\n## ")
        .find(|s| s.starts_with("Module map"))
        .ok_or("no \"## Module map\" section")?;
    let mut rows = section.lines().skip_while(|l| !l.starts_with('|'));
    let header = cells(rows.next().ok_or("no table in the module map section")?);
    if header != ["module", "may import"] {
        return Err(format!(
            "the module map's header is {header:?}, not module | may import"
        ));
    }
    let mut map = ModuleMap::new();
    for row in rows.skip(1).take_while(|l| l.starts_with('|')) {
        let [module, imports] = cells(row)[..] else {
            return Err(format!("a module map row without two cells: {row}"));
        };
        let imports = match imports {
            "—" | "-" | "" => BTreeSet::new(),
            list => list
                .split(',')
                .map(|m| m.trim().trim_matches('`').to_string())
                .collect(),
        };
        if map.insert(module.trim_matches('`').to_string(), imports).is_some() {
            return Err(format!("two rows for {module}"));
        }
    }
    Ok(map)
}

fn cells(row: &str) -> Vec<&str> {
    row.trim().trim_matches('|').split('|').map(str::trim).collect()
}

/// Every .rs file under `dir`, as (path relative to src/, text).
fn read_sources(dir: &Path, prefix: &str, files: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            read_sources(&path, &format!("{name}/"), files);
        } else if name.ends_with(".rs") {
            files.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The top-level module a file under src/ belongs to: `hooks` for hooks/git.rs, `config` for
/// config.rs; none for the crate roots lib.rs and main.rs.
fn top_level_module(path: &str) -> Option<&str> {
    match path.split_once('/') {
        Some((dir, _)) => Some(dir),
        None => path.strip_suffix(".rs").filter(|m| !["lib", "main"].contains(m)),
    }
}

/// Checks `files` (path under src/, text) against `map`. Known violations are left out of the
/// cycle check only: they are still reported as forbidden.
fn check(map: &ModuleMap, files: &[(String, String)]) -> Findings {
    let modules: BTreeSet<&str> = files.iter().filter_map(|(path, _)| top_level_module(path)).collect();
    let mut findings = Findings::default();
    for module in &modules {
        if !map.contains_key(*module) {
            findings
                .problems
                .push(format!("src/{module} has no row in docs/architecture.md's module map"));
        }
    }
    for (module, imports) in map {
        for name in std::iter::once(module).chain(imports) {
            if !modules.contains(name.as_str()) {
                findings.problems.push(format!(
                    "the module map names `{name}` (row `{module}`), which is not a module in src/"
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(
        map.iter()
            .map(|(m, imports)| (m.as_str(), imports.iter().map(String::as_str))),
    ) {
        findings
            .problems
            .push(format!("the module map allows a cycle: {}", cycle.join(" → ")));
    }

    let reexports = files
        .iter()
        .find(|(path, _)| path == "lib.rs")
        .map(|(_, text)| root_reexports(&blank_comments_and_literals(text)))
        .unwrap_or_default();
    let mut edges = Vec::new();
    for (path, text) in files {
        let Some(from) = top_level_module(path) else { continue };
        let code = blank_comments_and_literals(text);
        if is_test_file(path) || code.contains("#![cfg(test)]") {
            continue;
        }
        for (name, line) in crate_paths(&blank_test_items(&code)) {
            let to = if modules.contains(name.as_str()) {
                name
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                continue; // an item of the crate root itself
            };
            if to != from {
                edges.push(Edge {
                    from: from.to_string(),
                    to,
                    at: format!("{path}:{line}"),
                });
            }
        }
    }
    findings.forbidden = edges
        .iter()
        .filter(|e| !map.get(&e.from).is_some_and(|allowed| allowed.contains(&e.to)))
        .cloned()
        .collect();
    let mut imports: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &edges {
        imports.entry(&e.from).or_default().insert(&e.to);
    }
    if let Some(cycle) = find_cycle(imports.iter().map(|(m, to)| (*m, to.iter().copied()))) {
        // One place for each arrow of the cycle.
        let at: Vec<String> = cycle
            .windows(2)
            .filter_map(|pair| edges.iter().find(|e| e.from == pair[0] && e.to == pair[1]))
            .map(|e| format!("src/{}", e.at))
            .collect();
        findings.problems.push(format!(
            "the imports form a cycle: {} (at {})",
            cycle.join(" → "),
            at.join(", ")
        ));
    }
    findings
}

fn is_test_file(path: &str) -> bool {
    path.rsplit('/').next() == Some("tests.rs") || path.split('/').any(|c| c == "tests")
}

/// The first cycle in a graph (node, the nodes it points to), as [a, b, a].
fn find_cycle<'a, I>(graph: impl Iterator<Item = (&'a str, I)>) -> Option<Vec<&'a str>>
where
    I: Iterator<Item = &'a str>,
{
    type Graph<'a> = BTreeMap<&'a str, Vec<&'a str>>;
    fn visit<'a>(
        node: &'a str,
        graph: &Graph<'a>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let graph: Graph = graph.map(|(node, next)| (node, next.collect())).collect();
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, &graph, &mut Vec::new(), &mut done))
}

/// The source with comments and string and char literals blanked out, newlines kept, so what
/// is left is code and line numbers stay right.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let ident = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    // Blanks chars[from..to].
    let skip = |out: &mut String, from: usize, to: usize| {
        out.extend(chars[from..to.min(chars.len())].iter().map(|c| blank(*c)));
        to
    };
    while i < chars.len() {
        let rest = &chars[i..];
        i = match rest {
            ['/', '/', ..] => {
                let end = rest.iter().position(|c| *c == '\n').map_or(chars.len(), |n| i + n);
                skip(&mut out, i, end)
            }
            ['/', '*', ..] => {
                let (mut depth, mut j) = (0, i);
                while j < chars.len() {
                    match &chars[j..] {
                        ['/', '*', ..] => (depth, j) = (depth + 1, j + 2),
                        ['*', '/', ..] => (depth, j) = (depth - 1, j + 2),
                        _ => j += 1,
                    }
                    if depth == 0 {
                        break;
                    }
                }
                skip(&mut out, i, j)
            }
            ['r', '"' | '#', ..] if !ident(i.checked_sub(1).and_then(|p| chars.get(p))) || chars[i - 1] == 'b' => {
                let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
                if rest.get(1 + hashes) != Some(&'"') {
                    out.push('r');
                    i + 1
                } else {
                    let body = i + 2 + hashes;
                    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                    let end = (body..chars.len())
                        .find(|j| chars[*j..].starts_with(&close))
                        .map_or(chars.len(), |j| j + close.len());
                    skip(&mut out, i, end)
                }
            }
            ['"', ..] => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                skip(&mut out, i, j + 1)
            }
            ['\'', '\\', ..] => {
                let end = (i + 2..chars.len())
                    .find(|j| chars[*j] == '\'')
                    .map_or(chars.len(), |j| j + 1);
                skip(&mut out, i, end)
            }
            ['\'', _, '\'', ..] => skip(&mut out, i, i + 3),
            [c, ..] => {
                out.push(*c);
                i + 1
            }
            [] => unreachable!(),
        };
    }
    out
}

/// Code with every `#[cfg(test)]` item (a `mod tests { … }`, a `use`, a `fn`) blanked out.
fn blank_test_items(code: &str) -> String {
    const ATTRIBUTE: &str = "#[cfg(test)]";
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(found) = out[from..].find(ATTRIBUTE) {
        let start = from + found;
        let bytes = out.as_bytes();
        let mut i = start + ATTRIBUTE.len();
        let mut depth = 0_i32;
        // The item ends at its first `;` or at the brace closing its first block, counting
        // other attributes and brackets on the way.
        while i < bytes.len() {
            match bytes[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let end = (i + 1).min(bytes.len());
        let blanked: String = out[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..end, &blanked);
        from = start + blanked.len();
    }
    out
}

/// The first segment of every `crate::` path in code, with its line: `a` in `crate::a::B`, and
/// `a` and `b` in `use crate::{a::X, b::{c, d}}`.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let line = |at: usize| code[..at].matches('\n').count() + 1;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let ident_at = |at: usize| -> &str {
        let rest = &code[at..];
        &rest[..rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len())]
    };
    let skip_space = |at: usize| at + code[at..].len() - code[at..].trim_start().len();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$') || ident_at(at) != "crate" {
            continue;
        }
        let mut i = skip_space(at + "crate".len());
        if !code[i..].starts_with("::") {
            continue; // `pub(crate)`, `extern crate`
        }
        i = skip_space(i + 2);
        if !code[i..].starts_with('{') {
            found.push((ident_at(i).to_string(), line(i)));
            continue;
        }
        // A group: the first segment of each of its items, at any depth of nesting only the
        // group's own items count (deeper braces are paths inside them).
        let mut depth = 0;
        let mut item_start = true;
        for (j, c) in code[i..].char_indices() {
            let j = i + j;
            match c {
                '{' => {
                    depth += 1;
                    item_start = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => item_start = true,
                c if item_start && depth == 1 && is_ident(c) => {
                    item_start = false;
                    let name = ident_at(j);
                    if name != "self" {
                        found.push((name.to_string(), line(j)));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// Names lib.rs re-exports at the crate root, with their module: `pub use error::{Error,
/// Result};` makes `crate::Error` an import of `error`.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        for item in items
            .trim_matches(|c| c == '{' || c == '}' || char::is_whitespace(c))
            .split(',')
        {
            let name = item.rsplit([' ', ':']).next().unwrap_or_default().trim();
            if !name.is_empty() {
                names.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    names
}

/// The checker itself, on made-up sources.
mod checker {
    use pretty_assertions::assert_eq;

    use super::*;

    const MAP: &str = "# Architecture\n\n## Module map\n\nText.\n\n| module | may import |\n|---|---|\n\
                       | `domain` | — |\n| `store` | `domain` |\n| `task` | `domain`, `store`, `hooks` |\n\
                       | `hooks` | `domain`, `store` |\n\n## Next\n\n| other | table |\n";

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = ["domain/mod.rs", "store/mod.rs", "task/mod.rs", "hooks/mod.rs"]
            .iter()
            .map(|p| (p.to_string(), String::new()))
            .collect();
        files.extend(list.iter().map(|(p, t)| (p.to_string(), t.to_string())));
        files
    }

    fn findings(list: &[(&str, &str)]) -> Findings {
        check(&module_map(MAP).unwrap(), &files(list))
    }

    fn edge(from: &str, to: &str, at: &str) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
            at: at.into(),
        }
    }

    #[test]
    fn the_table_is_read_from_its_section() {
        let map = module_map(MAP).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["domain", "hooks", "store", "task"]);
        assert!(map["domain"].is_empty());
        assert_eq!(
            map["task"],
            BTreeSet::from(["domain".into(), "store".into(), "hooks".into()])
        );
        assert!(module_map("## Other\n").is_err());
    }

    #[test]
    fn a_forbidden_import_is_reported_with_its_file_and_line() {
        let hooks = "use crate::domain::Task;\nuse crate::task::TaskService;\n";
        assert_eq!(
            findings(&[("hooks/manager.rs", hooks)]),
            Findings {
                forbidden: vec![edge("hooks", "task", "hooks/manager.rs:2")],
                problems: vec![],
            }
        );
        assert_eq!(
            findings(&[("hooks/manager.rs", "use crate::domain::Task;\n")]),
            Findings::default()
        );
    }

    #[test]
    fn grouped_nested_and_inline_paths_are_all_found() {
        let code = "use crate::{\n    domain::Task,\n    store::{events, plan::{self, Plan}},\n    task::{self, TaskService},\n};\n\
                    pub(crate) fn f() -> crate::hooks::HookEvent { crate :: hooks::HookEvent::X }\n\
                    use crate::{self as root};\n";
        assert_eq!(
            crate_paths(code),
            [
                ("domain".to_string(), 2),
                ("store".to_string(), 3),
                ("task".to_string(), 4),
                ("hooks".to_string(), 6),
                ("hooks".to_string(), 6),
            ]
        );
        let forbidden = findings(&[("store/x.rs", code)]).forbidden;
        let at: Vec<String> = forbidden.iter().map(|e| format!("{} {}", e.to, e.at)).collect();
        assert_eq!(at, ["task store/x.rs:4", "hooks store/x.rs:6", "hooks store/x.rs:6"]);
    }

    #[test]
    fn comments_literals_macros_and_test_code_do_not_count() {
        let code = "// use crate::task::A;\n/* crate::task /* nested */ crate::task */\n\
                    const S: &str = \"crate::task\";\nconst R: &str = r#\"crate::task \"quoted\"\"#;\n\
                    const C: char = '\"'; fn f<'a>(x: &'a str) {}\nmacro_rules! m { () => { $crate::task::A } }\n\
                    #[cfg(test)]\nmod tests {\n    use crate::task::TaskService;\n    fn g() { if true { crate::task::x(); } }\n}\n\
                    #[cfg(test)]\nuse crate::task::B;\n";
        let found = crate_paths(&blank_test_items(&blank_comments_and_literals(code)));
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(blank_comments_and_literals(code).lines().count(), code.lines().count());
        let test_file = "use crate::task::TaskService;\n";
        assert_eq!(
            findings(&[("hooks/tests.rs", test_file), ("hooks/x/tests/y.rs", test_file)]),
            Findings::default()
        );
        // The test module's end is found: code after it counts again.
        let after = "#[cfg(test)]\nmod tests { fn a() { {} } }\nuse crate::task::C;\n";
        assert_eq!(crate_paths(&blank_test_items(after)), [("task".to_string(), 3)]);
    }

    #[test]
    fn root_reexports_count_as_their_module() {
        let lib = "pub mod task;\npub use task::{TaskService, Plan as P};\npub use domain::Task;\n";
        let found = findings(&[
            ("lib.rs", lib),
            ("store/x.rs", "use crate::TaskService;\nuse crate::P;\n"),
        ]);
        assert_eq!(
            found.forbidden,
            [
                edge("store", "task", "store/x.rs:1"),
                edge("store", "task", "store/x.rs:2")
            ]
        );
    }

    #[test]
    fn a_module_without_a_row_a_row_without_a_module_and_cycles_are_problems() {
        let mut files = files(&[("cli.rs", "")]);
        files.retain(|(p, _)| p != "store/mod.rs");
        let found = check(&module_map(MAP).unwrap(), &files);
        assert_eq!(
            found.problems,
            [
                "src/cli has no row in docs/architecture.md's module map",
                "the module map names `store` (row `hooks`), which is not a module in src/",
                "the module map names `store` (row `store`), which is not a module in src/",
                "the module map names `store` (row `task`), which is not a module in src/",
            ]
        );
        // The table allows task → hooks; hooks → task closes a cycle, even if the table
        // allowed it too.
        let cyclic = MAP.replace(
            "| `hooks` | `domain`, `store` |",
            "| `hooks` | `domain`, `store`, `task` |",
        );
        let found = check(&module_map(&cyclic).unwrap(), &self::files(&[]));
        assert_eq!(found.problems, ["the module map allows a cycle: hooks → task → hooks"]);
        let found = findings(&[
            ("task/a.rs", "use crate::hooks::HookEvent;\n"),
            ("hooks/b.rs", "\nuse crate::task::TaskService;\n"),
        ]);
        assert_eq!(found.forbidden, [edge("hooks", "task", "hooks/b.rs:2")]);
        assert_eq!(
            found.problems,
            ["the imports form a cycle: hooks → task → hooks (at src/hooks/b.rs:2, src/task/a.rs:1)"]
        );
    }
}
