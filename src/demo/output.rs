//! How the demo prints: one line per event, stamped with the time since the start,
//! coloured (plain ANSI SGR) only when asked (`status::client::colour_wanted`: stdout is a
//! terminal and `NO_COLOR` is unset).

use std::time::Duration;

/// The kinds of line the demo prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A step's headline.
    Step,
    /// Explanations.
    Note,
    /// The router's table with a path from every site.
    RouterFull,
    /// The router's table with fewer paths, but at least `min_sites`.
    RouterShort,
    /// The router's table below `min_sites`.
    RouterLow,
    /// Something expected was seen.
    Good,
    /// The guard holds, or a site is sick.
    Held,
    /// Failure.
    Bad,
}

/// Formats lines, with or without colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colour.
    pub colour: bool,
}

impl Style {
    /// `text` stamped with `at` (seconds since the start, one decimal) and coloured by
    /// `kind`. Steps get a `==>` marker and good news `ok`, so that they stand out in
    /// plain text too.
    pub fn line(&self, at: Duration, kind: Kind, text: &str) -> String {
        let (marker, sgr) = match kind {
            Kind::Step => ("==> ", "1;36"),
            Kind::Note => ("    ", "2"),
            Kind::RouterFull => ("    ", "32"),
            Kind::RouterShort => ("    ", "33"),
            Kind::RouterLow => ("    ", "1;31"),
            Kind::Good => ("    ok: ", "1;32"),
            Kind::Held => ("    ", "33"),
            Kind::Bad => ("    FAILED: ", "1;31"),
        };
        let stamp = format!("[{:>5.1}s]", at.as_secs_f64());
        if self.colour {
            format!("\x1b[2m{stamp}\x1b[0m \x1b[{sgr}m{marker}{text}\x1b[0m")
        } else {
            format!("{stamp} {marker}{text}")
        }
    }

    /// The router line's kind for `paths` of `sites`, with `min_sites`.
    pub fn router_kind(paths: usize, sites: usize, min_sites: usize) -> Kind {
        if paths >= sites {
            Kind::RouterFull
        } else if paths >= min_sites {
            Kind::RouterShort
        } else {
            Kind::RouterLow
        }
    }
}
