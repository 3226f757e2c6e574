//! Reading a configuration: file or text → [`RawConfig`] (serde, spans) → [`Config`].

use std::path::Path;

use super::error::ConfigErrors;
use super::parse::parse_raw;
use super::validate::SourcedRaw;
use super::Config;

/// The configuration `anyguard run` uses without `--config`: a demo that needs neither
/// root nor a router (status on 127.0.0.1:9180, BGP listener on 127.0.0.1:1179, one
/// passive peer on 127.0.0.1, one service whose check always passes).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// Name under which [`EMBEDDED_DEFAULT`] appears in messages and in [`Config::source`].
pub const EMBEDDED_SOURCE: &str = "<embedded>";

/// Loads and validates the file at `path`. Relative paths inside it (key files, drain
/// files) are resolved against the file's directory. On error, every problem found is
/// returned, each with file, line, column and key path: every unknown key and type error
/// (or the one TOML syntax error), or else every validation error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::whole_file(&source, format!("cannot read: {e}")))?;
    load_str(&text, &source)
}

/// Loads and validates `text`; `source` names it in messages and, when it is a path,
/// its directory is the base for relative paths inside it.
pub fn load_str(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    let raw = parse_raw(text, source)?;
    let base_dir = Path::new(source)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Config::try_from(SourcedRaw {
        raw,
        text,
        source,
        base_dir,
    })
}

/// The validated [`EMBEDDED_DEFAULT`].
///
/// It is compiled in and covered by `embedded_default_loads_and_is_a_demo`, so it cannot
/// fail at run time; still, the error is returned rather than unwrapped.
pub fn embedded_default() -> Result<Config, ConfigErrors> {
    load_str(EMBEDDED_DEFAULT, EMBEDDED_SOURCE)
}
