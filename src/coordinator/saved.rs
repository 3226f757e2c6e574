//! The shell's side of the state file ([`crate::state`]): where it is, the drains it
//! restores before the first evaluation, and the drains and undrains it records.
//!
//! The service addresses it records are handled with the other address work, in
//! `local_actions`.

use std::path::PathBuf;
use std::time::SystemTime;

use super::core::{rfc3339, ControlOutcome, Core};
use super::run::RunOptions;
use crate::config::Config;
use crate::state::file::{StateError, StateFile};
use crate::state::{SavedDrain, STATE_FILE_NAME};

/// The state file of this run: `state_dir` of the config, else the daemon's default
/// directory ([`RunOptions::default_state_dir`]); none at all without either. A dry run
/// reads it (a drained service is shown drained) but never writes it: the real daemon
/// may be running with the same file.
pub(super) fn open(config: &Config, options: &RunOptions) -> Result<StateFile, StateError> {
    let path: Option<PathBuf> = config
        .state_dir
        .as_ref()
        .or(options.default_state_dir.as_ref())
        .map(|d| d.join(STATE_FILE_NAME));
    let Some(path) = path else {
        tracing::warn!(
            "no state file (no state_dir and no default directory): operator drains made \
             through the control API do not survive a restart"
        );
        return StateFile::open(None);
    };
    let state = StateFile::open(Some(path.clone()))?;
    let doc = state.document();
    tracing::info!(
        path = %path.display(),
        drains = doc.drains.len(),
        addresses = doc.addresses.len(),
        "state file read"
    );
    if options.dry_run {
        tracing::warn!(path = %path.display(), "dry run: the state file is read, never written");
        return Ok(state.read_only());
    }
    Ok(state)
}

/// Applies the saved operator drains to `core`: before the first evaluation at start,
/// so that a restarted daemon never announces a drained service, not even once; and
/// after a reload, so that a service that comes back is drained as it was. Drains of
/// services the config does not have are kept (they may come back) and logged.
pub(super) fn restore_drains(core: &mut Core, state: &StateFile, at_start: bool) {
    let from = match state.path() {
        Some(p) => format!("restored from state file {}", p.display()),
        None => "restored from memory".to_string(),
    };
    for (name, drain) in &state.document().drains {
        let restored = format!("{from}, drained at {}", drain.at);
        let configured = core.restore_drain(
            name,
            drain.force,
            drain.withdrawn,
            drain.reason.clone(),
            restored,
        );
        if !at_start {
            continue;
        }
        if configured {
            tracing::info!(service = %name, reason = %drain.reason, force = drain.force, at = %drain.at, "operator drain restored from the state file");
        } else {
            tracing::warn!(
                service = %name,
                "the state file holds an operator drain of a service the config does not have: \
                 kept, should the service come back (undrain it to remove it)"
            );
        }
    }
}

/// Gives the pending removals of the previous run back to `core` at start (with a fleet
/// only: without one nothing guards them), before the first evaluation: they are
/// announced again and guarded until the guard lets them go.
pub(super) fn restore_removals(core: &mut Core, state: &StateFile) {
    let saved = state.document().pending_removals.clone();
    if saved.is_empty() {
        return;
    }
    for r in &saved {
        tracing::warn!(service = %r.service, prefixes = %r.key(), "pending removal restored from the state file: announced and guarded until the all-sites guard lets it go");
    }
    core.add_pending_removals(saved);
}

/// Keeps the saved pending removals in line with `core`'s (a write only on a change).
pub(super) fn track_removals(core: &Core, state: &mut StateFile) {
    if state.document().pending_removals.as_slice() == core.pending_removals() {
        return;
    }
    let now = core.pending_removals().to_vec();
    // A failed write is logged by `update`, shown in /status and retried.
    let _ = update(state, SystemTime::now(), |doc| doc.pending_removals = now);
}

/// Keeps each saved drain's `withdrawn` in line with what the drain did (after every
/// evaluation; a write only when one changed).
pub(super) fn track_withdrawals(core: &Core, state: &mut StateFile) {
    let changed: Vec<(String, bool)> = state
        .document()
        .drains
        .iter()
        .filter_map(|(name, saved)| {
            let withdrawn = core.operator_drain_withdrawn(core.index_of(name)?)?;
            (withdrawn != saved.withdrawn).then(|| (name.clone(), withdrawn))
        })
        .collect();
    if changed.is_empty() {
        return;
    }
    // A failed write is logged by `state_update`, shown in /status and retried.
    let _ = update(state, SystemTime::now(), |doc| {
        for (name, withdrawn) in changed {
            if let Some(d) = doc.drains.get_mut(&name) {
                d.withdrawn = withdrawn;
            }
        }
    });
}

/// Records a drain `core` accepted; the operator's answer says whether it was saved.
pub(super) fn drained(
    state: &mut StateFile,
    outcome: ControlOutcome,
    service: &str,
    force: bool,
    reason: &str,
) -> ControlOutcome {
    let ControlOutcome::Done(message) = outcome else {
        return outcome;
    };
    let now = SystemTime::now();
    let drain = SavedDrain {
        force,
        reason: reason.to_string(),
        at: rfc3339(now),
        // Known after the evaluation (`track_withdrawals`).
        withdrawn: false,
    };
    let result = update(state, now, |s| s.set_drain(service, drain));
    ControlOutcome::Done(saved_note(message, state, result))
}

/// Forgets a drain on undrain; also for a service the config does not have, whose drain
/// is otherwise kept for ever.
pub(super) fn undrained(
    state: &mut StateFile,
    outcome: ControlOutcome,
    service: &str,
) -> ControlOutcome {
    let had = state.document().drains.contains_key(service);
    let message = match outcome {
        ControlOutcome::Done(message) => message,
        ControlOutcome::UnknownService(_) if had => format!(
            "service {service} is not in the config; its drain is removed from the state file"
        ),
        other => return other,
    };
    if !had {
        return ControlOutcome::Done(message);
    }
    let result = update(state, SystemTime::now(), |s| {
        s.clear_drain(service);
    });
    ControlOutcome::Done(saved_note(message, state, result))
}

/// Changes the state document and writes the file if that changed it; a failed write is
/// logged here (the change holds in memory, `/status` shows the error, the loop retries).
/// The one way the coordinator changes the state file.
pub(super) fn update(
    state: &mut StateFile,
    now: SystemTime,
    change: impl FnOnce(&mut crate::state::StateDocument),
) -> Result<(), StateError> {
    let result = state.update(now, change);
    if let Err(e) = &result {
        tracing::error!(error = %e, "the state file was not written: the change holds until the daemon stops");
    }
    result
}

fn saved_note(message: String, state: &StateFile, result: Result<(), StateError>) -> String {
    match (result, state.path()) {
        (Ok(()), Some(_)) if state.is_read_only() => {
            format!("{message}; not saved (dry run: the state file is never written)")
        }
        (Ok(()), Some(p)) => format!("{message}; saved in {}", p.display()),
        (Ok(()), None) => format!("{message}; not kept across a restart (no state file)"),
        (Err(e), _) => format!("{message}; NOT saved, it is lost at a restart: {e}"),
    }
}
