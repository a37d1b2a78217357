use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;

/// Message ids of one file, each with the variables its text uses.
fn entries(source: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let body = if line.starts_with(' ') {
            line
        } else {
            let Some((id, rest)) = line.split_once('=') else {
                panic!("not a message line: {line}");
            };
            let id = id.trim().to_owned();
            out.entry(id.clone()).or_default();
            current = Some(id);
            rest
        };
        let Some(id) = &current else { continue };
        let vars = out.entry(id.clone()).or_default();
        let mut rest = body;
        while let Some(at) = rest.find('$') {
            let name: String = rest[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            vars.insert(name.clone());
            rest = &rest[at + 1 + name.len()..];
        }
    }
    out
}

#[test]
fn every_file_parses_in_both_languages() {
    for (area, en, ar) in AREAS {
        for (tag, source) in [("en", en), ("ar", ar)] {
            if let Err((_, errors)) = FluentResource::try_new((*source).to_owned()) {
                panic!("{tag}/{area}.ftl: {errors:?}");
            }
        }
    }
}

#[test]
fn both_languages_have_the_same_messages_with_the_same_arguments() {
    let mut all = BTreeSet::new();
    for (area, en, ar) in AREAS {
        let (en, ar) = (entries(en), entries(ar));
        let en_ids: BTreeSet<_> = en.keys().collect();
        let ar_ids: BTreeSet<_> = ar.keys().collect();
        assert_eq!(en_ids, ar_ids, "{area}: ids differ between en and ar");
        for (id, vars) in &en {
            assert_eq!(
                Some(vars),
                ar.get(id),
                "{area}: `{id}` uses other arguments in ar"
            );
            assert!(all.insert(id.clone()), "`{id}` is in two areas");
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every message id written in the workspace's Rust code (`msg!("…"` and `Msg::new("…"`),
/// and all that code, for the ids it names as words (`Move::word`).
fn ids_in_code() -> (BTreeMap<String, PathBuf>, String) {
    let mut all = String::new();
    let mut found = BTreeMap::new();
    let mut stack: Vec<PathBuf> = ["src", "crates", "services", "connectors", "jobs", "tests"]
        .iter()
        .map(|d| workspace().join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "node_modules" && !path.ends_with("crates/words") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                all.push_str(&text);
                for opener in ["msg!(", "Msg::new("] {
                    let mut rest = text.as_str();
                    while let Some(at) = rest.find(opener) {
                        rest = &rest[at + opener.len()..];
                        let trimmed = rest.trim_start();
                        if let Some(lit) = trimmed.strip_prefix('"') {
                            if let Some(end) = lit.find('"') {
                                found.insert(lit[..end].to_owned(), path.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    (found, all)
}

#[test]
fn every_id_the_code_names_is_in_the_catalogue_and_every_entry_is_used() {
    let (used, code) = ids_in_code();
    assert!(used.len() > 50, "the scan found only {} ids", used.len());
    for (id, path) in &used {
        assert!(
            has(id),
            "{} names `{id}`, which the catalogue lacks",
            path.display()
        );
    }
    for (area, en, _) in AREAS {
        for id in entries(en).keys() {
            // Named by `msg!`, or as a word of a list (`words([…])`, `Move::word`).
            assert!(
                used.contains_key(id) || code.contains(&format!("\"{id}\"")),
                "{area}: `{id}` is used nowhere"
            );
        }
    }
}

#[test]
fn messages_render_in_both_languages_with_plural_forms() {
    let m = msg!("case-not-found", case_id = "cas_1");
    assert_eq!(m.render(Lang::English), "no case cas_1");
    assert!(m.render(Lang::Arabic).contains("cas_1"));
    assert_eq!(m.to_string(), "no case cas_1");
    // Counts pick Arabic's plural forms: one, two, few (3-10), many (11-99).
    let more = |n: i64| msg!("violations-more", count = n).render(Lang::Arabic);
    assert_ne!(more(1), more(2));
    assert_ne!(more(2), more(3));
    assert_ne!(more(3), more(11));
    // Arguments that arrive as text (from ErrorInfo) are numbers again.
    assert_eq!(
        render(Lang::Arabic, "violations-more", [("count", "3")]),
        Some(more(3))
    );
    assert_eq!(render(Lang::English, "no-such-message", []), None);
    // A message missing from the catalogue reads as its id, never panics.
    assert_eq!(
        Msg::new("no-such-message").render(Lang::Arabic),
        "no-such-message"
    );
}

#[test]
fn languages_from_headers() {
    assert_eq!(Lang::from_header("ar-EG,en;q=0.5"), Lang::Arabic);
    assert_eq!(Lang::from_header(" AR"), Lang::Arabic);
    assert_eq!(Lang::from_header("en"), Lang::English);
    assert_eq!(Lang::from_header(""), Lang::English);
}
