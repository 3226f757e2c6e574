//! The `anyguard` binary under a notify-type systemd unit (contrib/anyguard.service), with
//! the test in systemd's place: `NOTIFY_SOCKET` is a datagram socket the test bound,
//! `WATCHDOG_USEC` is small. READY=1 only once `/status` answers and the peer is started,
//! STATUS= when the summary changes (not on every turn of the loop), WATCHDOG=1 at half the
//! period from the coordinator loop (a stuck loop stops pinging), RELOADING=1 … READY=1
//! around a reload, STOPPING=1 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use tokio::net::UnixDatagram;

use super::process::Process;
use super::*;

/// systemd's `WatchdogSec=` for these tests: pings are due every 200 ms.
const WATCHDOG: Duration = Duration::from_millis(400);
const HALF: Duration = Duration::from_millis(200);

/// The test's end of `NOTIFY_SOCKET`.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every message received, in order (for failure messages).
    seen: Vec<String>,
}

impl Notifications {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        Self {
            socket: UnixDatagram::bind(&path).unwrap(),
            path,
            seen: Vec::new(),
        }
    }

    /// The next message within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(wait, self.socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        let msg = String::from_utf8(buf[..n].to_vec()).unwrap();
        self.seen.push(msg.clone());
        Some(msg)
    }

    /// The next message that is not a watchdog ping (bounded: 10 s).
    async fn next_not_ping(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(m) if m == "WATCHDOG=1\n" => {}
                Some(m) => return m,
                None => break,
            }
        }
        panic!(
            "no notification but pings within 10 s; seen {:?}",
            self.seen
        );
    }

    /// Skips messages until one satisfies `want` (bounded: 10 s).
    async fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(m) if want(&m) => return m,
                Some(_) => {}
                None => break,
            }
        }
        panic!("no {what} within 10 s; seen {:?}", self.seen);
    }

    /// Every message received during `window`.
    async fn during(&mut self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut got = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(m) => got.push(m),
                None => break,
            }
        }
        got
    }
}

fn spawn(config: &Path, dir: &Path, notify: &Notifications, extra_env: &[(&str, &str)]) -> Process {
    let log = std::fs::File::create(dir.join("anyguard.log")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"));
    command
        .arg("run")
        .arg("--log-format")
        .arg("json")
        .arg("--config")
        .arg(config)
        .env("STATE_DIRECTORY", dir)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    Process(command.spawn().unwrap())
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter().filter(|m| *m == "WATCHDOG=1\n").count()
}

#[tokio::test]
async fn the_binary_sends_ready_status_watchdog_reloading_and_stopping_to_systemd() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let status_port = free_port();
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    std::fs::write(&path, &text).unwrap();
    let mut notify = Notifications::bind(dir.path());
    let mut daemon = spawn(&path, dir.path(), &notify, &[]);

    // The first message is READY=1 with the summary; by then /status answers, and serves
    // the peer (its task started).
    let ready = notify.next(Duration::from_secs(10)).await;
    let ready = ready.unwrap_or_else(|| panic!("no READY=1 within 10 s"));
    assert!(
        ready.starts_with("READY=1\nSTATUS=ready; services 0/1 up (web "),
        "{ready:?}"
    );
    assert!(ready.ends_with("; peers 0/1 established\n"), "{ready:?}");
    let doc = status_doc(status_port).await;
    assert_eq!(doc["daemon"]["ready"], true, "{doc}");
    assert_eq!(doc["peers"][0]["name"], "edge", "{doc}");

    // The session comes up and the service rises: STATUS= follows each change.
    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(PEER_ASN, PEER_ID, 0, true, false))
        .await;
    assert_v4_announcement(&peer.expect_update().await, 0);
    notify
        .until(
            "STATUS= with the service up and the peer established",
            |m| m == "STATUS=ready; services 1/1 up; peers 1/1 established\n",
        )
        .await;

    // Steady state: pings at about half the period, and no STATUS= (nothing changed,
    // although the loop turns for every check result and drain file poll).
    let start = Instant::now();
    let window = notify.during(Duration::from_secs(3)).await;
    let elapsed = start.elapsed();
    let n = pings(&window);
    let most = usize::try_from(elapsed.as_millis() / HALF.as_millis()).unwrap() + 2;
    assert!(
        n >= 3 && n <= most,
        "{n} pings in {elapsed:?} (at most {most}): {window:?}"
    );
    assert_eq!(n, window.len(), "only pings in a steady state: {window:?}");

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    std::fs::write(
        &path,
        text.replace(
            "[[service.check]]",
            "communities = [\"65010:42\"]\n\n[[service.check]]",
        ),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let reloading = notify.next_not_ping().await;
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading:?}");
    assert_eq!(
        notify.next_not_ping().await,
        "READY=1\nSTATUS=ready; services 1/1 up; peers 1/1 established\n"
    );
    let u = peer.expect_update().await;
    assert_eq!(communities(&u), vec![Community::new(65010, 42)], "{u:?}");
    // /status shows the new generation from the loop's next turn on.
    wait_generation(status_port, 2).await;

    // SIGTERM: STOPPING=1 at once, then the drain, and exit 0.
    daemon.signal(Signal::SIGTERM);
    assert_eq!(
        notify.next_not_ping().await,
        "STOPPING=1\nSTATUS=stopping; services 1/1 up; peers 1/1 established\n"
    );
    let status = daemon.exit().await;
    let logs = std::fs::read_to_string(dir.path().join("anyguard.log")).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; log:\n{logs}");
    // Every log line of the peer's task carries its name and address (status::logging).
    let peer_line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "state" && v["fields"]["to"] == "established");
    let peer_line = peer_line.unwrap_or_else(|| panic!("no state line to established:\n{logs}"));
    assert_eq!(peer_line["span"]["peer"], "edge", "{peer_line}");
    assert_eq!(peer_line["span"]["address"], "127.0.0.1", "{peer_line}");
    // The drain showed in the summary on its way out.
    let rest = notify.during(Duration::from_millis(100)).await;
    assert!(
        notify
            .seen
            .iter()
            .any(|m| m.starts_with("STATUS=stopping; services 0/1 up")),
        "{:?} {rest:?}",
        notify.seen
    );
    drop(peer);
}

/// The binary on a config file that is a FIFO, which gives nothing until the test writes
/// it (as a config on a hung network file system would); started: READY=1 has come.
struct OnFifo {
    fifo: PathBuf,
    text: String,
    status_port: u16,
    notify: Notifications,
    daemon: Process,
    _dir: tempfile::TempDir,
    _target: Target,
    _listener: TcpListener,
}

impl OnFifo {
    async fn start() -> Self {
        let target = Target::start(Answer::Pass).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("anyguard.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let status_port = free_port();
        let text = config_text(
            &Setup::default(),
            listener.local_addr().unwrap(),
            status_port,
            target.addr,
        );
        let first = Self::writer(fifo.clone(), text.clone());
        let mut notify = Notifications::bind(dir.path());
        let daemon = spawn(&fifo, dir.path(), &notify, &[]);
        first.join().unwrap();
        let ready = notify.next_not_ping().await;
        assert!(ready.starts_with("READY=1\n"), "{ready:?}");
        OnFifo {
            fifo,
            text,
            status_port,
            notify,
            daemon,
            _dir: dir,
            _target: target,
            _listener: listener,
        }
    }

    /// A write of `text` to the FIFO: it blocks until the daemon opens it to read.
    fn writer(fifo: PathBuf, text: String) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    }

    /// Gives the daemon's read `text` (waits until it opens the FIFO).
    fn feed(&self, text: &str) {
        Self::writer(self.fifo.clone(), text.to_owned())
            .join()
            .unwrap();
    }
}

/// Polls `/status` (bounded: 2 s) until `daemon.config_generation` is `want`.
async fn wait_generation(port: u16, want: u64) {
    let mut generation = serde_json::Value::Null;
    for _ in 0..100 {
        generation = status_doc(port).await["daemon"]["config_generation"].clone();
        if generation == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("config generation {generation}, not {want}");
}

/// A reload whose config read hangs does not stop the coordinator loop: the read runs off
/// the loop (coordinator::config_read), so the watchdog pings go on while the config file
/// (a FIFO) gives nothing; the reload completes once the test writes the file. A second
/// SIGHUP during the read is queued and reads the file again after it.
#[tokio::test]
async fn a_reload_whose_config_read_hangs_does_not_stop_the_loop_or_its_watchdog_pings() {
    let mut f = OnFifo::start().await;
    let before = f.notify.during(Duration::from_secs(1)).await;
    assert!(pings(&before) >= 2, "{before:?}");

    // SIGHUP: RELOADING=1, then the read blocks on the FIFO, off the loop.
    f.daemon.signal(Signal::SIGHUP);
    let reloading = f.notify.next_not_ping().await;
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading:?}");
    // A second reload asked for meanwhile waits for the first read to end.
    f.daemon.signal(Signal::SIGHUP);
    // Five periods of a hung read: the loop turns and pings (at least twice per period),
    // and nothing but pings (no READY=1: the reload is not done).
    let hung = f.notify.during(WATCHDOG * 5).await;
    assert!(pings(&hung) >= 5, "{hung:?}");
    assert_eq!(
        pings(&hung),
        hung.len(),
        "only pings while the read hangs: {hung:?}"
    );
    // The loop serves /status meanwhile (the document is the running generation's).
    let doc = status_doc(f.status_port).await;
    assert_eq!(doc["daemon"]["config_generation"], 1, "{doc}");
    assert!(
        f.daemon.0.try_wait().unwrap().is_none(),
        "the process runs on"
    );

    // The file gives its text: the reload completes (READY=1), then the queued one reads
    // the file again (RELOADING=1 ... READY=1) with a changed config.
    f.feed(&f.text);
    assert!(f.notify.next_not_ping().await.starts_with("READY=1\n"));
    assert!(f.notify.next_not_ping().await.starts_with("RELOADING=1\n"));
    let changed = f.text.replace(
        "[[service.check]]",
        "communities = [\"65010:42\"]\n\n[[service.check]]",
    );
    f.feed(&changed);
    assert!(f.notify.next_not_ping().await.starts_with("READY=1\n"));
    wait_generation(f.status_port, 3).await;
    let after = f.notify.during(Duration::from_secs(1)).await;
    assert!(pings(&after) >= 2, "{after:?}");

    f.daemon.signal(Signal::SIGTERM);
    assert!(f.notify.next_not_ping().await.starts_with("STOPPING=1\n"));
    assert!(f.daemon.exit().await.success());
}

/// A daemon whose reload read hangs for ever still stops on SIGTERM: the process exits
/// without waiting for the thread still blocked in open(2) on the FIFO.
#[tokio::test]
async fn a_daemon_stops_although_its_reload_read_hangs() {
    let mut f = OnFifo::start().await;
    f.daemon.signal(Signal::SIGHUP);
    assert!(f.notify.next_not_ping().await.starts_with("RELOADING=1\n"));
    f.daemon.signal(Signal::SIGTERM);
    f.notify
        .until("STOPPING=1", |m| m.starts_with("STOPPING=1\n"))
        .await;
    assert!(f.daemon.exit().await.success());
}

/// `WATCHDOG_PID` names another process (sd_watchdog_enabled(3)): the watchdog is not
/// ours, READY=1 is sent but no ping.
#[tokio::test]
async fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anyguard.toml");
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        free_port(),
        target.addr,
    );
    std::fs::write(&path, &text).unwrap();
    let mut notify = Notifications::bind(dir.path());
    let other = std::process::id().to_string();
    let mut daemon = spawn(&path, dir.path(), &notify, &[("WATCHDOG_PID", &other)]);
    let ready = notify.next(Duration::from_secs(10)).await.unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    let window = notify.during(WATCHDOG * 3).await;
    assert_eq!(pings(&window), 0, "{window:?}");
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.exit().await.success());
}

/// README's first command, `anyguard run` with the embedded default (status on
/// 127.0.0.1:9180, BGP on 127.0.0.1:1179), and `anyguard status` without `--url` finds it;
/// under journald (`JOURNAL_STREAM`) the human log lines carry no timestamp of their own.
/// The ports are fixed by the default config: when another process holds one, the test
/// skips loudly.
#[tokio::test]
async fn the_embedded_default_runs_and_anyguard_status_finds_it_without_url() {
    for port in [9180, 1179] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            eprintln!("SKIPPED: the_embedded_default_runs_and_anyguard_status_finds_it_without_url because 127.0.0.1:{port} is taken ({e})");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut notify = Notifications::bind(dir.path());
    let log = dir.path().join("anyguard.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut daemon = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
            .arg("--log-format")
            .arg("human")
            .arg("run")
            .env("NOTIFY_SOCKET", &notify.path)
            .env("JOURNAL_STREAM", "8:12345")
            .env_remove("WATCHDOG_USEC")
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );
    let ready = notify.next_not_ping().await;
    assert!(
        ready.starts_with("READY=1\nSTATUS=ready; services "),
        "{ready:?}"
    );

    // The check (a command that passes) rises within a few seconds.
    let status = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"));
        c.arg("status");
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let mut doc = serde_json::Value::Null;
    for _ in 0..100 {
        let out = tokio::task::spawn_blocking(move || status(true))
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        doc = serde_json::from_slice(&out.stdout).unwrap();
        if doc["services"][0]["state"] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(doc["services"][0]["name"], "demo", "{doc}");
    assert_eq!(doc["services"][0]["state"], "up", "{doc}");
    assert_eq!(doc["peers"][0]["name"], "local", "{doc}");
    let tables = tokio::task::spawn_blocking(move || status(false))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&tables.stdout);
    assert!(tables.status.success(), "{tables:?}");
    assert!(text.contains("demo") && text.contains("local"), "{text}");

    daemon.signal(Signal::SIGTERM);
    // (STATUS= lines of the check rising come before it.)
    notify
        .until("STOPPING=1", |m| m.starts_with("STOPPING=1\n"))
        .await;
    let exit = daemon.exit().await;
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "exit {exit:?}; log:\n{logs}");
    assert!(logs.contains("anyguard running"), "{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let first = line.trim_start().chars().next().unwrap();
        assert!(
            !first.is_ascii_digit(),
            "a timestamp under journald: {line:?}"
        );
    }
}
