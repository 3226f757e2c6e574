//! Combination of check states into a service's health: a pure function.
//!
//! [`Combine::All`] (the default) needs every check up, [`Combine::Any`] one,
//! [`Combine::AtLeast`] N and [`Combine::AtLeastPercent`] P % of them. A check still
//! [`CheckStatus::Unknown`] is not up; the service is [`ServiceHealth::Unknown`] (not
//! announced either) while the rule is not met yet but could still be met by the unknown
//! checks, so status can tell "starting" from "failed".

use crate::config::Combine;

use super::hysteresis::CheckStatus;

/// A service's combined health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceHealth {
    /// The rule is met.
    Up,
    /// The rule is not met, and would not be even if every unknown check came up.
    Down,
    /// The rule is not met yet, but checks still unknown could meet it.
    Unknown,
}

/// Whether `up` of `total` checks satisfy `rule`.
fn satisfied(rule: Combine, up: usize, total: usize) -> bool {
    match rule {
        Combine::All => up == total,
        Combine::Any => up >= 1,
        Combine::AtLeast(n) => up >= n,
        Combine::AtLeastPercent(p) => {
            let as_f64 = |n: usize| f64::from(u32::try_from(n).unwrap_or(u32::MAX));
            as_f64(up) * 100.0 >= p * as_f64(total)
        }
    }
}

/// Combines the checks' statuses under `rule`. No checks at all is [`ServiceHealth::Down`]:
/// without evidence nothing is announced.
pub fn combine(rule: Combine, checks: &[CheckStatus]) -> ServiceHealth {
    let total = checks.len();
    if total == 0 {
        return ServiceHealth::Down;
    }
    let up = checks.iter().filter(|s| **s == CheckStatus::Up).count();
    let unknown = checks
        .iter()
        .filter(|s| **s == CheckStatus::Unknown)
        .count();
    if satisfied(rule, up, total) {
        ServiceHealth::Up
    } else if unknown > 0 && satisfied(rule, up + unknown, total) {
        ServiceHealth::Unknown
    } else {
        ServiceHealth::Down
    }
}

#[cfg(test)]
mod tests {
    use super::CheckStatus::{Down as D, Unknown as U, Up as P};
    use super::ServiceHealth as H;
    use super::*;

    #[test]
    fn combination_table() {
        let table: &[(Combine, &[CheckStatus], ServiceHealth)] = &[
            (Combine::All, &[P, P, P], H::Up),
            (Combine::All, &[P, D, P], H::Down),
            (Combine::All, &[P, U, P], H::Unknown),
            (Combine::All, &[D, U], H::Down),
            (Combine::All, &[U, U], H::Unknown),
            (Combine::Any, &[D, D, P], H::Up),
            (Combine::Any, &[D, D, D], H::Down),
            (Combine::Any, &[D, U, D], H::Unknown),
            (Combine::Any, &[P, U], H::Up),
            (Combine::AtLeast(2), &[P, D, P], H::Up),
            (Combine::AtLeast(2), &[P, D, D], H::Down),
            (Combine::AtLeast(2), &[P, U, D], H::Unknown),
            (Combine::AtLeast(3), &[P, P, P], H::Up),
            (Combine::AtLeastPercent(50.0), &[P, D], H::Up),
            (Combine::AtLeastPercent(50.0), &[P, D, D], H::Down),
            (Combine::AtLeastPercent(66.0), &[P, P, D], H::Up),
            (Combine::AtLeastPercent(67.0), &[P, P, D], H::Down),
            (Combine::AtLeastPercent(100.0), &[P, P, P, P], H::Up),
            (Combine::AtLeastPercent(100.0), &[P, P, P, U], H::Unknown),
            (Combine::AtLeastPercent(0.5), &[D, D, D, P], H::Up),
        ];
        for (rule, checks, want) in table {
            assert_eq!(combine(*rule, checks), *want, "{rule:?} over {checks:?}");
        }
    }

    #[test]
    fn no_checks_is_down_whatever_the_rule() {
        for rule in [
            Combine::All,
            Combine::Any,
            Combine::AtLeast(1),
            Combine::AtLeastPercent(50.0),
        ] {
            assert_eq!(combine(rule, &[]), H::Down, "{rule:?}");
        }
    }
}
