//! Check schedules and hooks through the real binary, on loopback and without peers (a
//! check-only set-up; nothing is announced): `fast_interval` is the period while a check
//! is changing state and `interval` once it is stable (docs/config.md, `[[service.check]]`);
//! a hook still running at `hook_timeout` is killed with its process group and the daemon
//! goes on, running the next change's hook.
//!
//! Every wait is bounded; nothing asserts on speed: the intervals are set so far apart (an
//! hour against 100 ms) that the wrong one could not pass within the bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::process::Process;
use super::*;

/// The daemon under test, its status port, token and working directory.
struct Binary {
    process: Process,
    port: u16,
    dir: tempfile::TempDir,
}

const TOKEN: &str = "check-timing-token";

impl Binary {
    /// Starts `anyguard run` with `[status]` on a free port (with a control token) and
    /// `service` (TOML of one `[[service]]` with its checks; `{dir}` is the test's
    /// directory), and waits for `/status` to answer.
    async fn start(service: &str) -> Self {
        Self::start_config(|dir, port| {
            std::fs::write(dir.join("token"), TOKEN).unwrap();
            format!(
                "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{token}\"\n\n{service}",
                token = dir.join("token").display(),
                service = service.replace("{dir}", &dir.display().to_string()),
            )
        })
        .await
    }

    /// Starts `anyguard run` with the config `text(dir, status_port)` gives.
    async fn start_config(text: impl FnOnce(&Path, u16) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = text(dir.path(), port);
        let config = dir.path().join("anyguard.toml");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("anyguard.log")).unwrap();
        let process = Process(
            std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
                .args([
                    "--log-format",
                    "human",
                    "--log-level",
                    "debug",
                    "run",
                    "--config",
                ])
                .arg(&config)
                .env("STATE_DIRECTORY", dir.path())
                .env_remove("NOTIFY_SOCKET")
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let b = Binary { process, port, dir };
        b.wait_doc("/status answering", |_| true).await;
        b
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("anyguard.log")).unwrap_or_default()
    }

    /// The status document (`anyguard status --json`'s client), or None while the
    /// endpoint does not answer.
    async fn doc(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let text = anyguard::status::client::run(&url, true, false)
            .await
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Polls `/status` (bounded: 10 s) until `want` holds; returns that document.
    async fn wait_doc(
        &self,
        what: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..200 {
            if let Some(doc) = self.doc().await {
                if want(&doc) {
                    return doc;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no {what} within 10 s; last {:?}\nlog:\n{}",
            self.doc().await,
            self.log()
        );
    }

    /// The first check's state once it is `state` (bounded wait).
    async fn wait_check(&self, state: &str) {
        self.wait_doc(&format!("check {state}"), |d| {
            d["services"][0]["checks"][0]["state"] == state
        })
        .await;
    }

    /// `POST /services/web/check`: probe now (the operator's "check now").
    async fn check_now(&self) {
        let (code, body) = post(self.port, "/services/web/check", TOKEN, "").await;
        assert_eq!(code, 200, "{body}");
    }

    async fn stop(mut self) {
        self.process.signal(Signal::SIGTERM);
        let status = self.process.exit().await;
        assert!(status.success(), "exit {status:?}; log:\n{}", self.log());
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_check_probes_at_fast_interval_while_failing_or_recovering_and_at_interval_when_stable() {
    // interval 1 h, fast_interval 100 ms, rise = fall = 3. The check logs each probe.
    let b = Binary::start(
        r#"[[service]]
name = "web"
prefixes = ["203.0.113.0/24"]

[[service.check]]
type = "command"
argv = ["sh", "-c", "echo probe >> {dir}/probes; test ! -e {dir}/fail"]
interval = "1h"
fast_interval = "100ms"
timeout = "5s"
rise = 3
fall = 3
"#,
    )
    .await;
    let probes = || lines(&b.path("probes")).len();

    // The first probe is splayed somewhere in the first hour: ask for it now. The two
    // further passes that rise needs come at fast_interval (at interval: two hours).
    b.check_now().await;
    b.wait_check("up").await;
    assert_eq!(probes(), 3, "{}", b.log());
    // Stable: the next probe is an hour away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        probes(),
        3,
        "a stable check probes at interval: {}",
        b.log()
    );

    // Failing: the first failure (asked for) starts the fast schedule, fall = 3.
    std::fs::write(b.path("fail"), b"").unwrap();
    b.check_now().await;
    b.wait_check("down").await;
    assert_eq!(probes(), 6, "{}", b.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(probes(), 6, "a stable (down) check probes at interval");

    // Recovering: the same, back up.
    std::fs::remove_file(b.path("fail")).unwrap();
    b.check_now().await;
    b.wait_check("up").await;
    assert_eq!(probes(), 9, "{}", b.log());
    b.stop().await;
}

/// Polls `f` every 50 ms (bounded: 10 s) until it gives something.
async fn poll<T>(b: &Binary, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {what} within 10 s; log:\n{}", b.log());
}

/// True while `pid` exists (and is not a zombie nobody reaped).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) S ...": the state letter follows the last ')'.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    kill(Pid::from_raw(pid), None).is_ok() && !matches!(state, Some("Z") | None)
}

#[tokio::test]
async fn a_hook_that_hangs_is_killed_with_its_process_group_at_hook_timeout_and_the_daemon_goes_on()
{
    // The hook of `up` hangs (a shell waiting for a background sleep of a minute); the
    // hook of the next change records itself and ends.
    let b = Binary::start(
        r#"[[service]]
name = "web"
prefixes = ["203.0.113.0/24"]
hook = ["sh", "-c", "echo \"$STATE shell $$\" >> {dir}/hooks; if [ \"$STATE\" = up ]; then sleep 60 & echo \"up child $!\" >> {dir}/hooks; wait; fi"]
hook_timeout = "500ms"

[[service.check]]
type = "command"
argv = ["sh", "-c", "test ! -e {dir}/fail"]
interval = "100ms"
rise = 1
fall = 1
"#,
    )
    .await;
    let hooks = || lines(&b.path("hooks"));
    let pid_of = |lines: &[String], prefix: &str| -> Option<i32> {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|p| p.trim().parse().ok())
    };

    // The `up` hook starts, with its child.
    let (shell, child) = poll(&b, "the up hook", || {
        let h = hooks();
        pid_of(&h, "up shell ").zip(pid_of(&h, "up child "))
    })
    .await;

    // At hook_timeout both are killed (they would live a minute otherwise).
    let gone = || (!alive(shell) && !alive(child)).then_some(());
    poll(&b, "the hung hook and its child killed", gone).await;
    let killed = "timed out after 500ms, process group killed";
    let logged = || b.log().contains(killed).then_some(());
    poll(&b, "the hook's time-out in the log", logged).await;

    // The daemon goes on: the next change is decided and its hook runs.
    std::fs::write(b.path("fail"), b"").unwrap();
    b.wait_doc("service down", |d| d["services"][0]["state"] == "down")
        .await;
    poll(&b, "the next change's hook", || {
        pid_of(&hooks(), "down shell ")
    })
    .await;
    b.stop().await;
}

/// The configuration the Debian package installs as /etc/anyguard/anyguard.toml (a
/// conffile) announces nothing until edited: `anyguard check` (the unit's ExecStartPre)
/// accepts it, it has no peer and no service, and the daemon running it (its status
/// endpoint moved to a free port, the only change) opens no session and decides no route.
#[tokio::test]
async fn the_packaged_config_passes_check_and_the_daemon_running_it_sends_no_route() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/deb/anyguard.toml");
    let config = anyguard::config::load(&shipped).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.peers.is_empty(), "{:?}", config.peers);
    assert!(config.services.is_empty(), "{:?}", config.services);
    let check = Command::new(env!("CARGO_BIN_EXE_anyguard"))
        .args(["check", "--no-fleet", "--config"])
        .arg(&shipped)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // Its commented example, uncommented, is a valid config with a peer and a service.
    let text = std::fs::read_to_string(&shipped).unwrap();
    let example = text
        .find("# [bgp]")
        .unwrap_or_else(|| panic!("no example: {text}"));
    let uncommented: String = text[example..]
        .lines()
        .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
        .collect();
    let edited = format!("{}{uncommented}", &text[..example]);
    let edited =
        anyguard::config::load_str(&edited, "edited.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((edited.peers.len(), edited.services.len()), (1, 1));

    let listen = "listen = \"127.0.0.1:9180\"";
    assert!(text.contains(listen), "{text}");
    let b = Binary::start_config(|_, port| {
        text.replace(listen, &format!("listen = \"127.0.0.1:{port}\""))
    })
    .await;
    let doc = b.wait_doc("ready", |d| d["daemon"]["ready"] == true).await;
    assert_eq!(doc["peers"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["services"], serde_json::json!([]), "{doc}");
    // A few drain polls and loop turns later, still no route was decided.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = b.log();
    assert!(log.contains("anyguard running"), "{log}");
    assert!(!log.contains("desired routes changed"), "{log}");
    b.stop().await;
}
