//! The coordinator's tokio shell: starts the status endpoint, the health runner, the BGP
//! listener and one task per peer, then loops over their messages, feeding [`Core`] and
//! publishing what it decides.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::config_read::{checks_changed, Asked, ConfigRead, Loaded, Read};
use super::core::{rfc3339, ControlOutcome, Core, RoutesUpdate};
use super::fleet_guard::{FleetGuard, FleetGuardError};
use super::local_actions::{Confirmed, Flushes, LocalActions};
use super::saved;
use super::stop::StopPlan;
use crate::announcer::RibOut;
use crate::config::{Config, PeerConfig, PeerMode};
use crate::health::{CheckEvent, CheckSink, HealthRunner, ProbeError, RunnerOptions, Transition};
use crate::local_addr::IpCommand;
use crate::service::State;
use crate::session::listener::{spawn_listener, Listener};
use crate::session::{spawn_peer, LocalSpeaker, PeerEvent, PeerHandle, StopReason, Tuning};
use crate::state::file::{StateError, StateFile};
use crate::status::control::{ControlCommand, ControlReply, ControlRequest};
use crate::status::metrics::{Metrics, Wakeup};
use crate::status::model::{
    DaemonStatus, GuardStatus, LiveCheck, PeerStatus, ReloadStatus, StatusDocument,
};
use crate::status::record::ResultRecorder;
use crate::status::systemd::{self as sd, Notifier};
use crate::status::{self, StartError};

/// Check state changes that may wait for the coordinator.
const CHECK_EVENTS: usize = 1024;
/// Check state changes taken in one turn of the loop at most.
const CHECK_BATCH: usize = 256;
/// Most peer events taken in one turn (see the loop).
const PEER_EVENT_BATCH: usize = 64;
/// How often drain files are looked at.
const DRAIN_FILE_POLL: Duration = Duration::from_millis(250);
/// After the last service is withdrawn at shutdown, how long to wait for the peers to
/// confirm that the withdrawals are on the wire before closing the sessions anyway.
const FLUSH_WAIT: Duration = Duration::from_secs(3);
/// Longest wait for a peer to send its Cease and stop.
const PEER_STOP_WAIT: Duration = Duration::from_secs(5);
/// Graceful restart's End-of-RIB waits for the services to be decided at most this long
/// after start (a check that neither rises nor falls must not keep the peer's stale routes
/// alive; the peer's own stale timer is the other bound).
const INITIAL_ROUTES_MAX: Duration = Duration::from_secs(60);

/// How the daemon was started.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file, for reloads; `None` for the embedded default (no reload).
    pub config_path: Option<PathBuf>,
    /// Evaluate checks and log every decision, but open no BGP session.
    pub dry_run: bool,
    /// The command (and leading arguments) that manages service addresses; `None` for
    /// `ip` from `PATH`. E.g. `["ip", "-n", "NETNS"]`.
    pub ip_command: Option<Vec<String>>,
    /// The bound on one such call; `None` for `IP_TIMEOUT` (2 s). Tests that hold an
    /// `ip` call open on purpose widen it, so that what they order is not a race with it.
    pub ip_timeout: Option<Duration>,
    /// The state file's directory when the config has no `state_dir`; `None`: no state
    /// file (library users, tests, the embedded default config). The binary sets
    /// `$STATE_DIRECTORY` or `/var/lib/anyguard` for a config file.
    pub default_state_dir: Option<PathBuf>,
    /// systemd's notification socket and watchdog (`Notifier::from_env` in the binary);
    /// the default is inert.
    pub systemd: Notifier,
}

/// What the process's signal handlers (or a test) ask of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonSignal {
    /// SIGHUP: reload the config file.
    Reload,
    /// SIGTERM / SIGINT: drain (RFC 8326), withdraw, send Cease, exit.
    Stop,
}

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Status endpoint.
    #[error(transparent)]
    Status(#[from] StartError),
    /// A check could not be built.
    #[error("health checks: {0}")]
    Probe(#[from] ProbeError),
    /// The fleet description of the all-sites guard.
    #[error("fleet: {0}")]
    Guard(#[from] FleetGuardError),
    /// The state file cannot be read (the daemon does not guess what it held).
    #[error(transparent)]
    State(#[from] StateError),
    /// The BGP listener could not bind.
    #[error("bgp listen {addr}: {source}")]
    Listen {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

struct Peer {
    config: PeerConfig,
    handle: PeerHandle,
    status: watch::Receiver<PeerStatus>,
    forwarder: JoinHandle<()>,
    /// A reload removed the peer, but it is the last to carry a family whose routes are
    /// pending removal: it runs until the guard lets them go and their withdrawal is
    /// written (`Shell::stop_retired_peers`).
    retiring: bool,
}

/// Everything the loop owns besides the [`Core`].
struct Shell {
    options: RunOptions,
    started: Instant,
    started_wall: SystemTime,
    generation: u64,
    loaded_at: SystemTime,
    last_reload: Option<ReloadStatus>,
    status_tx: watch::Sender<StatusDocument>,
    routes_tx: watch::Sender<Arc<RibOut>>,
    /// `true` once the services are decided (or after [`INITIAL_ROUTES_MAX`]): peers with
    /// graceful restart send End-of-RIB only then.
    initial_tx: watch::Sender<bool>,
    metrics: Metrics,
    /// The event channel of a health runner restarted by a reload: the loop switches to
    /// it, so that results of the old runner still queued (numbered after the old config)
    /// are dropped instead of landing on whatever service now has their index.
    new_checks_rx: Option<mpsc::Receiver<CheckEvent>>,
    health: Option<HealthRunner>,
    peers: Vec<Peer>,
    listener: Option<Listener>,
    peer_events: mpsc::UnboundedSender<PeerEvent>,
    peer_changed: Arc<Notify>,
    /// Per peer, the last desired routes its current session confirmed as written.
    flushed: Flushes,
    token: watch::Sender<Option<Vec<u8>>>,
    /// The key `/fleet/report` is signed with; follows fleet reloads.
    fleet_key: watch::Sender<Option<crate::guard::auth::FleetKey>>,
    guard: Option<FleetGuard>,
    local: LocalActions,
    ready: bool,
    stopping: bool,
    /// `/status` `daemon.stop_reason` (crate::coordinator::stop).
    stop_reason: Option<String>,
    /// Check transitions seen since the routes were last published, logged after them.
    check_transitions: Vec<CheckTransitionLog>,
    /// The BFD task, started with the first peer that has `bfd` (UDP 3784).
    bfd: Option<crate::bfd::Handle>,
    /// Operator drains and service addresses kept across restarts.
    state: StateFile,
    /// Each service's `/status` entry as last published: rebuilt only for the services
    /// the core marks as changed (`Core::status_stale`), or all when a peer's session
    /// went up or down (issue 13).
    service_parts: Vec<Arc<crate::status::model::ServiceStatus>>,
    /// The peers' sessions `service_parts` were built with.
    parts_peers: Vec<(String, bool)>,
    /// `Core::routes_version` of the routes last published on `routes_tx`.
    routes_version: Option<u64>,
    /// READY=1, STATUS=, WATCHDOG=1 (from this loop's turns), RELOADING=1, STOPPING=1.
    systemd: sd::Link,
    /// The reload's config read, off the loop (`config_read`).
    config_read: ConfigRead,
    /// Some service of the running config has a `drain_file` (to poll).
    drain_files: bool,
}

/// A health runner's [`CheckSink`] for the checks of `config`: every result recorded by
/// its check's task into `lives` (per service, per check) and the check's metrics; the
/// receiving end of the state changes, the only results that wake the loop (issue 13).
fn check_channels(
    config: &Config,
    lives: Vec<Vec<LiveCheck>>,
    metrics: &Metrics,
) -> (CheckSink, mpsc::Receiver<CheckEvent>) {
    let (changes_tx, changes) = mpsc::channel(CHECK_EVENTS);
    let recorder = ResultRecorder::new(&config.services, lives, metrics);
    (CheckSink::recording(changes_tx, recorder), changes)
}

/// Routes [`Shell::send_routes`] published, and what they replaced.
enum RoutesSent {
    Full(Arc<RibOut>),
    /// The routes replaced, and the entries that changed (sorted by prefix).
    Patch(
        Arc<RibOut>,
        Vec<(ipnet::IpNet, Option<crate::announcer::RouteAttrs>)>,
    ),
}

impl RoutesSent {
    /// The change for the log ([`crate::announcer::describe_change`]); a patch is
    /// described from its own entries, without walking every route.
    fn describe(&self, now: &RibOut) -> Option<String> {
        match self {
            RoutesSent::Full(previous) => crate::announcer::describe_change(previous, now),
            RoutesSent::Patch(previous, patch) => crate::announcer::describe_patch(previous, patch),
        }
    }
}

/// A check transition waiting to be logged.
struct CheckTransitionLog {
    service: String,
    check: String,
    transition: Transition,
    detail: String,
}

/// The key this site signs its fleet report with (`None`: no fleet, or no `[auth]`).
fn fleet_key(guard: Option<&FleetGuard>) -> Option<crate::guard::auth::FleetKey> {
    guard
        .and_then(|g| g.fleet().auth.as_ref())
        .map(|a| a.key.clone())
}

/// Runs the daemon until a [`DaemonSignal::Stop`] (or the signal channel closing) has
/// drained and withdrawn every service and the sessions are closed.
///
/// The loop runs on the thread that blocks on it (the binary's `block_on`), not as a task
/// on the runtime's workers: with the checks on probe threads of their own
/// (`health::probe_threads`), a loop on a worker cost ~10 % more CPU per probe result and
/// ~14 MiB more peak RSS at 1,000 services (its allocations spread over the workers'
/// malloc arenas) for ~40 µs less decision → wire at the median, and no better p99
/// (docs/benchmarks.md, "Decision → wire, round 5").
pub async fn run(
    config: Config,
    options: RunOptions,
    mut signals: mpsc::Receiver<DaemonSignal>,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut core = Core::new(Arc::clone(&config), now, wall);
    // First: a state file that cannot be read stops the start before anything listens.
    let state = saved::open(&config, &options)?;
    saved::restore_drains(&mut core, &state, true);
    let guard = FleetGuard::start(&config)?;
    core.guard_removals(guard.is_some());
    if guard.is_some() {
        saved::restore_removals(&mut core, &state);
    }

    let (status_tx, status_rx) = watch::channel(StatusDocument::default());
    let metrics = Metrics::new(status_rx.clone());
    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(16);
    let server_stop = Arc::new(Notify::new());
    let stop_wait = Arc::clone(&server_stop);
    let server = status::start(
        &config.status,
        status_rx,
        metrics.clone(),
        control_tx,
        async move { stop_wait.notified().await },
    )
    .await?;
    tracing::info!(listen = %server.local_addr, "status endpoint started");
    if let Some(addr) = server.fleet_addr {
        tracing::info!(listen = %addr, "fleet report listener started");
    }
    // Before the first publication: until then /fleet/report has nothing to serve.
    server.fleet_key.send_replace(fleet_key(guard.as_ref()));

    let (checks_tx, mut checks) = check_channels(&config, core.live_checks(), &metrics);
    let health = HealthRunner::start(&config.services, checks_tx, RunnerOptions::default())?;

    let (routes_tx, _routes_rx) = watch::channel(Arc::new(RibOut::new()));
    let (peer_events, mut peer_events_rx) = mpsc::unbounded_channel();
    let listener = match (options.dry_run, config.bgp_listen) {
        (false, Some(addr)) => {
            Some(spawn_listener(addr).map_err(|source| RunError::Listen { addr, source })?)
        }
        _ => None,
    };

    let ip = options
        .ip_command
        .clone()
        .map_or_else(IpCommand::default, IpCommand::with_prefix);
    let ip = match options.ip_timeout {
        Some(t) => ip.with_timeout(t),
        None => ip,
    };
    let (local, mut addresses_rx) = LocalActions::start(
        &config.services,
        options.dry_run,
        ip,
        state.document().addresses.iter().cloned().collect(),
    );
    let systemd = sd::Link::new(options.systemd.clone(), now);
    let mut shell = Shell {
        options,
        started: now,
        started_wall: wall,
        generation: 1,
        loaded_at: wall,
        last_reload: None,
        status_tx,
        routes_tx,
        initial_tx: watch::channel(false).0,
        metrics,
        new_checks_rx: None,
        health: Some(health),
        peers: Vec::new(),
        listener,
        peer_events,
        peer_changed: Arc::new(Notify::new()),
        flushed: Flushes::default(),
        token: server.token,
        fleet_key: server.fleet_key,
        guard,
        local,
        ready: false,
        stopping: false,
        stop_reason: None,
        check_transitions: Vec::new(),
        bfd: None,
        state,
        service_parts: Vec::new(),
        parts_peers: Vec::new(),
        routes_version: None,
        systemd,
        config_read: ConfigRead::default(),
        drain_files: has_drain_files(&config),
    };
    if shell.options.dry_run {
        tracing::warn!("dry run: no BGP session is opened; decisions are only logged");
    } else {
        for peer in &config.peers {
            shell.start_peer(&config, peer.clone(), true).await;
        }
    }
    shell.ready = true;
    shell.publish(&mut core);
    // The config is loaded, /status listens and serves this document, the peers are started.
    shell.systemd.ready(&shell.status_tx.borrow());
    tracing::info!(
        source = %config.source,
        services = config.services.len(),
        peers = config.peers.len(),
        "anyguard running"
    );

    let mut drain_poll = tokio::time::interval(DRAIN_FILE_POLL);
    drain_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_deadline: Option<Instant> = None;
    let stop_plan: StopPlan;
    loop {
        // Every time-driven step has its deadline here: no probe result wakes the loop
        // in passing any more (issue 13).
        let initial_deadline =
            (!*shell.initial_tx.borrow()).then_some(shell.started + INITIAL_ROUTES_MAX);
        let address_retry = shell.local.next_retry(Instant::now());
        let deadline = [
            core.next_deadline(),
            shell.guard.as_ref().and_then(FleetGuard::next_deadline),
            stop_deadline,
            shell.systemd.next_ping(),
            initial_deadline,
            address_retry,
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let changed = Arc::clone(&shell.peer_changed);
        let poll = shell.needs_poll();
        let view_changed = async {
            match shell.guard.as_mut() {
                Some(g) => g.view_changed().await,
                None => std::future::pending().await,
            }
        };
        let config_read = shell.config_read.finished();
        // Biased, state changes first: a result that changes a check's state is handled
        // ahead of everything queued, and its routes are published right after it, before
        // the status and the logs (issue 13). The other results never come here: their
        // checks' tasks record them (`status::record`).
        let wakeup = tokio::select! {
            biased;
            Some(event) = checks.recv() => {
                shell.on_check(&mut core, &event);
                // Changes queued meanwhile go in the same turn (one evaluation for all).
                for _ in 1..CHECK_BATCH {
                    let Ok(event) = checks.try_recv() else { break };
                    shell.on_check(&mut core, &event);
                }
                Wakeup::Check
            }
            signal = signals.recv() => {
                match signal {
                    Some(DaemonSignal::Reload) => shell.begin_reload(&core, Asked::by_signal()),
                    Some(DaemonSignal::Stop) | None => {
                        if !shell.stopping {
                            shell.stopping = true;
                            shell.systemd.stopping(&shell.status_tx.borrow());
                            if shell.guard.is_some() {
                                // docs/guard.md "Stops and restarts": a stop must not withdraw
                                // what this site is needed for.
                                tracing::info!("stopping: asking the all-sites guard before withdrawing each service");
                                core.stop_guarded();
                            } else {
                                tracing::info!("stopping: draining every service (RFC 8326) before withdrawal");
                                core.stop();
                            }
                        }
                    }
                }
                Wakeup::Signal
            }
            Some(request) = control_rx.recv() => {
                shell.on_control(&mut core, request).await;
                Wakeup::Control
            }
            Some(event) = peer_events_rx.recv() => {
                // Events already queued are taken in the same turn (bounded): they only
                // update bookkeeping that the rest of the turn reads. One turn each let
                // them queue up while 1,000 services rise at start-up (16 peers confirm
                // each of a few hundred route changes), every queued confirmation holding
                // its own version of the desired routes alive (issue 15 item 4).
                shell.on_peer_event(event);
                for _ in 1..PEER_EVENT_BATCH {
                    let Ok(event) = peer_events_rx.try_recv() else { break };
                    shell.on_peer_event(event);
                }
                Wakeup::Peer
            }
            Some(done) = addresses_rx.recv() => {
                shell.local.done(&core, &done, &mut shell.state);
                Wakeup::Address
            }
            () = changed.notified() => Wakeup::PeerStatus,
            () = view_changed => Wakeup::Guard,
            (loaded, asked) = config_read => {
                shell.reload_read(&mut core, loaded, asked).await;
                Wakeup::Reload
            }
            () = sleep => Wakeup::Timer,
            // Only while there is something to poll: an idle daemon without drain files
            // does not wake four times a second for nothing (issue 13).
            _ = drain_poll.tick(), if poll => {
                shell.poll_drain_files(&mut core);
                shell.retry_state_write();
                Wakeup::DrainPoll
            }
        };
        shell.metrics.coordinator_wakeup(wakeup);
        if let Some(rx) = shell.new_checks_rx.take() {
            checks = rx;
        }
        let now = Instant::now();
        if let Some(g) = shell.guard.as_mut() {
            g.decide_all(&mut core, now);
        }
        let changes = core.evaluate(now, SystemTime::now());
        // The routes before anything else: the peer tasks start writing UPDATEs while this
        // task formats and writes log lines (stdout may be a pipe to journald). The `ip`
        // calls run in the address task, so no withdrawal waits behind a service address.
        // Service addresses go on before their routes go out (a service whose addresses
        // are not in place is left out of the routes until the address task reports them
        // added); addresses go off only once the withdrawal is confirmed written
        // (crate::local_addr).
        let confirmed = shell.confirmed();
        let initial_done = *shell.initial_tx.borrow();
        shell
            .local
            .sync(&mut core, &confirmed, &mut shell.state, initial_done);
        let routes_sent = shell.send_routes(&mut core);
        // After the routes: a state file write never delays an UPDATE.
        saved::track_withdrawals(&core, &mut shell.state);
        saved::track_removals(&core, &mut shell.state);
        shell.log_check_transitions();
        for (i, change) in changes {
            let name = &core.config().services[i].name;
            tracing::info!(
                service = %name,
                from = change.from.as_str(),
                to = change.to.as_str(),
                reason = %change.reason,
                "service state changed"
            );
            if change.to == State::Down && change.from != State::Starting {
                shell.metrics.service_flap(name);
            }
            // Hooks after the routes: a hook never delays an UPDATE.
            shell.local.on_change(&core.config().services[i], &change);
        }
        if let Some(sent) = routes_sent {
            let now_sent = shell.routes_tx.borrow().clone();
            if let Some(what) = sent.describe(&now_sent) {
                if shell.options.dry_run {
                    tracing::info!(routes = %what, "dry run: would send to every peer");
                } else {
                    tracing::info!(routes = %what, "desired routes changed");
                }
            }
        }
        // After the routes above, so that a peer waiting for it announces them first.
        if !*shell.initial_tx.borrow()
            && (core.settled() || now >= shell.started + INITIAL_ROUTES_MAX)
        {
            shell.initial_tx.send_replace(true);
        }
        let published = shell.publish(&mut core);
        // WATCHDOG=1 from this loop only: a loop that does not come round stops pinging.
        // The status line is looked at only when the document changed (it walks every
        // service).
        shell
            .systemd
            .turn(now, published.then(|| shell.status_tx.borrow()).as_deref());
        shell.stop_retired_peers(&core).await;

        let held = shell
            .guard
            .as_ref()
            .filter(|_| shell.stopping)
            .map(FleetGuard::held)
            .unwrap_or_default();
        let held_names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
        if core.stop_settled(&held_names) {
            let all_flushed = shell.all_flushed();
            let deadline = *stop_deadline.get_or_insert(now + FLUSH_WAIT);
            if all_flushed || now >= deadline {
                if !all_flushed {
                    tracing::warn!("stopping: not every peer confirmed the withdrawals in time");
                }
                stop_plan = StopPlan::new(&held);
                shell.systemd.loop_ended();
                break;
            }
        }
    }

    if let Some(status) = &stop_plan.status {
        tracing::warn!(
            services = %stop_plan.kept.join(","),
            reason = %status,
            "STOPPING WITHOUT WITHDRAWING: the all-sites guard holds these services; their routes and service addresses stay"
        );
        shell.stop_reason = Some(status.clone());
        shell.publish(&mut core);
    }
    shell.stop_all(stop_plan.reason.clone()).await;
    if let Some(bfd) = shell.bfd.take() {
        // The peers' sessions linger in AdminDown (RFC 5880 §6.8.16), at most 1 s.
        bfd.stop().await;
    }
    if let Some(g) = shell.guard.take() {
        g.stop().await;
    }
    shell
        .local
        .finish(addresses_rx, &stop_plan.kept, &mut shell.state)
        .await;
    server_stop.notify_waiters();
    server_stop.notify_one();
    match tokio::time::timeout(PEER_STOP_WAIT, server.task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "status endpoint ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "status endpoint task failed"),
        Err(_) => tracing::warn!("status endpoint did not stop in time"),
    }
    tracing::info!("anyguard stopped");
    Ok(())
}

impl Shell {
    fn local_speaker(&self, config: &Config, first_start: bool) -> LocalSpeaker {
        LocalSpeaker {
            router_id: config.router_id,
            asn: config.local_asn,
            // RFC 4724 §4.1: the Restart State bit tells the peer that we restarted and
            // that it should keep our routes until our End-of-RIB. True for the sessions
            // of a freshly started process only.
            restarted: first_start,
            service_prefixes: config
                .services
                .iter()
                .flat_map(|s| s.prefixes.iter().copied())
                .collect(),
            tuning: Tuning::default(),
            initial_routes: Some(self.initial_tx.subscribe()),
            bfd: self.bfd.clone(),
        }
    }

    async fn start_peer(&mut self, config: &Config, peer: PeerConfig, first_start: bool) {
        if peer.bfd.is_some() && self.bfd.is_none() {
            match crate::bfd::Handle::spawn(crate::bfd::DriverConfig::daemon()) {
                Ok(h) => {
                    let (v4, v6) = h.local_ports();
                    tracing::info!(?v4, ?v6, "BFD started (UDP receive ports)");
                    let mut counters = h.daemon_status();
                    let notify = Arc::clone(&self.peer_changed);
                    tokio::spawn(async move {
                        while counters.changed().await.is_ok() {
                            notify.notify_one();
                        }
                    });
                    self.bfd = Some(h);
                }
                // The peers with `bfd` say so in their status; BGP runs without it.
                Err(e) => tracing::error!(error = %e, "cannot start BFD"),
            }
        }
        let (status_tx, status_rx) = watch::channel(PeerStatus {
            name: peer.name.clone(),
            address: peer.address.to_string(),
            remote_asn: peer.remote_asn,
            state: "idle".to_string(),
            since: rfc3339(SystemTime::now()),
            ..PeerStatus::default()
        });
        let handle = spawn_peer(
            peer.clone(),
            self.local_speaker(config, first_start),
            self.routes_tx.subscribe(),
            status_tx,
            self.peer_events.clone(),
        );
        if peer.mode != PeerMode::Active {
            match &self.listener {
                Some(listener) => {
                    if let Err(e) = listener
                        .add_peer(peer.address, handle.acceptor(), peer.md5_key.as_deref())
                        .await
                    {
                        tracing::error!(peer = %peer.name, error = %e, "cannot accept connections for peer");
                    }
                }
                None => tracing::error!(
                    peer = %peer.name,
                    "peer is passive but no [bgp] listen address is configured"
                ),
            }
        }
        let mut watch_rx = status_rx.clone();
        let notify = Arc::clone(&self.peer_changed);
        let forwarder = tokio::spawn(async move {
            while watch_rx.changed().await.is_ok() {
                notify.notify_one();
            }
        });
        self.peers.push(Peer {
            config: peer,
            handle,
            status: status_rx,
            forwarder,
            retiring: false,
        });
    }

    async fn stop_peer(&mut self, index: usize, reason: StopReason) {
        let peer = self.peers.remove(index);
        if let (Some(listener), true) = (&self.listener, peer.config.mode != PeerMode::Active) {
            let _ = listener
                .remove_peer(peer.config.address, peer.config.md5_key.is_some())
                .await;
        }
        self.flushed.session_changed(&peer.config.name);
        peer.forwarder.abort();
        let name = peer.config.name.clone();
        if tokio::time::timeout(PEER_STOP_WAIT, peer.handle.shutdown(reason))
            .await
            .is_err()
        {
            tracing::warn!(peer = %name, "peer did not stop in time");
        }
    }

    /// Stops the peers a reload removed and that no pending removal needs any more, once
    /// their session has written the current routes (the withdrawal the guard allowed)
    /// or is not established.
    async fn stop_retired_peers(&mut self, core: &Core) {
        let current = self.routes_tx.borrow().clone();
        let mut i = 0;
        while i < self.peers.len() {
            let p = &self.peers[i];
            let done = p.retiring && !core.needs_peer(&p.config) && {
                let status = p.status.borrow();
                let session = (status.state == "established")
                    .then_some((p.config.name.as_str(), status.session));
                self.flushed.all_flushed(session.into_iter(), &current)
            };
            if done {
                tracing::info!(peer = %p.config.name, "removed peer stopped: its pending removals are done");
                self.stop_peer(i, StopReason::PeerRemoved).await;
            } else {
                i += 1;
            }
        }
    }

    async fn stop_all(&mut self, reason: StopReason) {
        if let Some(h) = self.health.take() {
            h.stop();
        }
        let stops: Vec<_> = std::mem::take(&mut self.peers)
            .into_iter()
            .map(|p| {
                p.forwarder.abort();
                let name = p.config.name.clone();
                let reason = reason.clone();
                tokio::spawn(async move {
                    if tokio::time::timeout(PEER_STOP_WAIT, p.handle.shutdown(reason))
                        .await
                        .is_err()
                    {
                        tracing::warn!(peer = %name, "peer did not stop in time");
                    }
                })
            })
            .collect();
        for s in stops {
            let _ = s.await;
        }
        if let Some(l) = self.listener.take() {
            l.shutdown();
        }
    }

    /// Names and session numbers of the peers whose session is established.
    fn established(&self) -> impl Iterator<Item = (&str, u64)> {
        self.peers.iter().filter_map(|p| {
            // One read: state and session number of the same snapshot.
            let status = p.status.borrow();
            (status.state == "established").then_some((p.config.name.as_str(), status.session))
        })
    }

    /// Per established peer, the routes its session last confirmed as written.
    fn confirmed(&self) -> Confirmed {
        self.flushed.confirmed(self.established())
    }

    fn all_flushed(&self) -> bool {
        let current = self.routes_tx.borrow().clone();
        self.flushed.all_flushed(self.established(), &current)
    }

    /// Publishes `core`'s desired routes to the peers, if they changed. They are looked
    /// at only when the core says something they are made of changed, and then only
    /// the prefixes of the services that moved, patched into a copy of the routes
    /// published last (issue 13: building and comparing the routes of 1,000 services
    /// took ~0.45 ms between a state change and its UPDATE).
    fn send_routes(&mut self, core: &mut Core) -> Option<RoutesSent> {
        let version = core.routes_version();
        if self.routes_version == Some(version) {
            return None;
        }
        self.routes_version = Some(version);
        let previous = Arc::clone(&self.routes_tx.borrow());
        let (next, sent) = match core.take_routes_update() {
            RoutesUpdate::Full(desired) => {
                if *previous == desired {
                    return None;
                }
                (desired, RoutesSent::Full(previous))
            }
            RoutesUpdate::Patch(mut patch) => {
                patch.retain(|(p, a)| previous.get(p) != a.as_ref());
                if patch.is_empty() {
                    return None;
                }
                let mut next = RibOut::clone(&previous);
                for (prefix, route) in &patch {
                    match route {
                        Some(attrs) => next.insert(*prefix, attrs.clone()),
                        None => next.remove(prefix),
                    };
                }
                debug_assert_eq!(next, core.desired(), "patched routes differ from a rebuild");
                patch.sort_unstable_by_key(|(p, _)| *p);
                (next, RoutesSent::Patch(previous, patch))
            }
        };
        self.routes_tx.send_replace(Arc::new(next));
        Some(sent)
    }

    /// A check's state change (its task recorded the result in its `/status` record and
    /// metrics already).
    fn on_check(&mut self, core: &mut Core, event: &CheckEvent) {
        core.on_probe(event, SystemTime::now());
        let config = core.config();
        let (Some(service), Some(check)) = (
            config.services.get(event.service),
            config
                .services
                .get(event.service)
                .and_then(|s| s.checks.get(event.check)),
        ) else {
            return;
        };
        if let Some(t) = event.transition {
            // Logged once the routes are published (`log_check_transitions`).
            self.check_transitions.push(CheckTransitionLog {
                service: service.name.clone(),
                check: check.name.clone(),
                transition: t,
                detail: event.outcome.detail.clone(),
            });
        }
    }

    fn log_check_transitions(&mut self) {
        for t in self.check_transitions.drain(..) {
            tracing::info!(
                service = %t.service,
                check = %t.check,
                transition = %t.transition,
                detail = %t.detail,
                "check state changed"
            );
        }
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Established { peer, capabilities } => {
                tracing::info!(%peer, capabilities = %capabilities.join(","), "session established");
                self.flushed.session_changed(&peer);
            }
            PeerEvent::Down { peer, reason } => {
                tracing::warn!(%peer, %reason, "session down");
                self.flushed.session_changed(&peer);
            }
            PeerEvent::ServiceRoutes { peer, routes } => {
                tracing::debug!(%peer, routes = routes.len(), "service routes received back");
            }
            PeerEvent::Flushed {
                peer,
                session,
                routes,
                sent,
            } => {
                self.flushed.flushed(peer, session, routes, sent);
            }
            PeerEvent::Crashed { peer, message } => {
                tracing::error!(%peer, %message, "peer task crashed; restarting it");
            }
        }
    }

    /// Whether the drain file poll has anything to do: a service with a `drain_file`, or
    /// a failed state file write to try again.
    fn needs_poll(&self) -> bool {
        self.state.needs_retry() || self.drain_files
    }

    /// A state file write that failed is tried again (with the drain file poll).
    fn retry_state_write(&mut self) {
        // Logged at error by the first failure and shown in /status; not every 250 ms.
        if let Err(e) = self.state.retry(SystemTime::now()) {
            tracing::debug!(error = %e, "state file write failed again");
        }
    }

    fn poll_drain_files(&mut self, core: &mut Core) {
        let files: Vec<(usize, bool)> = core
            .config()
            .services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.drain_file.as_ref().map(|f| (i, f.exists())))
            .collect();
        for (i, present) in files {
            core.set_drain_file(i, present);
        }
    }

    async fn on_control(&mut self, core: &mut Core, request: ControlRequest) {
        if request.reply.is_closed() {
            // The server answered 503 (timeout) already: carrying the request out now
            // would do what the operator was told had failed.
            tracing::warn!(
                command = ?request.command,
                "control request skipped: its caller gave up waiting and got a 503"
            );
            return;
        }
        let reply = match request.command {
            ControlCommand::Drain {
                service,
                force,
                reason,
            } => {
                tracing::info!(%service, force, reason = reason.as_deref().unwrap_or(""), "drain requested by operator");
                let reason = reason.unwrap_or_default();
                let outcome = core.drain(&service, force, reason.clone());
                saved::drained(&mut self.state, outcome, &service, force, &reason).into()
            }
            ControlCommand::Undrain { service } => {
                tracing::info!(%service, "undrain requested by operator");
                let outcome = core.undrain(&service);
                saved::undrained(&mut self.state, outcome, &service).into()
            }
            ControlCommand::Check { service } => match self.health.as_ref() {
                Some(h) if h.check_now_by_name(&service) => {
                    ControlReply::Ok(format!("service {service}: checks started"))
                }
                _ => ControlOutcome::UnknownService(service).into(),
            },
            ControlCommand::Reload => {
                // Answered once the config is read and applied (or rejected).
                self.begin_reload(core, Asked::by_request(request.reply));
                return;
            }
        };
        // The server may have given up waiting meanwhile (a reload can be slow).
        let _ = request.reply.send(reply);
    }

    /// A reload (SIGHUP, `POST /reload`): RELOADING=1 and the config file's read starts
    /// off the loop (or queues behind the read in flight); [`Shell::reload_read`] applies
    /// it. Control requests among `asked` are answered with the outcome.
    fn begin_reload(&mut self, core: &Core, asked: Asked) {
        let Some(path) = self.options.config_path.clone() else {
            self.systemd.reloading();
            let no_file = "running the embedded default config: there is no file to reload";
            self.reload_done(Err(vec![no_file.to_string()]), asked);
            return;
        };
        if self
            .config_read
            .request(&path, Arc::clone(core.config()), asked)
        {
            self.systemd.reloading();
            tracing::info!(path = %path.display(), "reload: reading the config");
        }
    }

    /// The config read ended: applies the new config (a rejected one changes nothing),
    /// answers who asked, then starts the reload queued meanwhile, if any. A reload only
    /// control requests asked for, each answered 503 already, is not applied.
    async fn reload_read(&mut self, core: &mut Core, loaded: Loaded, asked: Asked) {
        if asked.abandoned() {
            tracing::warn!("reload skipped: every POST /reload that asked for it was answered 503 (timeout) while the config was read");
            self.systemd.ready(&self.status_tx.borrow());
        } else {
            let result = match loaded {
                Ok(read) => self.try_reload(core, read).await,
                Err(errors) => Err(errors),
            };
            self.reload_done(result, asked);
        }
        if let Some(queued) = self.config_read.take_queued() {
            self.begin_reload(core, queued);
        }
    }

    /// Records a reload's outcome (metrics, `/status` `daemon.last_reload`), READY=1, and
    /// answers the control requests that asked for it.
    fn reload_done(&mut self, result: Result<String, Vec<String>>, asked: Asked) {
        self.metrics.reload(result.is_ok());
        self.last_reload = Some(ReloadStatus {
            at: rfc3339(SystemTime::now()),
            ok: result.is_ok(),
            errors: result.as_ref().err().cloned().unwrap_or_default(),
        });
        if let Err(errors) = &result {
            tracing::error!(errors = %errors.join("; "), "reload rejected; the running config stays");
        }
        // Accepted or rejected, the daemon runs on (the next turn publishes the new summary).
        self.systemd.ready(&self.status_tx.borrow());
        for waiter in asked.waiters {
            // The server may have given up waiting meanwhile (a reload can be slow).
            let _ = waiter.send(match &result {
                Ok(message) => ControlReply::Ok(message.clone()),
                Err(errors) => ControlReply::Rejected(errors.clone()),
            });
        }
    }

    /// Applies the candidate config `config_read` read, if the running daemon can take it.
    async fn try_reload(&mut self, core: &mut Core, read: Read) -> Result<String, Vec<String>> {
        let Read {
            config: new,
            token,
            fleet,
            probes,
        } = read;
        let path = self.options.config_path.clone().unwrap_or_default();
        let old = Arc::clone(core.config());
        let mut refused = Vec::new();
        if new.bgp_listen != old.bgp_listen {
            refused.push("bgp.listen cannot change at run time: restart the daemon".to_string());
        }
        if new.status.fleet_listen != old.status.fleet_listen {
            refused.push(
                "status.fleet_listen cannot change at run time: restart the daemon".to_string(),
            );
        }
        if new.status.listen != old.status.listen {
            refused.push("status.listen cannot change at run time: restart the daemon".to_string());
        }
        if new.router_id != old.router_id || new.local_asn != old.local_asn {
            refused.push(
                "router_id and local_asn cannot change at run time: restart the daemon".to_string(),
            );
        }
        let token = match token {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                refused.push(e);
                None
            }
            None => None,
        };
        if new.state_dir != old.state_dir {
            refused.push("state_dir cannot change at run time: restart the daemon".to_string());
        }
        // The fleet file is read again and validated with the config; the candidate is
        // judged against the *new* fleet (its sites, min_sites) and the view carried to it.
        let next_fleet = super::fleet_guard::prepare_fleet(self.guard.as_ref(), &new, fleet)
            .unwrap_or_else(|errors| {
                refused.extend(errors);
                None
            });
        if let Some(next) = &next_fleet {
            for rejection in crate::guard::static_check::check_reload(
                &next.fleet,
                &next.site,
                Some(&old),
                &new,
                &next.view,
                Instant::now(),
                &crate::guard::static_check::LocalSystem,
            ) {
                refused.push(format!("all-sites guard: {rejection}"));
            }
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let new = Arc::new(new);

        // Checks: restart the runner only when a service's checks changed; the core keeps
        // the state of unchanged services.
        let fork = if checks_changed(&old, &new) {
            // Checks that stay the same (name and target) continue from their state, as
            // the core keeps it: a reload must not send every check back to unknown. The
            // probes were built with the read (`config_read`; reloads are read one at a
            // time, so the running config is the one the read compared with).
            let probes = probes
                .unwrap_or_else(|| Ok(Vec::new()))
                .map_err(|e| vec![e])?;
            // The new runner records into copies of the records (`Core::fork_checks`): a
            // result of the old one still on its way cannot land in them.
            let fork = core.fork_checks(&new);
            let (checks_tx, checks_rx) = check_channels(&new, fork.lives(), &self.metrics);
            let runner = HealthRunner::start_built(
                &new.services,
                probes,
                checks_tx,
                RunnerOptions::default(),
                |service, check| fork.state(&service.name, check),
            )
            .map_err(|e| vec![format!("health checks: {e}")])?;
            if let Some(old_runner) = self.health.replace(runner) {
                old_runner.stop();
            }
            self.new_checks_rx = Some(checks_rx);
            Some(fork)
        } else {
            None
        };
        // With a fleet (running, or started by this reload), what the reload takes away
        // waits for the guard.
        core.guard_removals(next_fleet.is_some());
        core.reconfigure(Arc::clone(&new), Instant::now(), SystemTime::now());
        if let Some(fork) = fork {
            core.adopt_checks(fork);
        }
        // A service that comes back is drained as the operator left it.
        saved::restore_drains(core, &self.state, false);
        self.metrics
            .retain_checks(new.services.iter().flat_map(|s| {
                s.checks
                    .iter()
                    .map(move |c| (s.name.as_str(), c.name.as_str()))
            }));
        // New services and changed drain file paths: look now, before the next
        // evaluation, so a drained service is never announced for a poll period.
        self.drain_files = has_drain_files(&new);
        self.poll_drain_files(core);
        self.local.reconfigure(&new.services);
        self.token.send_replace(token);
        let fleet_change = super::fleet_guard::apply_fleet(&mut self.guard, next_fleet);
        self.fleet_key.send_replace(fleet_key(self.guard.as_ref()));

        // Peers: keep the unchanged ones untouched (their sessions stay up), replace the
        // changed ones, stop the removed ones, start the new ones.
        let (mut kept, mut replaced, mut removed, mut added) = (0, 0, 0, 0);
        let (mut retuned, mut retiring) = (0, 0);
        if !self.options.dry_run {
            let mut i = 0;
            while i < self.peers.len() {
                let name = self.peers[i].config.name.clone();
                match new.peers.iter().find(|p| p.name == name) {
                    Some(p) if *p == self.peers[i].config => {
                        self.peers[i].retiring = false;
                        kept += 1;
                        i += 1;
                    }
                    // Only `bfd` changed: re-tune the BFD session, keep the BGP session (the
                    // peer task needs the BFD task, which starts with the first `bfd` peer).
                    Some(p)
                        if only_bfd_changed(&self.peers[i].config, p)
                            && (p.bfd.is_none() || self.bfd.is_some()) =>
                    {
                        self.peers[i].handle.set_bfd(p.bfd).await;
                        self.peers[i].config = p.clone();
                        retuned += 1;
                        i += 1;
                    }
                    Some(p) => {
                        let p = p.clone();
                        self.stop_peer(i, StopReason::ConfigChanged).await;
                        self.start_peer(&new, p, false).await;
                        replaced += 1;
                    }
                    // The last peer of a family whose routes are now pending removal: its
                    // session is what keeps them announced while the guard decides.
                    None if core.needs_peer(&self.peers[i].config) => {
                        if !self.peers[i].retiring {
                            tracing::warn!(peer = %name, "peer removed from the config is the last to carry routes pending removal: it stays up until the all-sites guard lets them go");
                        }
                        self.peers[i].retiring = true;
                        retiring += 1;
                        i += 1;
                    }
                    None => {
                        self.stop_peer(i, StopReason::PeerRemoved).await;
                        removed += 1;
                    }
                }
            }
            for p in &new.peers {
                if !self.peers.iter().any(|q| q.config.name == p.name) {
                    self.start_peer(&new, p.clone(), false).await;
                    added += 1;
                }
            }
        }
        self.generation += 1;
        self.loaded_at = SystemTime::now();
        let mut message = format!(
            "config generation {} loaded from {}: peers kept {kept}, bfd re-tuned {retuned}, replaced {replaced}, removed {removed}, added {added}",
            self.generation,
            path.display()
        );
        if retiring > 0 {
            message.push_str(&format!(
                ", removed but kept up for pending removals {retiring}"
            ));
        }
        if let Some(change) = fleet_change {
            message.push_str("; ");
            message.push_str(&change);
        }
        tracing::info!("{message}");
        Ok(message)
    }

    /// Publishes the status document; true when it changed.
    fn publish(&mut self, core: &mut Core) -> bool {
        let now = Instant::now();
        let wall = SystemTime::now();
        let config = Arc::clone(core.config());
        let peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|p| p.status.borrow().clone())
            .collect();
        let up: Vec<(String, bool)> = peers
            .iter()
            .map(|p| (p.name.clone(), p.state == "established"))
            .collect();
        let guard_of = |i: usize| match &self.guard {
            Some(g) => g.status(&config.services[i].name),
            None => GuardStatus {
                decision: "disabled".to_string(),
                reason: "no fleet configured".to_string(),
                intent: "none".to_string(),
                sites_announcing: Vec::new(),
                min_sites: 0,
            },
        };
        // Only the entries of services that changed are built again (issue 13).
        let all = self.parts_peers != up || self.service_parts.len() != config.services.len();
        let stale = core.take_stale_statuses();
        let which: Box<dyn Iterator<Item = usize>> = if all {
            Box::new(0..config.services.len())
        } else {
            Box::new(stale.into_iter())
        };
        let rebuilt: Vec<(usize, Arc<crate::status::model::ServiceStatus>)> = which
            .filter_map(|i| {
                let s = core.service_status_of(i, now, wall, &up, guard_of(i))?;
                Some((i, Arc::new(s)))
            })
            .collect();
        let parts_changed = all || !rebuilt.is_empty();
        if all {
            self.service_parts = rebuilt.iter().map(|(_, s)| Arc::clone(s)).collect();
            self.parts_peers = up;
        }
        for (i, part) in rebuilt {
            if let Some(p) = self.service_parts.get_mut(i) {
                *p = part;
            }
        }
        // The entries are copied (a pointer each) only when one of them was rebuilt;
        // otherwise the published ones are kept below.
        let services = if parts_changed {
            self.service_parts.clone()
        } else {
            Vec::new()
        };
        let on_the_wire = self.flushed.on_the_wire(self.established());
        let desired = self.routes_tx.borrow().clone();
        let report = self
            .guard
            .as_mut()
            .map(|g| g.report(core, &desired, &on_the_wire));
        let pending_removals = self
            .guard
            .as_ref()
            .map(|g| g.removal_status(core))
            .unwrap_or_default();
        let doc = StatusDocument {
            daemon: DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_string(),
                router_id: config.router_id.to_string(),
                local_asn: config.local_asn,
                site: config.fleet.as_ref().map(|f| f.site.clone()),
                uptime_seconds: now.duration_since(self.started).as_secs(),
                started_at: rfc3339(self.started_wall),
                config_generation: self.generation,
                config_source: config.source.clone(),
                config_loaded_at: rfc3339(self.loaded_at),
                last_reload: self.last_reload.clone(),
                ready: self.ready,
                stopping: self.stopping,
                stop_reason: self.stop_reason.clone(),
                state_file: self.state.status(),
            },
            services,
            peers,
            bfd: self
                .bfd
                .as_ref()
                .map(|h| h.daemon_status().borrow().clone()),
            guard: report,
            pending_removals,
            fleet: self.guard.as_mut().map(FleetGuard::fleet_status),
        };
        let mut doc = doc;
        let changed = self.status_tx.send_if_modified(|old| {
            // uptime changes every second; only republish on a real change or once a second.
            // The service entries compare by identity: one rebuilt is one that changed.
            let old_services = std::mem::take(&mut old.services);
            let new_services = if parts_changed {
                std::mem::take(&mut doc.services)
            } else {
                Vec::new()
            };
            let same_services = !parts_changed
                || (new_services.len() == old_services.len()
                    && new_services
                        .iter()
                        .zip(&old_services)
                        .all(|(a, b)| Arc::ptr_eq(a, b)));
            if same_services && *old == doc {
                old.services = old_services;
                false
            } else {
                doc.services = if parts_changed {
                    new_services
                } else {
                    old_services
                };
                *old = doc;
                true
            }
        });
        // The intent protocol: an intent counts as published once the status endpoint
        // serves it, which is now.
        if let Some(g) = self.guard.as_mut() {
            g.published(Instant::now());
        }
        changed
    }
}

/// Whether some service of `config` has a `drain_file` to poll.
fn has_drain_files(config: &Config) -> bool {
    config.services.iter().any(|s| s.drain_file.is_some())
}

/// `new` differs from `old` in `bfd` and nothing else.
fn only_bfd_changed(old: &PeerConfig, new: &PeerConfig) -> bool {
    old.bfd != new.bfd
        && PeerConfig {
            bfd: old.bfd,
            ..new.clone()
        } == *old
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
