//! Configuration errors: every problem with its file, line, column and key path.
//!
//! Positions come from byte spans ([`toml::Spanned`] for validation errors, the TOML
//! deserializer's span for syntax and type errors). For serde errors the key path is
//! recovered by locating the span in a `toml_edit` parse of the same text.

use std::ops::Range;

/// One problem in a configuration file.
///
/// Displayed as `file:line:column: key: message`, e.g.
/// `config/site.toml:14:1: peer[1].hold_time: must be 0 or at least 3s`. `line` and
/// `column` are 1-based; 0 means the problem concerns the whole file (e.g. it cannot be
/// read). `key` is empty for syntax errors outside any key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct ConfigError {
    /// The file (as given to `load`, or the `source` given to `load_str`).
    pub file: String,
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column in characters, 0 if unknown.
    pub column: usize,
    /// Key path such as `service[0].check[1].timeout`.
    pub key: String,
    /// What is wrong, lower case.
    pub message: String,
}

fn render(e: &ConfigError) -> String {
    render_located(&e.file, e.line, e.column, &e.key, &e.message)
}

/// `file:line:column: key: message`, without the position when it is unknown (line 0) and
/// without an empty key; shared with the fleet file's errors so both read alike.
pub(crate) fn render_located(
    file: &str,
    line: usize,
    column: usize,
    key: &str,
    message: &dyn std::fmt::Display,
) -> String {
    let mut out = file.to_owned();
    if line > 0 {
        out.push_str(&format!(":{line}:{column}"));
    }
    out.push_str(": ");
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(&message.to_string());
    out
}

/// Every problem found in a configuration; a rejected configuration changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors {
    /// In file order (validation errors are sorted by position).
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none (never true for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// One error concerning the whole file.
    pub(crate) fn whole_file(file: &str, message: String) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                file: file.to_owned(),
                line: 0,
                column: 0,
                key: String::new(),
                message,
            }],
        }
    }
}

/// 1-based (line, column) of a byte offset; the column counts characters.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The key path (`peer[1].hold_time`) of the innermost key or value whose span contains
/// `span.start`, or an empty string when the text does not parse.
pub(crate) fn key_path_at(text: &str, span: &Range<usize>) -> String {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return String::new();
    };
    let mut best = Best {
        at: span.start,
        found: None,
    };
    walk_table(doc.as_table(), "", &mut best);
    best.found.map(|(_, path)| path).unwrap_or_default()
}

struct Best {
    at: usize,
    /// (start of the matching span, path); the latest start wins (innermost).
    found: Option<(usize, String)>,
}

impl Best {
    fn consider(&mut self, span: Option<Range<usize>>, path: &str) {
        let Some(span) = span else { return };
        let hit = span.contains(&self.at) || span.start == self.at;
        if hit
            && self
                .found
                .as_ref()
                .is_none_or(|(start, _)| span.start >= *start)
        {
            self.found = Some((span.start, path.to_owned()));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_table(table: &toml_edit::Table, path: &str, best: &mut Best) {
    for (name, item) in table.iter() {
        let here = join(path, name);
        if let Some((key, _)) = table.get_key_value(name) {
            best.consider(key.span(), &here);
        }
        walk_item(item, &here, best);
    }
}

fn walk_item(item: &toml_edit::Item, path: &str, best: &mut Best) {
    match item {
        toml_edit::Item::None => {}
        toml_edit::Item::Table(t) => {
            best.consider(t.span(), path);
            walk_table(t, path, best);
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let here = format!("{path}[{i}]");
                best.consider(t.span(), &here);
                walk_table(t, &here, best);
            }
        }
        toml_edit::Item::Value(v) => walk_value(v, path, best),
    }
}

fn walk_value(value: &toml_edit::Value, path: &str, best: &mut Best) {
    best.consider(value.span(), path);
    match value {
        toml_edit::Value::InlineTable(t) => {
            for (name, v) in t.iter() {
                let here = join(path, name);
                if let Some((key, _)) = t.get_key_value(name) {
                    best.consider(key.span(), &here);
                }
                walk_value(v, &here, best);
            }
        }
        toml_edit::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // "bé " is 4 bytes, 3 characters.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn key_path_finds_the_innermost_key_in_arrays_of_tables() {
        let text = "[[peer]]\nname = \"a\"\n[[peer]]\nname = \"b\"\nport = 1\n";
        let at = text.find("port").unwrap_or(0);
        assert_eq!(key_path_at(text, &(at..at + 4)), "peer[1].port");
        let at = text.rfind("\"b\"").unwrap_or(0);
        assert_eq!(key_path_at(text, &(at..at + 3)), "peer[1].name");
    }

    #[test]
    fn error_display_has_file_line_column_key_and_message() {
        let e = ConfigError {
            file: "config/site.toml".into(),
            line: 14,
            column: 1,
            key: "peer[1].hold_time".into(),
            message: "must be 0 or at least 3s".into(),
        };
        assert_eq!(
            e.to_string(),
            "config/site.toml:14:1: peer[1].hold_time: must be 0 or at least 3s"
        );
        let all = ConfigErrors {
            errors: vec![e.clone(), e],
        };
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
