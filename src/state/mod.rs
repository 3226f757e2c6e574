//! State that survives a restart: the state file (`docs/guard.md`, "State that survives a
//! restart").
//!
//! What an operator did through the control API, and what the daemon did to the host, must
//! not be forgotten by a crash, an OOM kill or a package upgrade: a drained service must
//! never be announced again by a restarted daemon, and a service address left on the
//! interface by a killed daemon must not stay there for a service that is not up.
//!
//! [`StateDocument`] is the pure part: the versioned JSON document, its parser (with the
//! version check and precise errors) and its renderer. [`file::StateFile`] is the thin
//! I/O part: read once at start, written atomically (temp file in the same directory,
//! fsync, rename, fsync of the directory) whenever the document changes.
//!
//! The document is designed to grow: every collection has a serde default, so a field
//! added in a later version-1 document (as the pending removals of issue 11 item 1 were) is
//! read as empty from an older file. An *older binary* refuses a document with a field it
//! does not know (`deny_unknown_fields`) rather than silently forget what it says.
//!
//! Adding a collection (the pending removals of reloads, for instance):
//! 1. a field of [`StateDocument`] with `#[serde(default, skip_serializing_if =
//!    "Vec::is_empty")]` (so that a file without any still opens with an older binary),
//!    its line in `Default`, and a `#[serde(deny_unknown_fields)]` element type;
//! 2. the coordinator changes it with `saved::update(&mut self.state, |doc| …)`
//!    (`src/coordinator/saved.rs`): written only when the document changed, a failed
//!    write logged, shown in `/status` and retried;
//! 3. it reads it back at start from `state.document()` right after `saved::open` in
//!    `coordinator::run`, before the first evaluation.
//!
//! Changing the meaning of an existing field needs a new [`STATE_VERSION`].

pub mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The document version this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// The file's name inside the state directory.
pub const STATE_FILE_NAME: &str = "state.json";

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDocument {
    /// Always [`STATE_VERSION`] when written by this build.
    pub version: u32,
    /// Drains made through the control API (`POST /services/{name}/drain`), by service
    /// name. Kept for services the config no longer has: the service may come back.
    #[serde(default)]
    pub drains: BTreeMap<String, SavedDrain>,
    /// Service addresses this daemon may have put on an interface: recorded *before*
    /// each `ip address replace`, forgotten after a successful removal, so the set is
    /// never smaller than what is on the interface on our account.
    #[serde(default)]
    pub addresses: BTreeSet<SavedAddress>,
    /// Routes a reload removed that the all-sites guard had not let go yet (issue 11 item
    /// 1), with what is needed to announce them again: a restart keeps them announced
    /// and guarded instead of dropping them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_removals: Vec<crate::coordinator::removals::PendingRemoval>,
}

/// One operator drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedDrain {
    /// The drain overrides the all-sites guard.
    #[serde(default)]
    pub force: bool,
    /// The operator's free text (may be empty).
    #[serde(default)]
    pub reason: String,
    /// When it was asked for, RFC 3339 UTC.
    pub at: String,
    /// The drain had withdrawn the service (kept up to date while the daemon runs, never
    /// changed by a stop). A restart restores an unforced drain that had not — the
    /// all-sites guard held it — through the guard again rather than as withdrawn.
    #[serde(default)]
    pub withdrawn: bool,
}

/// One service address on one interface, and the service it was added for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedAddress {
    /// The service (by name) that wanted it.
    pub service: String,
    /// Interface name.
    pub interface: String,
    /// Host address (installed as /32 or /128).
    pub address: IpAddr,
}

/// Why a state document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of another shape.
    #[error("line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json says.
        message: String,
    },
    /// A document of a version this build does not know.
    #[error("version {found} is not supported: this anyguard reads version {STATE_VERSION} (written by a newer anyguard?)")]
    UnsupportedVersion {
        /// The document's `version`.
        found: u64,
    },
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        // serde_json's Display appends " at line L column C"; the fields say it already.
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        ParseError::Malformed {
            line: e.line(),
            column: e.column(),
            message,
        }
    }
}

impl Default for StateDocument {
    fn default() -> Self {
        StateDocument {
            version: STATE_VERSION,
            drains: BTreeMap::new(),
            addresses: BTreeSet::new(),
            pending_removals: Vec::new(),
        }
    }
}

impl StateDocument {
    /// Parses a state file's text. The version is checked before anything else, so a
    /// newer document is reported as such rather than as an unknown field.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u64,
        }
        let Versioned { version } = serde_json::from_str(text)?;
        if version != u64::from(STATE_VERSION) {
            return Err(ParseError::UnsupportedVersion { found: version });
        }
        Ok(serde_json::from_str(text)?)
    }

    /// The file's text: pretty JSON (an operator may read it), ending in a newline.
    pub fn render(&self) -> String {
        // Plain data (strings, bools, maps with string keys): serialising cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Records an operator drain of `service`.
    pub fn set_drain(&mut self, service: &str, drain: SavedDrain) {
        self.drains.insert(service.to_string(), drain);
    }

    /// Forgets the operator drain of `service`; whether there was one.
    pub fn clear_drain(&mut self, service: &str) -> bool {
        self.drains.remove(service).is_some()
    }

    /// Records an address about to be added.
    pub fn record_address(&mut self, address: SavedAddress) {
        self.addresses.insert(address);
    }

    /// Forgets an address that was removed.
    pub fn forget_address(&mut self, address: &SavedAddress) {
        self.addresses.remove(address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateDocument {
        let mut doc = StateDocument::default();
        doc.set_drain(
            "web",
            SavedDrain {
                force: false,
                reason: "maintenance \"rack 4\"".into(),
                at: "2026-12-07T10:00:00.000Z".into(),
                withdrawn: true,
            },
        );
        doc.set_drain(
            "api",
            SavedDrain {
                force: true,
                reason: String::new(),
                at: "2026-12-07T10:01:00.000Z".into(),
                withdrawn: false,
            },
        );
        doc.record_address(SavedAddress {
            service: "web".into(),
            interface: "lo".into(),
            address: "203.0.113.10".parse().unwrap_or_else(|e| panic!("{e}")),
        });
        doc.record_address(SavedAddress {
            service: "web".into(),
            interface: "lo".into(),
            address: "2001:db8::10".parse().unwrap_or_else(|e| panic!("{e}")),
        });
        doc
    }

    #[test]
    fn a_document_round_trips_through_its_text() {
        let doc = sample();
        let text = doc.render();
        assert!(text.ends_with('\n'));
        assert_eq!(StateDocument::parse(&text), Ok(doc));
    }

    #[test]
    fn an_empty_document_round_trips_and_says_its_version() {
        let text = StateDocument::default().render();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert_eq!(
            StateDocument::parse(&text),
            Ok(StateDocument::default()),
            "{text}"
        );
    }

    #[test]
    fn missing_collections_read_as_empty() {
        assert_eq!(
            StateDocument::parse(r#"{"version": 1}"#),
            Ok(StateDocument::default())
        );
    }

    #[test]
    fn another_version_is_refused_before_its_fields_are_looked_at() {
        assert_eq!(
            StateDocument::parse(r#"{"version": 2, "something_new": []}"#),
            Err(ParseError::UnsupportedVersion { found: 2 })
        );
        let e = StateDocument::parse(r#"{"version": 0}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "version 0 is not supported: this anyguard reads version 1 (written by a newer anyguard?)"
        );
    }

    #[test]
    fn a_truncated_file_names_line_and_column() {
        let text = sample().render();
        let cut = &text[..text.len() / 2];
        let e = StateDocument::parse(cut).unwrap_err();
        let ParseError::Malformed { line, column, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(*line > 1 && *column > 0, "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("line {line}, column {column}: EOF while parsing")),
            "{e}"
        );
    }

    #[test]
    fn an_empty_file_is_an_error_not_an_empty_state() {
        let e = StateDocument::parse("").unwrap_err();
        assert_eq!(e.to_string(), "line 1, column 0: EOF while parsing a value");
    }

    #[test]
    fn an_unknown_field_is_refused_rather_than_forgotten() {
        let e = StateDocument::parse(r#"{"version": 1, "pending_removal": []}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 1, column 32: unknown field `pending_removal`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_address_is_refused_with_its_place() {
        let text = r#"{"version": 1,
  "addresses": [{"service": "web", "interface": "lo", "address": "203.0.113.300"}]}"#;
        let e = StateDocument::parse(text).unwrap_err();
        assert!(
            matches!(e, ParseError::Malformed { line: 2, .. }),
            "{e:?}: {e}"
        );
    }

    #[test]
    fn clearing_a_drain_says_whether_there_was_one() {
        let mut doc = sample();
        assert!(doc.clear_drain("web"));
        assert!(!doc.clear_drain("web"));
        assert!(!doc.drains.contains_key("web"));
        assert!(doc.drains.contains_key("api"));
    }
}
