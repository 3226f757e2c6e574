//! Control requests from the HTTP endpoint to the coordinator.
//!
//! The server never touches daemon state: it turns an authorised `POST` into a
//! [`ControlRequest`], sends it on an `mpsc` channel to the coordinator and waits (bounded)
//! for the [`ControlReply`] on the request's `oneshot`.
//!
//! ```text
//!  HTTP client ──POST──▶ server ──mpsc<ControlRequest>──▶ coordinator
//!                          ▲                                   │
//!                          └──────── oneshot<ControlReply> ────┘
//! ```

use tokio::sync::oneshot;

/// One command for the coordinator, with the channel for its answer.
#[derive(Debug)]
pub struct ControlRequest {
    /// What to do.
    pub command: ControlCommand,
    /// Where to answer. Dropping it unanswered makes the server reply 503; once the
    /// server has replied 503 it is closed, and the coordinator skips the request.
    pub reply: oneshot::Sender<ControlReply>,
}

/// What an operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// `POST /services/{name}/drain`: withdraw (or graceful-shutdown) the service.
    Drain {
        /// Service name.
        service: String,
        /// Override the all-sites guard (body `{"force": true}`).
        force: bool,
        /// Operator's reason, for status, logs and the shutdown communication.
        reason: Option<String>,
    },
    /// `POST /services/{name}/undrain`: cancel an operator drain.
    Undrain {
        /// Service name.
        service: String,
    },
    /// `POST /services/{name}/check`: run the service's checks now.
    Check {
        /// Service name.
        service: String,
    },
    /// `POST /reload`: re-read the config file (same as SIGHUP).
    Reload,
}

/// The coordinator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// Done (or started); human message. HTTP 200.
    Ok(String),
    /// No such service. HTTP 404.
    NotFound,
    /// Refused, with every reason (guard would withdraw the last site, config errors…).
    /// HTTP 409.
    Rejected(Vec<String>),
}

impl From<crate::coordinator::core::ControlOutcome> for ControlReply {
    fn from(outcome: crate::coordinator::core::ControlOutcome) -> Self {
        use crate::coordinator::core::ControlOutcome;
        match outcome {
            ControlOutcome::Done(message) => ControlReply::Ok(message),
            ControlOutcome::UnknownService(_) => ControlReply::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::core::ControlOutcome;

    #[test]
    fn coordinator_outcomes_map_to_replies() {
        assert_eq!(
            ControlReply::from(ControlOutcome::Done("dns draining".into())),
            ControlReply::Ok("dns draining".into())
        );
        assert_eq!(
            ControlReply::from(ControlOutcome::UnknownService("web".into())),
            ControlReply::NotFound
        );
    }
}
