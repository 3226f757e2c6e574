//! Peer task supervision: `spawn_peer` starts the task under a supervisor that restarts
//! it after a panic (with a growing delay, 1 s doubling to 60 s) and reports
//! [`PeerEvent::Crashed`]. Commands wait in the supervisor's queue meanwhile, so a crash
//! loses at most the command being handled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

use super::api::{Command, LocalSpeaker, PeerEvent, PeerHandle, StopReason};
use super::driver::{rfc3339_now, Actor, COMMAND_QUEUE};
use crate::announcer::RibOut;
use crate::config::{PeerConfig, PeerMode};
use crate::fsm;
use crate::status::model::PeerStatus;

/// Builds the FSM configuration of a peer.
pub fn fsm_config(cfg: &PeerConfig, local: &LocalSpeaker) -> fsm::Config {
    let mut c = fsm::Config::new(local.asn, local.router_id, cfg.remote_asn);
    c.hold_time = cfg.hold_time;
    c.connect_retry = cfg.connect_retry;
    c.passive = cfg.mode == PeerMode::Passive;
    // The peer's own `reconnect`, else the daemon's tuning (the same defaults).
    (c.idle_hold, c.idle_hold_max) = cfg
        .reconnect
        .map_or((local.tuning.idle_hold, local.tuning.idle_hold_max), |r| {
            (r.min, r.max)
        });
    c.idle_hold_stable = local.tuning.idle_hold_stable;
    c.send_hold = local.tuning.send_hold;
    c.ipv4 = cfg.ipv4;
    c.ipv6 = cfg.ipv6;
    c.graceful_restart = cfg.graceful_restart.map(|gr| fsm::GracefulRestart {
        restart_time: gr.restart_time,
        restarted: local.restarted,
    });
    c.jitter_seed = rand::random();
    c
}

/// Starts a peer task (and its supervisor). It begins connecting/listening at once.
pub fn spawn_peer(
    cfg: PeerConfig,
    local: LocalSpeaker,
    routes: watch::Receiver<Arc<RibOut>>,
    status: watch::Sender<PeerStatus>,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> PeerHandle {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let name = cfg.name.clone();
    let span = crate::status::logging::peer_span(&cfg.name, &cfg.address.to_string());
    let task =
        tokio::spawn(supervise(cfg, local, routes, Arc::new(status), events, rx).instrument(span));
    PeerHandle { name, tx, task }
}

async fn supervise(
    mut cfg: PeerConfig,
    local: LocalSpeaker,
    routes: watch::Receiver<Arc<RibOut>>,
    status: Arc<watch::Sender<PeerStatus>>,
    events: mpsc::UnboundedSender<PeerEvent>,
    mut outer: mpsc::Receiver<Command>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let (inner_tx, inner_rx) = mpsc::channel(COMMAND_QUEUE);
        let actor = Actor::new(
            cfg.clone(),
            local.clone(),
            routes.clone(),
            status.clone(),
            events.clone(),
        );
        let mut task: JoinHandle<()> = tokio::spawn(actor.run(inner_rx).in_current_span());
        let result = loop {
            tokio::select! {
                cmd = outer.recv() => match cmd {
                    Some(cmd) => {
                        // A restarted task must start with the settings in force.
                        if let Command::SetBfd(bfd, _) = &cmd {
                            cfg.bfd = *bfd;
                        }
                        let _ = inner_tx.send(cmd).await;
                    }
                    None => {
                        // The coordinator is gone: stop like a daemon shutdown.
                        let (done, _) = oneshot::channel();
                        let _ = inner_tx.send(Command::Shutdown(StopReason::DaemonStopping, done)).await;
                        let _ = (&mut task).await;
                        return;
                    }
                },
                r = &mut task => break r,
            }
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                let message = if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".to_string())
                } else {
                    "task cancelled".to_string()
                };
                warn!(%message, "peer task crashed; restarting in {backoff:?}");
                status.send_modify(|s| {
                    s.state = "idle".into();
                    s.since = rfc3339_now();
                    s.last_error = Some(format!("internal error: {message}"));
                });
                let _ = events.send(PeerEvent::Crashed {
                    peer: cfg.name.clone(),
                    message,
                });
                // Commands arriving during the pause wait in the outer queue.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
