//! TOML text → [`RawConfig`], reporting every syntax-level problem it can.
//!
//! serde stops at the first error. To report every unknown key and type error in one
//! run, the parsed document (which keeps the byte spans of the original text) is
//! deserialized again after removing the entry each error points at, up to
//! [`MAX_SERDE_ERRORS`] times. A TOML syntax error is always reported alone: the rest of
//! the file cannot be trusted after it.

use std::ops::Range;

use serde::Deserialize;
use toml_edit::{Array, DocumentMut, ImDocument, InlineTable, Item, Table, Value};

use super::error::{key_path_at, line_column, ConfigError, ConfigErrors};
use super::raw::RawConfig;

/// Bound on deserialization passes (and so on reported serde errors).
const MAX_SERDE_ERRORS: usize = 32;

/// Parses and deserializes `text`; every error has its position and key path.
pub(crate) fn parse_raw(text: &str, source: &str) -> Result<RawConfig, ConfigErrors> {
    let doc = ImDocument::parse(text).map_err(|e| ConfigErrors {
        errors: vec![error_at(text, source, e.span(), e.message())],
    })?;
    let mut table = doc.into_table();
    let mut errors = Vec::new();
    for _ in 0..MAX_SERDE_ERRORS {
        let de = toml_edit::de::Deserializer::from(DocumentMut::from(table.clone()));
        match RawConfig::deserialize(de) {
            Ok(raw) if errors.is_empty() => return Ok(raw),
            Ok(_) => break,
            Err(e) => {
                let span = e.span();
                errors.push(error_at(text, source, span.clone(), e.message()));
                let removed = span.is_some_and(|s| remove_in_table(&mut table, s.start));
                if !removed {
                    break;
                }
            }
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(ConfigErrors { errors })
}

fn error_at(text: &str, source: &str, span: Option<Range<usize>>, message: &str) -> ConfigError {
    let (line, column, key) = match span {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            (line, column, key_path_at(text, &span))
        }
        None => (0, 0, String::new()),
    };
    ConfigError {
        file: source.to_owned(),
        line,
        column,
        key,
        message: message.trim().to_owned(),
    }
}

fn hit(span: Option<Range<usize>>, at: usize) -> bool {
    span.is_some_and(|s| s.contains(&at) || s.start == at)
}

/// Removes the innermost entry of `table` whose key or value spans `at`.
fn remove_in_table(table: &mut Table, at: usize) -> bool {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    for k in keys {
        let key_hit = hit(table.key(&k).and_then(toml_edit::Key::span), at);
        let Some(item) = table.get_mut(&k) else {
            continue;
        };
        let inner = match item {
            Item::None => false,
            Item::Table(t) => remove_in_table(t, at),
            Item::ArrayOfTables(a) => a.iter_mut().any(|t| remove_in_table(t, at)),
            Item::Value(v) => remove_in_value(v, at),
        };
        if inner {
            return true;
        }
        let value_hit = matches!(item, Item::Value(v) if hit(v.span(), at));
        if key_hit || value_hit {
            table.remove(&k);
            return true;
        }
    }
    false
}

fn remove_in_value(value: &mut Value, at: usize) -> bool {
    match value {
        Value::InlineTable(t) => remove_in_inline(t, at),
        Value::Array(a) => remove_in_array(a, at),
        _ => false,
    }
}

fn remove_in_inline(table: &mut InlineTable, at: usize) -> bool {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    for k in keys {
        let key_hit = hit(table.key(&k).and_then(toml_edit::Key::span), at);
        let Some(v) = table.get_mut(&k) else {
            continue;
        };
        if remove_in_value(v, at) {
            return true;
        }
        if key_hit || hit(v.span(), at) {
            table.remove(&k);
            return true;
        }
    }
    false
}

fn remove_in_array(array: &mut Array, at: usize) -> bool {
    for i in 0..array.len() {
        let Some(v) = array.get_mut(i) else {
            continue;
        };
        if remove_in_value(v, at) {
            return true;
        }
        if hit(v.span(), at) {
            array.remove(i);
            return true;
        }
    }
    false
}
