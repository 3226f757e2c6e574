//! docs/status.md against the served document, and the `anyguard status` renderer.

use std::collections::BTreeSet;
use std::time::SystemTime;

use anyguard::status::client;
use anyguard::status::model::StatusDocument;

use super::fixture::realistic_document;
use super::{json, Harness};

/// Every key path in `v`, arrays as `[]` (elements merged), `null` as a leaf.
fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// The ```jsonc block of docs/status.md with its `//` comment lines removed.
fn docs_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("```jsonc\n").expect("a ```jsonc block") + "```jsonc\n".len();
    let len = text[start..].find("```").expect("closing fence");
    text[start..start + len]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn docs_example_deserialises_and_has_exactly_the_served_keys() {
    let example = docs_example();
    let typed: StatusDocument =
        serde_json::from_str(&example).expect("docs example is a StatusDocument");
    assert_eq!(typed.services[0].name, "dns");
    let documented: serde_json::Value = serde_json::from_str(&example).unwrap();

    let h = Harness::start(None).await;
    let (_, _, body) = h.get("/status").await;
    let served = json(&body);
    h.stop().await;

    let (mut want, mut got) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&documented, "", &mut want);
    key_paths(&served, "", &mut got);
    let missing: Vec<_> = got.difference(&want).collect();
    let extra: Vec<_> = want.difference(&got).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/status.md is out of date.\nserved but not documented: {missing:#?}\n\
         documented but not served: {extra:#?}"
    );
    // And the typed round trip keeps every documented key (no field silently dropped).
    let mut round_trip = BTreeSet::new();
    key_paths(&serde_json::to_value(&typed).unwrap(), "", &mut round_trip);
    assert_eq!(round_trip, want);
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/golden/status_table.txt"
);

#[test]
fn status_table_matches_the_golden_rendering() {
    let now = humantime::parse_rfc3339("2026-11-25T06:03:05Z").unwrap();
    let text = client::render(&realistic_document(), now, false);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden =
        std::fs::read_to_string(GOLDEN).expect("golden file (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(text, golden, "UPDATE_SNAPSHOTS=1 rewrites {GOLDEN}");

    let coloured = client::render(&realistic_document(), now, true);
    assert!(coloured.contains("\u{1b}[32mup\u{1b}[0m"));
    assert!(coloured.contains("\u{1b}[31mdown\u{1b}[0m"));
    assert!(coloured.contains("\u{1b}[33mheld\u{1b}[0m"));
    assert_eq!(strip_ansi(&coloured), text, "colour must not move columns");
}

#[tokio::test]
async fn status_client_fetches_and_renders_over_http() {
    let h = Harness::start(None).await;
    let base = format!("http://{}", h.addr);
    let table = client::run(&base, false, false).await.unwrap();
    let expected = client::render(&realistic_document(), SystemTime::now(), false);
    // Ages depend on the clock; the structure does not.
    assert_eq!(table.lines().count(), expected.lines().count());
    for needle in [
        "SERVICES",
        "PEERS",
        "CHECKS",
        "edge1 (depreferred)",
        "timed out after 2s",
    ] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    assert!(table.contains("router-id 198.18.0.2"));

    let pretty = client::run(&h.url("/status"), true, false).await.unwrap();
    let doc: StatusDocument = serde_json::from_str(&pretty).unwrap();
    assert_eq!(doc, realistic_document());
    assert!(pretty.contains("\n  \"daemon\": {\n"));

    let err = client::run(&h.url("/nope"), false, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, client::ClientError::Status { status: 404, .. }),
        "{err}"
    );
    h.stop().await;
}

#[test]
fn status_table_shows_the_etcd_alarm_when_the_store_is_not_connected() {
    let now = humantime::parse_rfc3339("2026-11-25T06:03:05Z").unwrap();
    let mut doc = realistic_document();
    let store = doc
        .fleet
        .as_mut()
        .and_then(|f| f.store.as_mut())
        .expect("the fixture's fleet is on etcd");
    store.connected = false;
    store.error = Some("cannot connect to https://198.18.10.2:2379: connection refused".into());
    let text = client::render(&doc, now, false);
    assert!(
        text.contains(
            "ETCD UNREACHABLE (cannot connect to https://198.18.10.2:2379: connection refused): \
             every withdrawal is held until etcd answers again"
        ),
        "{text}"
    );
    assert!(!text.contains("fleet backend etcd: connected"), "{text}");
}
