//! A daemon stop with a fleet: which services keep their routes, and what the operator,
//! `/status` and the peers are told about it.
//!
//! A stop asks the all-sites guard about each service like a drain file does
//! ([`crate::service::DrainSource::Stop`]). The services it allows are drained (RFC 8326)
//! and withdrawn as before; those it holds — this site is needed for their `min_sites` —
//! are *not* withdrawn: the sessions are closed so that graceful restart (RFC 4724 §4.2)
//! keeps the routes for our Restart Time where it was negotiated, and a restart within
//! that time resumes with End-of-RIB. Pure: the shell does the I/O.

use crate::session::StopReason;

/// Services named in the Cease text at most (RFC 9003 allows 255 octets).
const NAMES_IN_CEASE: usize = 3;

/// What the end of a stop does, from the guard's held services (name, reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StopPlan {
    /// How the peer sessions are closed.
    pub(super) reason: StopReason,
    /// The services whose routes (and service addresses) are kept.
    pub(super) kept: Vec<String>,
    /// For `/status` `daemon.stop_reason`; `None` when nothing is kept.
    pub(super) status: Option<String>,
}

impl StopPlan {
    /// The plan for a stop that ends with `held` (name, guard reason) still held.
    pub(super) fn new(held: &[(String, String)]) -> Self {
        if held.is_empty() {
            return StopPlan {
                reason: StopReason::DaemonStopping,
                kept: Vec::new(),
                status: None,
            };
        }
        let kept: Vec<String> = held.iter().map(|(n, _)| n.clone()).collect();
        let mut names = kept
            .iter()
            .take(NAMES_IN_CEASE)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if kept.len() > NAMES_IN_CEASE {
            names.push_str(&format!(" (+{} more)", kept.len() - NAMES_IN_CEASE));
        }
        let cease = format!(
            "anyguard stopping; site needed for min_sites of {names}; graceful restart keeps the routes"
        );
        let reasons = held
            .iter()
            .map(|(n, r)| format!("{n}: {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        StopPlan {
            reason: StopReason::KeepRoutes(cease),
            status: Some(format!(
                "not withdrawn, this site is needed for min_sites: sessions closed for graceful restart (RFC 4724), which keeps the routes for the restart time where negotiated; peers without it drop them now; {reasons}"
            )),
            kept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_held_stops_as_before_with_a_cease() {
        let plan = StopPlan::new(&[]);
        assert_eq!(plan.reason, StopReason::DaemonStopping);
        assert!(plan.kept.is_empty());
        assert_eq!(plan.status, None);
    }

    #[test]
    fn held_services_are_kept_and_named_in_the_cease_text() {
        let held = vec![(
            "web".to_string(),
            "daemon stopping; withdrawing web would leave 0 of 3 sites announcing (min_sites 2)"
                .to_string(),
        )];
        let plan = StopPlan::new(&held);
        assert_eq!(plan.kept, vec!["web".to_string()]);
        assert_eq!(
            plan.reason,
            StopReason::KeepRoutes(
                "anyguard stopping; site needed for min_sites of web; graceful restart keeps the routes"
                    .to_string()
            )
        );
        let status = plan.status.unwrap_or_default();
        assert!(status.contains("web: daemon stopping; withdrawing web would leave 0 of 3"));
    }

    #[test]
    fn many_held_services_are_counted_not_listed_in_the_cease_text() {
        let held: Vec<(String, String)> = (0..5)
            .map(|i| (format!("svc{i}"), "held".to_string()))
            .collect();
        let plan = StopPlan::new(&held);
        assert_eq!(plan.kept.len(), 5);
        let StopReason::KeepRoutes(text) = &plan.reason else {
            panic!("expected KeepRoutes, got {:?}", plan.reason);
        };
        assert!(text.contains("svc0, svc1, svc2 (+2 more)"), "{text}");
        assert!(text.len() <= 255);
    }
}
