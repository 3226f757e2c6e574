//! Every site config example in `config/` loads, and the examples reject unknown keys in
//! every table. Fleet descriptions (`config/fleet*.toml`) have their own format and loader
//! (the guard's) and are not site configs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyguard::config::{load, load_str};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(config_dir())
        .unwrap_or_else(|e| panic!("config/: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fleet"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_loads() {
    let files = examples();
    assert!(
        files.len() >= 3,
        "expected default, minimal and site-bird: {files:?}"
    );
    for file in files {
        if let Err(e) = load(&file) {
            panic!("{} does not load:\n{e}", file.display());
        }
    }
}

#[test]
fn site_bird_example_reads_its_md5_key_and_has_both_families() {
    let c = load(&config_dir().join("site-bird.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.peers.len(), 2);
    assert_eq!(
        c.peers[0].md5_key.as_deref(),
        Some(&b"fake-md5-key-for-examples-only"[..])
    );
    assert!(c.peers[0].ipv4 && !c.peers[0].ipv6);
    assert_eq!(
        c.state_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/anyguard"))
    );
    assert!(!c.peers[1].ipv4 && c.peers[1].ipv6);
    assert!(c
        .services
        .iter()
        .any(|s| s.prefixes.iter().any(|p| p.addr().is_ipv6())));
}

/// Where to inject a key: a line index and, for inline tables, a byte column.
struct Injection {
    line: usize,
    inline_at: Option<usize>,
    path: String,
}

/// Finds every table of a TOML example: the root, each `[table]` / `[[array]]` header
/// and each inline table `key = { ... }`, with the key path an error should name.
fn injections(text: &str) -> Vec<Injection> {
    let mut out = vec![Injection {
        line: 0,
        inline_at: None,
        path: String::new(),
    }];
    let mut counters: HashMap<String, usize> = HashMap::new();
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            // Nested arrays (service.check) are indexed under the latest parent element.
            let (parent_path, leaf) = match name.rsplit_once('.') {
                Some((parent, leaf)) => {
                    let n = counters.get(parent).copied().unwrap_or(1) - 1;
                    (format!("{parent}[{n}]."), leaf.to_owned())
                }
                None => (String::new(), name.to_owned()),
            };
            let counter_key = format!("{parent_path}{leaf}");
            let n = counters.entry(counter_key.clone()).or_insert(0);
            current = format!("{parent_path}{leaf}[{n}]");
            *n += 1;
            out.push(Injection {
                line: i + 1,
                inline_at: None,
                path: current.clone(),
            });
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.to_owned();
            out.push(Injection {
                line: i + 1,
                inline_at: None,
                path: current.clone(),
            });
        } else if !t.starts_with('#') {
            if let (Some((key, _)), Some(brace)) = (t.split_once('='), line.find("{ ")) {
                let path = if current.is_empty() {
                    key.trim().to_owned()
                } else {
                    format!("{current}.{}", key.trim())
                };
                out.push(Injection {
                    line: i,
                    inline_at: Some(brace + 2),
                    path,
                });
            }
        }
    }
    out
}

#[test]
fn unknown_key_in_every_table_of_the_examples_is_rejected_by_name() {
    for file in examples() {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let source = file.display().to_string();
        let spots = injections(&text);
        assert!(
            spots.len() >= 4,
            "{name}: found only {} tables",
            spots.len()
        );
        for spot in spots {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let expected_line = match spot.inline_at {
                Some(col) => {
                    lines[spot.line].insert_str(col, "injected_key = 1, ");
                    spot.line + 1
                }
                None => {
                    lines.insert(spot.line, "injected_key = 1".to_owned());
                    spot.line + 1
                }
            };
            let injected = lines.join("\n");
            let errors = match load_str(&injected, &source) {
                Ok(_) => panic!("{name}: key injected into `{}` was accepted", spot.path),
                Err(e) => e,
            };
            let expected_key = if spot.path.is_empty() {
                "injected_key".to_owned()
            } else {
                format!("{}.injected_key", spot.path)
            };
            assert_eq!(errors.len(), 1, "{name}: {errors}");
            let e = &errors.errors[0];
            assert_eq!(e.line, expected_line, "{name}: {e}");
            assert_eq!(e.key, expected_key, "{name}: {e}");
            assert!(
                e.message.starts_with("unknown field `injected_key`"),
                "{name}: {e}"
            );
        }
    }
}

/// The keys a table accepts, from the loader's own unknown-key message.
fn accepted_keys(message: &str) -> Vec<String> {
    message
        .split_once("expected one of ")
        .map(|(_, list)| {
            list.split(", ")
                .map(|k| k.trim_matches('`').to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_key_the_loader_accepts_is_documented_in_docs_config_md() {
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md");
    let docs =
        std::fs::read_to_string(&docs_path).unwrap_or_else(|e| panic!("docs/config.md: {e}"));
    // site-bird.toml has every kind of table, inline ones included.
    let file = config_dir().join("site-bird.toml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let mut keys = Vec::new();
    for spot in injections(&text) {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        match spot.inline_at {
            Some(col) => lines[spot.line].insert_str(col, "injected_key = 1, "),
            None => lines.insert(spot.line, "injected_key = 1".to_owned()),
        }
        let Err(errors) = load_str(&lines.join("\n"), &file.display().to_string()) else {
            panic!("injection into `{}` accepted", spot.path);
        };
        keys.extend(errors.iter().flat_map(|e| accepted_keys(&e.message)));
    }
    keys.sort();
    keys.dedup();
    assert!(
        keys.len() > 50,
        "harvested only {} keys: {keys:?}",
        keys.len()
    );
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/config.md: {undocumented:?}"
    );
}
