//! The config guard through the real binary (issue #6): `anyguard check` on a rollout
//! (`--fleet --site-config`), on one site's candidate against the other sites' live reports
//! (`--config [--fleet]`, served by the real status server on 127.0.0.1:0), and a live
//! reload (SIGHUP) rejected by a running daemon whose running config stays.
//!
//! Every process is started by PID and stopped by PID; every wait is bounded. Site configs
//! name peers in 198.18.0.0/15 that `check` never contacts; the daemon's only peer is a
//! fake one on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyguard::config::StatusConfig;
use anyguard::guard::report::{Intent, ServiceReport, SiteReport, REPORT_VERSION};
use anyguard::status::control::ControlRequest;
use anyguard::status::metrics::Metrics;
use anyguard::status::model::StatusDocument;
use anyguard::status::{self, client};
use anyguard_proto::Message;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::fakepeer::{self, FakeError, FakePeer};

const BIN: &str = env!("CARGO_BIN_EXE_anyguard");
/// Bound for one `anyguard check` run and for each wait on the daemon.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const WEB: &str = "203.0.113.0/24";
const WEB2: &str = "198.51.100.0/24";

/// A temporary directory holding a fleet file and site configs.
pub(crate) struct Files(pub(crate) TempDir);

impl Files {
    pub(crate) fn new() -> Self {
        Files(tempfile::tempdir().expect("temp dir"))
    }

    pub(crate) fn dir(&self) -> &Path {
        self.0.path()
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir().join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

/// `fleet.toml` with `sites` (name, status URL) and `services` (`[[service]]` bodies).
pub(crate) fn fleet_toml(sites: &[(&str, String)], services: &[&str]) -> String {
    let mut t = String::from("[poll]\ninterval = \"1s\"\ntimeout = \"500ms\"\n");
    for (name, url) in sites {
        t.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\nstatus_url = \"{url}\"\n"
        ));
    }
    for s in services {
        t.push_str(&format!("\n[[service]]\n{s}\n"));
    }
    t
}

/// Three sites whose status endpoints nobody polls in a rollout check.
fn abc() -> Vec<(&'static str, String)> {
    ["a", "b", "c"]
        .into_iter()
        .zip(1u8..)
        .map(|(s, i)| (s, format!("http://198.18.{i}.2:9180/status")))
        .collect()
}

/// A site config: one IPv4 upstream in 198.18.0.0/15, then `services` verbatim.
fn site_toml(site: &str, services: &str) -> String {
    format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[fleet]\npath = \"fleet.toml\"\n\
         site = \"{site}\"\n\n[[peer]]\nname = \"edge1\"\naddress = \"198.18.0.1\"\n\
         remote_asn = 65000\n\n{services}"
    )
}

/// `[[service]]` `web` with `prefixes`, `extra` lines, and a check that always passes.
fn web(prefixes: &[&str], extra: &str) -> String {
    service(
        "web",
        prefixes,
        extra,
        "type = \"command\"\nargv = [\"true\"]",
    )
}

pub(crate) fn service(name: &str, prefixes: &[&str], extra: &str, check: &str) -> String {
    let list: Vec<String> = prefixes.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nprefixes = [{}]\n{extra}\n[[service.check]]\n{check}\n\n",
        list.join(", ")
    )
}

/// What one run of the binary printed.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `anyguard check ARGS` in `dir`, bounded by [`WAIT`].
pub(crate) async fn check(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("anyguard check did not finish in time")
        .expect("anyguard check could not be started");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn rollout(files: &Files, sites: &[&str]) -> Run {
    let mut args = vec!["--fleet".to_owned(), "fleet.toml".to_owned()];
    for s in sites {
        args.push("--site-config".into());
        args.push(format!("{s}={s}.toml"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    check(files.dir(), &args).await
}

fn assert_rejected(run: &Run, lines: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:#?}");
    let got: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(got, lines, "{run:#?}");
    assert_eq!(run.stdout, "", "nothing is ok when something is rejected");
}

#[tokio::test]
async fn rollout_that_drains_every_site_is_rejected_naming_service_prefix_and_sites() {
    let files = Files::new();
    files.write("fleet.toml", &fleet_toml(&abc(), &[]));
    for s in ["a", "b", "c"] {
        files.write(&format!("{s}.drain"), "maintenance\n");
        let drain = format!("drain_file = \"{s}.drain\"");
        files.write(&format!("{s}.toml"), &site_toml(s, &web(&[WEB], &drain)));
    }
    let run = rollout(&files, &["a", "b", "c"]).await;
    // Relative drain files resolve against the config's directory: here the working
    // directory of `check`, as the config is given as `a.toml`.
    let drained = |s: &str| format!("{s}: drained (drain file {s}.drain exists)");
    assert_rejected(
        &run,
        &[&format!(
            "all-sites guard: service web prefix {WEB} would be announced by 0 of 3 sites \
             (min_sites 1): no site announces; {}, {}, {}",
            drained("a"),
            drained("b"),
            drained("c")
        )],
    );
}

#[tokio::test]
async fn rollout_with_different_prefixes_between_sites_is_rejected() {
    let files = Files::new();
    files.write("fleet.toml", &fleet_toml(&abc(), &[]));
    files.write("a.toml", &site_toml("a", &web(&[WEB, WEB2], "")));
    files.write("b.toml", &site_toml("b", &web(&[WEB, WEB2], "")));
    files.write("c.toml", &site_toml("c", &web(&[WEB], "")));
    let run = rollout(&files, &["a", "b", "c"]).await;
    assert_rejected(
        &run,
        &[&format!(
            "all-sites guard: service web: prefix {WEB2} is configured at a, b but not at c: \
             prefixes must be the same at every site"
        )],
    );
}

#[tokio::test]
async fn rollout_that_removes_a_fleet_service_everywhere_is_rejected() {
    let files = Files::new();
    let services = [
        "name = \"web\"\nmin_sites = 2",
        "name = \"dns\"\nmin_sites = 2\nprefixes = [\"198.51.100.53/32\"]",
    ];
    files.write("fleet.toml", &fleet_toml(&abc(), &services));
    for s in ["a", "b", "c"] {
        files.write(&format!("{s}.toml"), &site_toml(s, &web(&[WEB], "")));
    }
    let run = rollout(&files, &["a", "b", "c"]).await;
    assert_rejected(
        &run,
        &["all-sites guard: service dns (min_sites 2) would be configured at no site: removed everywhere"],
    );
}

#[tokio::test]
async fn rollout_with_a_check_command_that_does_not_exist_is_rejected() {
    let files = Files::new();
    files.write(
        "fleet.toml",
        &fleet_toml(&abc(), &["name = \"web\"\nmin_sites = 3"]),
    );
    let missing = "type = \"command\"\nargv = [\"/nonexistent/anyguard-check-web\"]";
    files.write(
        "a.toml",
        &site_toml("a", &service("web", &[WEB], "", missing)),
    );
    files.write("b.toml", &site_toml("b", &web(&[WEB], "")));
    files.write("c.toml", &site_toml("c", &web(&[WEB], "")));
    let run = rollout(&files, &["a", "b", "c"]).await;
    let not_found = "command \"/nonexistent/anyguard-check-web\" not found";
    assert_rejected(
        &run,
        &[
            &format!("all-sites guard: site a, service web: check command#0 cannot succeed: {not_found}"),
            &format!(
                "all-sites guard: service web prefix {WEB} would be announced by 2 of 3 sites \
                 (min_sites 3): announced by b, c; a: checks cannot succeed (command#0: {not_found})"
            ),
        ],
    );
}

#[tokio::test]
async fn rollout_with_an_unparsable_check_url_is_rejected_with_file_line_and_key() {
    let files = Files::new();
    files.write("fleet.toml", &fleet_toml(&abc(), &[]));
    files.write("a.toml", &site_toml("a", &web(&[WEB], "")));
    let bad = "type = \"http\"\nurl = \"http//198.18.2.10/health\"";
    let text = site_toml("b", &service("web", &[WEB], "", bad));
    files.write("b.toml", &text);
    files.write("c.toml", &site_toml("c", &web(&[WEB], "")));
    let run = rollout(&files, &["a", "b", "c"]).await;
    // The loader already refuses the URL, so the rollout is not judged at all; the message
    // points at the value.
    let line = text
        .lines()
        .position(|l| l.starts_with("url ="))
        .expect("url line")
        + 1;
    assert_eq!(run.code, Some(1), "{run:#?}");
    let expected = format!(
        "b.toml:{line}:7: service[0].check[0].url: \"http//198.18.2.10/health\" is not a valid \
         URL: invalid format"
    );
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [expected.as_str()],
        "{run:#?}"
    );
}

#[tokio::test]
async fn good_rollout_exits_zero_with_one_ok_line_per_site() {
    let files = Files::new();
    files.write(
        "fleet.toml",
        &fleet_toml(&abc(), &["name = \"web\"\nmin_sites = 2"]),
    );
    files.write("a.toml", &site_toml("a", &web(&[WEB], "")));
    files.write("b.toml", &site_toml("b", &web(&[WEB], "")));
    // c is being drained for maintenance in this rollout: two sites are enough.
    files.write("c.toml", &site_toml("c", &web(&[WEB], "disabled = true")));
    let run = rollout(&files, &["a", "b", "c"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            format!("site a (a.toml): ok (1 peers, 1 services): web {WEB} announced"),
            format!("site b (b.toml): ok (1 peers, 1 services): web {WEB} announced"),
            format!("site c (c.toml): ok (1 peers, 1 services): web {WEB} not announced (service disabled)"),
        ]
    );
    // Without c's config, c counts as not announcing, and a and b still suffice.
    let run = rollout(&files, &["a", "b"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout.lines().last(),
        Some("site c: no config given (counts as not announcing)")
    );
}

#[tokio::test]
async fn rollout_with_a_broken_fleet_file_reports_file_line_and_key() {
    let files = Files::new();
    let text = fleet_toml(&abc(), &["name = \"web\"\nmin_sites = 0"]);
    files.write("fleet.toml", &text);
    files.write("a.toml", &site_toml("a", &web(&[WEB], "")));
    let run = rollout(&files, &["a"]).await;
    let line = text
        .lines()
        .position(|l| l == "min_sites = 0")
        .expect("line")
        + 1;
    assert_rejected(
        &run,
        &[&format!(
            "fleet.toml:{line}:13: service[0].min_sites: must be between 1 and the number of \
             sites (3), got 0"
        )],
    );
}

#[tokio::test]
async fn usage_errors_exit_with_status_two() {
    let files = Files::new();
    for args in [
        &["--site-config", "a=a.toml"][..],
        &[
            "--config",
            "a.toml",
            "--site-config",
            "a=a.toml",
            "--fleet",
            "f.toml",
        ],
        &["--fleet", "fleet.toml", "--site-config", "a.toml"],
        &[],
    ] {
        let run = check(files.dir(), args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
    }
}

/// Another site's real status endpoint (the library's server on 127.0.0.1:0) serving a
/// guard report that the test changes at will.
pub(crate) struct OtherSite {
    addr: SocketAddr,
    pub(crate) doc: watch::Sender<StatusDocument>,
    _control: mpsc::Receiver<ControlRequest>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for OtherSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn report_doc(site: &str, announcing: bool, intent: Intent) -> StatusDocument {
    StatusDocument {
        guard: Some(std::sync::Arc::new(SiteReport {
            version: REPORT_VERSION,
            site: site.to_owned(),
            generation: 1,
            fleet_digest: None,
            services: vec![ServiceReport {
                name: "web".into(),
                prefixes: vec![WEB.parse().expect("prefix")],
                healthy: announcing,
                announcing,
                intent,
            }],
        })),
        ..StatusDocument::default()
    }
}

impl OtherSite {
    pub(crate) async fn start(site: &str, announcing: bool) -> Self {
        let (doc, rx) = watch::channel(report_doc(site, announcing, Intent::None));
        let metrics = Metrics::new(rx.clone());
        let (control_tx, control) = mpsc::channel(1);
        let config = StatusConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            token_file: None,
            fleet_listen: None,
        };
        let started = status::start(&config, rx, metrics, control_tx, std::future::pending())
            .await
            .expect("status server");
        OtherSite {
            addr: started.local_addr,
            doc,
            _control: control,
            task: started.task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/status", self.addr)
    }
}

/// A loopback port with nothing listening (bound, then released).
pub(crate) async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn candidate_is_checked_against_the_other_sites_live_reports() {
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    let files = Files::new();
    let sites = [
        (
            "a",
            format!("http://127.0.0.1:{}/status", closed_port().await),
        ),
        ("b", b.url()),
        ("c", c.url()),
    ];
    files.write(
        "fleet.toml",
        &fleet_toml(&sites, &["name = \"web\"\nmin_sites = 2"]),
    );
    // a's candidate takes a out of service.
    files.write("a.toml", &site_toml("a", &web(&[WEB], "disabled = true")));
    let dir = files.dir();

    // b and c announce: two sites are left, enough. The fleet comes from `[fleet]`.
    let run = check(dir, &["--config", "a.toml"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            "a.toml: ok (1 peers, 1 services)",
            "a.toml: all-sites guard ok: site a of fleet fleet.toml (b: announcing web; c: announcing web)",
        ]
    );

    // c is about to withdraw: only b would be left.
    c.doc
        .send_replace(report_doc("c", true, Intent::Withdrawing));
    let run = check(dir, &["--config", "a.toml", "--fleet", "fleet.toml"]).await;
    assert_rejected(
        &run,
        &[&format!(
            "a.toml: all-sites guard: service web prefix {WEB} would be announced by 1 of 3 \
             sites (min_sites 2): announced by b; a: service disabled, c: withdrawing"
        )],
    );

    // c is down: same verdict, with c's report as the reason.
    c.doc.send_replace(report_doc("c", false, Intent::None));
    let run = check(dir, &["--config", "a.toml"]).await;
    assert_rejected(
        &run,
        &[&format!(
            "a.toml: all-sites guard: service web prefix {WEB} would be announced by 1 of 3 \
             sites (min_sites 2): announced by b; a: service disabled, c: not announcing"
        )],
    );

    // c stops answering: unreachable counts as not announcing.
    drop(c);
    let run = check(dir, &["--config", "a.toml"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("announced by 1 of 3 sites (min_sites 2): announced by b; a: service disabled, c: unreachable ("),
        "{run:#?}"
    );

    // A candidate that keeps a announcing is fine whatever the others say.
    files.write("a.toml", &site_toml("a", &web(&[WEB], "")));
    let run = check(dir, &["--config", "a.toml"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
}

#[tokio::test]
async fn fleet_given_for_a_config_without_a_fleet_table_is_refused() {
    let files = Files::new();
    files.write("fleet.toml", &fleet_toml(&abc(), &[]));
    let text = site_toml("a", &web(&[WEB], ""));
    let without = text.replace("[fleet]\npath = \"fleet.toml\"\nsite = \"a\"\n", "");
    files.write("a.toml", &without);
    let run = check(
        files.dir(),
        &["--config", "a.toml", "--fleet", "fleet.toml"],
    )
    .await;
    assert_rejected(
        &run,
        &["a.toml: no [fleet] table: add `[fleet]` with `path` and `site = \"<name>\"` so the config can be checked against the fleet"],
    );
}

#[tokio::test]
async fn start_up_pre_check_only_validates_and_the_unit_file_uses_it() {
    // At a cold start of the whole fleet every other site is unreachable, and refusing to
    // start never keeps a service announced: ExecStartPre must not consult the fleet.
    let unit = include_str!("../../contrib/anyguard.service");
    let pre: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStartPre="))
        .collect();
    assert_eq!(
        pre,
        ["/usr/bin/anyguard check --no-fleet --config /etc/anyguard/anyguard.toml"]
    );
    let files = Files::new();
    // The fleet file is not there and the service is disabled: only the guard would object.
    files.write("a.toml", &site_toml("a", &web(&[WEB], "disabled = true")));
    let run = check(files.dir(), &["--no-fleet", "--config", "a.toml"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stdout, "a.toml: ok (1 peers, 1 services)\n");
    let run = check(files.dir(), &["--config", "a.toml"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.starts_with("fleet.toml: cannot read: "),
        "{run:#?}"
    );
    let run = check(
        files.dir(),
        &["--no-fleet", "--config", "a.toml", "--fleet", "f.toml"],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:#?}");
}

/// The daemon binary, its status address (from its JSON log) and its log so far.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) status: SocketAddr,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
    /// The task reading the log; it ends at the end of the daemon's stderr.
    reader: tokio::task::JoinHandle<()>,
}

impl Daemon {
    pub(crate) async fn start(config: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info",
                "run",
                "--config",
            ])
            .arg(config)
            // The state file of a config without `state_dir` goes next to the config (the
            // test's own directory), never to the machine's /var/lib/anyguard, which every
            // test and lab run would share; a daemon restarted by the test finds it again.
            .env(
                "STATE_DIRECTORY",
                config.parent().unwrap_or_else(|| Path::new(".")),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start anyguard run");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let keep = Arc::clone(&log);
        // Keep reading the log so the daemon never blocks on a full pipe.
        let reader = tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("status endpoint started") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let addr = v["fields"]["listen"].as_str().and_then(|a| a.parse().ok());
                    if let (Some(tx), Some(addr)) = (addr_tx.take(), addr) {
                        let _ = tx.send(addr);
                    }
                }
                keep.lock().expect("log lock").push(line);
            }
        });
        let status = match tokio::time::timeout(WAIT, addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "daemon did not log its status address: {:#?}",
                log.lock().map(|l| l.clone())
            ),
        };
        Daemon {
            child,
            status,
            log,
            reader,
        }
    }

    /// The whole log of a daemon that has exited: the reader may still be behind the
    /// process's last lines when `wait` returns, so wait (bounded) for it to reach the end
    /// of stderr.
    pub(crate) async fn log_to_end(&mut self) -> Vec<String> {
        let _ = tokio::time::timeout(WAIT, &mut self.reader).await;
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub(crate) async fn doc(&self) -> StatusDocument {
        let text = client::run(&format!("http://{}", self.status), true, false)
            .await
            .expect("GET /status");
        serde_json::from_str(&text).expect("status JSON")
    }

    /// Polls `/status` (at most [`WAIT`]) until `pred` holds.
    pub(crate) async fn doc_until(
        &self,
        what: &str,
        pred: impl Fn(&StatusDocument) -> bool,
    ) -> StatusDocument {
        let step = Duration::from_millis(100);
        let tries = WAIT.as_millis() / step.as_millis();
        let mut last = None;
        for _ in 0..tries {
            let doc = self.doc().await;
            if pred(&doc) {
                return doc;
            }
            last = Some(doc);
            tokio::time::sleep(step).await;
        }
        panic!(
            "daemon status never showed {what}: {last:#?}\nlog: {:#?}",
            self.log.lock().map(|l| l.clone())
        );
    }

    /// Polls `/status` until its first pending removal is held.
    pub(crate) async fn removal_held(&self, what: &str) -> StatusDocument {
        self.doc_until(what, |d| {
            d.pending_removals
                .first()
                .is_some_and(|r| r.decision == "held")
        })
        .await
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("daemon running");
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid"));
        kill(pid, signal).expect("signal the daemon");
    }

    pub(crate) async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(WAIT, self.child.wait()).await.is_err() {
            // Only this PID: the daemon did not stop in time.
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
            panic!("daemon did not stop within {WAIT:?} of SIGTERM");
        }
    }
}

/// Reads what the peer sends for `window`, answering with KEEPALIVEs; panics on any
/// withdrawal of `WEB`.
async fn assert_nothing_withdrawn(peer: &mut FakePeer, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    for _ in 0..1000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match peer.recv_within(left).await {
            Ok(Message::Update(u)) => assert!(
                u.withdrawn.iter().all(|p| p.to_string() != WEB),
                "the daemon withdrew {WEB}: {u:?}"
            ),
            Ok(_) => {}
            Err(FakeError::Timeout) => break,
            Err(e) => panic!("session with the daemon broke: {e:?}"),
        }
    }
    peer.send(&Message::Keepalive).await;
}

#[tokio::test]
async fn live_reload_that_would_withdraw_the_last_announcing_site_is_rejected_and_the_config_stays()
{
    // b and c are unreachable, so this site (a) is the only one announcing web.
    let files = Files::new();
    let closed = closed_port().await;
    let sites: Vec<(&str, String)> = ["a", "b", "c"]
        .into_iter()
        .map(|s| (s, format!("http://127.0.0.1:{closed}/status")))
        .collect();
    files.write(
        "fleet.toml",
        &fleet_toml(&sites, &["name = \"web\"\nmin_sites = 1"]),
    );
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let check = "type = \"command\"\nargv = [\"true\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1";
    let config = |extra: &str| {
        format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
             [fleet]\npath = \"fleet.toml\"\nsite = \"a\"\n\n[[peer]]\nname = \"upstream\"\n\
             address = \"127.0.0.1\"\nport = {port}\nremote_asn = 65000\nmode = \"active\"\n\
             hold_time = \"9s\"\n\n{}",
            service("web", &[WEB], &format!("drain_time = \"100ms\"\n{extra}"), check)
        )
    };
    let path = files.write("a.toml", &config(""));
    let daemon = Daemon::start(&path).await;
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.0.1".parse().expect("id"),
        9,
        true,
        false,
    ))
    .await;
    for _ in 0..100 {
        let u = peer.expect_update().await;
        if u.nlri.iter().any(|p| p.to_string() == WEB) {
            break;
        }
    }
    let before = daemon
        .doc_until("web up and announced", |d| {
            d.services.first().is_some_and(|s| s.state == "up")
                && d.guard
                    .as_ref()
                    .and_then(|g| g.services.first())
                    .is_some_and(|s| s.announcing)
        })
        .await;
    assert_eq!(before.daemon.config_generation, 1);
    assert_eq!(before.daemon.last_reload, None);

    // The operator pushes a config that takes web out of service, and reloads.
    files.write("a.toml", &config("disabled = true"));
    daemon.signal(Signal::SIGHUP);
    let after = daemon
        .doc_until("a reload attempt", |d| d.daemon.last_reload.is_some())
        .await;
    let reload = after.daemon.last_reload.clone().expect("last_reload");
    assert!(!reload.ok, "{reload:#?}");
    let prefix = format!(
        "all-sites guard: service web prefix {WEB} would be announced by 0 of 3 sites \
         (min_sites 1): no site announces; a: service disabled, b: unreachable ("
    );
    assert_eq!(reload.errors.len(), 1, "{reload:#?}");
    assert!(reload.errors[0].starts_with(&prefix), "{reload:#?}");
    assert!(
        reload.errors[0].contains(", c: unreachable ("),
        "{reload:#?}"
    );
    // The running config stays: same generation, web still up and announced, on the wire
    // too.
    assert_eq!(after.daemon.config_generation, 1);
    assert_eq!(after.services[0].state, "up");
    assert_eq!(after.services[0].prefixes, [WEB]);
    let report = after.guard.as_ref().expect("guard report");
    assert!(report.services[0].announcing, "{report:#?}");
    assert_nothing_withdrawn(&mut peer, Duration::from_millis(1500)).await;
    assert_eq!(daemon.doc().await.services[0].state, "up");

    // The same reload path accepts a harmless change, so the rejection above was the guard.
    files.write("a.toml", &config("hold_down = \"2s\""));
    daemon.signal(Signal::SIGHUP);
    let accepted = daemon
        .doc_until("an accepted reload", |d| d.daemon.config_generation == 2)
        .await;
    assert_eq!(accepted.daemon.last_reload.map(|r| r.ok), Some(true));
    assert_eq!(accepted.services[0].state, "up");

    drop(peer);
    daemon.stop().await;
}

/// The web entry of the daemon's own site report.
fn web_report(doc: &StatusDocument) -> Option<&ServiceReport> {
    doc.guard.as_ref().and_then(|g| g.service("web"))
}

#[tokio::test]
async fn the_site_report_says_announcing_only_while_a_session_carries_the_route() {
    // Issue 11 item 2: other sites withdraw on this site's word, so a healthy service
    // whose routes no established session carries must be reported as not announcing.
    let files = Files::new();
    let closed = closed_port().await;
    let sites: Vec<(&str, String)> = ["a", "b"]
        .into_iter()
        .map(|s| (s, format!("http://127.0.0.1:{closed}/status")))
        .collect();
    files.write(
        "fleet.toml",
        &fleet_toml(&sites, &["name = \"web\"\nmin_sites = 1"]),
    );
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let check = "type = \"command\"\nargv = [\"true\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1";
    let path = files.write(
        "a.toml",
        &format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
             [fleet]\npath = \"fleet.toml\"\nsite = \"a\"\n\n[[peer]]\nname = \"upstream\"\n\
             address = \"127.0.0.1\"\nport = {port}\nremote_asn = 65000\nmode = \"active\"\n\
             hold_time = \"9s\"\nconnect_retry = \"1s\"\n\n{}",
            service("web", &[WEB], "", check)
        ),
    );
    let daemon = Daemon::start(&path).await;

    // Up and undrained, but no session yet: the route is on no wire.
    let doc = daemon
        .doc_until("web up", |d| {
            d.services.first().is_some_and(|s| s.state == "up")
        })
        .await;
    let web = web_report(&doc).expect("web in the report");
    assert!(web.healthy, "{web:?}");
    assert!(!web.announcing, "no session carries it yet: {web:?}");

    // The session comes up and the UPDATE is written: now it announces.
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.0.1".parse().expect("id"),
        9,
        true,
        false,
    ))
    .await;
    for _ in 0..100 {
        let u = peer.expect_update().await;
        if u.nlri.iter().any(|p| p.to_string() == WEB) {
            break;
        }
    }
    daemon
        .doc_until("web reported announcing", |d| {
            web_report(d).is_some_and(|s| s.announcing)
        })
        .await;

    // The upstream goes away: every session is down, so the site no longer announces,
    // though the service is still up and its routes are still desired.
    drop(peer);
    let doc = daemon
        .doc_until("web reported not announcing", |d| {
            web_report(d).is_some_and(|s| !s.announcing)
        })
        .await;
    assert_eq!(doc.services[0].state, "up");
    assert!(web_report(&doc).is_some_and(|s| s.healthy));
    daemon.stop().await;
}

/// `GET /metrics` over a plain connection (HTTP/1.0: the server closes after the answer).
async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut sock = tokio::net::TcpStream::connect(addr).await?;
        sock.write_all(b"GET /metrics HTTP/1.0\r\nHost: anyguard\r\n\r\n")
            .await?;
        let mut body = String::new();
        sock.read_to_string(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("GET /metrics in time")
        .expect("GET /metrics")
}

/// Waits (bounded) until the peer is sent a withdrawal of `prefix`; answers KEEPALIVEs.
async fn await_withdrawal(peer: &mut FakePeer, prefix: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for _ in 0..1000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match peer.recv_within(left).await {
            Ok(Message::Update(u)) if u.withdrawn.iter().any(|p| p.to_string() == prefix) => {
                return;
            }
            Ok(_) => peer.send(&Message::Keepalive).await,
            Err(e) => panic!("no withdrawal of {prefix} within {WAIT:?}: {e:?}"),
        }
    }
    panic!("no withdrawal of {prefix}");
}

/// Waits (bounded) until the peer is sent `prefix`.
async fn await_announcement(peer: &mut FakePeer, prefix: &str) {
    for _ in 0..100 {
        let u = peer.expect_update().await;
        if u.nlri.iter().any(|p| p.to_string() == prefix) {
            return;
        }
    }
    panic!("{prefix} never announced");
}

/// Site a of a three-site fleet (`web` at `min_sites = 2`, `retired` as given) whose
/// other sites b and c are real status servers, with a fake upstream; web announced.
async fn removal_setup(
    files: &Files,
    b: &OtherSite,
    c: &OtherSite,
    retired: bool,
) -> (Daemon, FakePeer, impl Fn(&str) -> String, TcpListener) {
    let closed = closed_port().await;
    let sites = [
        ("a", format!("http://127.0.0.1:{closed}/status")),
        ("b", b.url()),
        ("c", c.url()),
    ];
    files.write(
        "fleet.toml",
        &fleet_toml(
            &sites,
            &[&format!(
                "name = \"web\"\nmin_sites = 2\nretired = {retired}"
            )],
        ),
    );
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let config = move |services: &str| {
        format!(
            "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
             [fleet]\npath = \"fleet.toml\"\nsite = \"a\"\n\n[[peer]]\nname = \"upstream\"\n\
             address = \"127.0.0.1\"\nport = {port}\nremote_asn = 65000\nmode = \"active\"\n\
             hold_time = \"9s\"\n\n{services}"
        )
    };
    let path = files.write("a.toml", &config(&quick("web", WEB)));
    let daemon = Daemon::start(&path).await;
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.0.1".parse().expect("id"),
        9,
        true,
        false,
    ))
    .await;
    await_announcement(&mut peer, WEB).await;
    (daemon, peer, config, upstream)
}

/// A service with a check that passes at once.
fn quick(name: &str, prefix: &str) -> String {
    service(
        name,
        &[prefix],
        "drain_time = \"100ms\"",
        "type = \"command\"\nargv = [\"true\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1",
    )
}

/// Sites b and c, announcing `web` but held themselves (ranked after a): they count for
/// the config guard but cannot confirm a's removal, as at a config push to every site.
async fn two_held_sites() -> (OtherSite, OtherSite) {
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    for s in [&b, &c] {
        let name = s.doc.borrow().guard.as_ref().expect("report").site.clone();
        s.doc.send_replace(report_doc(&name, true, Intent::Held));
    }
    (b, c)
}

#[tokio::test]
async fn a_reload_removing_a_service_the_other_sites_cannot_confirm_is_held_then_completes() {
    // b and c announce web but are held themselves (ranked after a): the config guard
    // accepts the reload (they announce), but they cannot confirm a's removal, as at a
    // config push to every site at once.
    let (b, c) = two_held_sites().await;
    let files = Files::new();
    let (daemon, mut peer, config, _upstream) = removal_setup(&files, &b, &c, false).await;

    // The reload drops web and adds api: api goes out at once, web stays.
    files.write("a.toml", &config(&quick("api", WEB2)));
    daemon.signal(Signal::SIGHUP);
    await_announcement(&mut peer, WEB2).await;
    let held = daemon.removal_held("the removal of web held").await;
    assert_eq!(held.daemon.config_generation, 2);
    assert_eq!(held.daemon.last_reload.as_ref().map(|r| r.ok), Some(true));
    let r = &held.pending_removals[0];
    assert_eq!(r.service, "web");
    assert_eq!(r.prefixes, [WEB.parse::<ipnet::IpNet>().expect("prefix")]);
    assert_eq!(r.intent, "held");
    assert_eq!(
        r.reason,
        "removed from the config; withdrawing web would leave 0 of 3 sites announcing \
         (min_sites 2); b: held, ranked after us, c: held, ranked after us"
    );
    // The other sites see a's intent: web listed with its prefix, announced, held.
    let report = held.guard.as_ref().expect("guard report");
    let entry = report
        .services
        .iter()
        .find(|s| s.name == "web")
        .expect("web in the report");
    assert!(
        entry.announcing && entry.intent == Intent::Held,
        "{report:#?}"
    );
    let metrics = scrape(daemon.status).await;
    assert!(
        metrics.contains("anyguard_guard_pending_removals{service=\"web\",decision=\"held\"} 1"),
        "{metrics}"
    );
    assert!(
        daemon
            .log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("ALL-SITES GUARD: removal by reload held")),
        "no loud log line"
    );
    // Nothing withdrawn on the wire while held.
    assert_nothing_withdrawn(&mut peer, Duration::from_millis(2500)).await;

    // b and c announce normally again: a confirms them and the removal completes.
    b.doc.send_replace(report_doc("b", true, Intent::None));
    c.doc.send_replace(report_doc("c", true, Intent::None));
    await_withdrawal(&mut peer, WEB).await;
    let done = daemon
        .doc_until("no pending removal", |d| d.pending_removals.is_empty())
        .await;
    assert!(
        done.guard
            .as_ref()
            .is_some_and(|g| g.services.iter().all(|s| s.name != "web")),
        "{done:#?}"
    );
    drop(peer);
    daemon.stop().await;
}

#[tokio::test]
async fn a_reload_removing_a_service_retired_in_the_fleet_withdraws_it_at_once() {
    // The same fleet as above, but web is retired: nobody is asked.
    let (b, c) = two_held_sites().await;
    let files = Files::new();
    let (daemon, mut peer, config, _upstream) = removal_setup(&files, &b, &c, true).await;
    files.write("a.toml", &config(&quick("api", WEB2)));
    daemon.signal(Signal::SIGHUP);
    await_withdrawal(&mut peer, WEB).await;
    let doc = daemon
        .doc_until("generation 2", |d| d.daemon.config_generation == 2)
        .await;
    assert!(doc.pending_removals.is_empty(), "{doc:#?}");
    assert!(
        daemon
            .log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("is retired in the fleet file")),
        "the log says why"
    );
    drop(peer);
    daemon.stop().await;
}

#[tokio::test]
async fn a_reload_changing_a_prefix_announces_the_new_one_at_once_and_holds_the_old_one() {
    let (b, c) = two_held_sites().await;
    let files = Files::new();
    let (daemon, mut peer, config, _upstream) = removal_setup(&files, &b, &c, false).await;
    files.write("a.toml", &config(&quick("web", WEB2)));
    daemon.signal(Signal::SIGHUP);
    await_announcement(&mut peer, WEB2).await;
    let held = daemon.removal_held("the old prefix held").await;
    assert_eq!(
        held.pending_removals[0].prefixes,
        [WEB.parse::<ipnet::IpNet>().expect("prefix")]
    );
    // Two entries for web in the report: the new prefix announced normally, the old one
    // held, so that other sites count this site for each prefix separately.
    let report = held.guard.as_ref().expect("guard report");
    let web: Vec<(String, Intent)> = report
        .services
        .iter()
        .filter(|s| s.name == "web")
        .map(|s| (s.prefixes[0].to_string(), s.intent))
        .collect();
    assert_eq!(
        web,
        [
            (WEB2.to_string(), Intent::None),
            (WEB.to_string(), Intent::Held)
        ]
    );
    assert_nothing_withdrawn(&mut peer, Duration::from_millis(1500)).await;
    drop(peer);
    daemon.stop().await;
}

/// Reads what the peer sends for `window`; panics on a NOTIFICATION, a closed session or
/// any withdrawal of `WEB`.
async fn assert_session_keeps_web(peer: &mut FakePeer, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    for _ in 0..1000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match peer.recv_within(left).await {
            Ok(Message::Update(u)) => assert!(
                u.withdrawn.iter().all(|p| p.to_string() != WEB),
                "the daemon withdrew {WEB}: {u:?}"
            ),
            Ok(Message::Notification(n)) => panic!("the daemon closed the session: {n:?}"),
            Ok(_) => {}
            Err(FakeError::Timeout) => break,
            Err(e) => panic!("session with the daemon broke: {e:?}"),
        }
    }
    peer.send(&Message::Keepalive).await;
}

#[tokio::test]
async fn a_reload_removing_every_peer_keeps_the_session_until_the_guard_lets_the_route_go() {
    // The config loader refuses a prefix whose family every configured peer disables, so
    // the last peer of a family goes only with every peer (a check-only config).
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    b.doc.send_replace(report_doc("b", true, Intent::Held));
    c.doc.send_replace(report_doc("c", true, Intent::Held));
    let files = Files::new();
    let (daemon, mut peer, config, _upstream) = removal_setup(&files, &b, &c, false).await;
    let with_peer = config(&quick("web", WEB));
    let (from, to) = (
        with_peer.find("[[peer]]").expect("peer table"),
        with_peer.find("[[service]]").expect("service table"),
    );
    let without_peers = format!("{}{}", &with_peer[..from], &with_peer[to..]);
    files.write("a.toml", &without_peers);
    daemon.signal(Signal::SIGHUP);
    let held = daemon.removal_held("the removal held").await;
    assert_eq!(held.daemon.config_generation, 2);
    assert_eq!(held.pending_removals[0].service, "web");
    assert!(
        held.peers
            .iter()
            .any(|p| p.name == "upstream" && p.state == "established"),
        "the removed peer stays up: {:#?}",
        held.peers
    );
    assert_session_keeps_web(&mut peer, Duration::from_millis(2000)).await;

    // b and c announce normally: the withdrawal is written, then the session closes.
    b.doc.send_replace(report_doc("b", true, Intent::None));
    c.doc.send_replace(report_doc("c", true, Intent::None));
    await_withdrawal(&mut peer, WEB).await;
    peer.expect_notification().await;
    let done = daemon
        .doc_until("the peer gone", |d| d.peers.is_empty())
        .await;
    assert!(done.pending_removals.is_empty(), "{done:#?}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_held_removal_goes_at_once_when_the_fleet_file_retires_the_service_on_sighup() {
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    b.doc.send_replace(report_doc("b", true, Intent::Held));
    c.doc.send_replace(report_doc("c", true, Intent::Held));
    let files = Files::new();
    let (daemon, mut peer, config, _upstream) = removal_setup(&files, &b, &c, false).await;
    files.write("a.toml", &config(&quick("api", WEB2)));
    daemon.signal(Signal::SIGHUP);
    daemon.removal_held("the removal of web held").await;
    assert_nothing_withdrawn(&mut peer, Duration::from_millis(1000)).await;

    // The operator retires web in the fleet file and reloads: it goes at once, although
    // b and c still cannot confirm.
    let fleet = files.dir().join("fleet.toml");
    let text = std::fs::read_to_string(&fleet).expect("fleet file");
    files.write(
        "fleet.toml",
        &text.replace("retired = false", "retired = true"),
    );
    daemon.signal(Signal::SIGHUP);
    await_withdrawal(&mut peer, WEB).await;
    let doc = daemon
        .doc_until("generation 3", |d| d.daemon.config_generation == 3)
        .await;
    assert!(doc.pending_removals.is_empty(), "{doc:#?}");
    drop(peer);
    daemon.stop().await;
}

#[tokio::test]
async fn a_held_removal_survives_a_sigkill_and_is_announced_and_held_again_after_the_restart() {
    let b = OtherSite::start("b", true).await;
    let c = OtherSite::start("c", true).await;
    b.doc.send_replace(report_doc("b", true, Intent::Held));
    c.doc.send_replace(report_doc("c", true, Intent::Held));
    let files = Files::new();
    let (mut daemon, peer, config, upstream) = removal_setup(&files, &b, &c, false).await;
    let path = files.write("a.toml", &config(&quick("api", WEB2)));
    daemon.signal(Signal::SIGHUP);
    daemon.removal_held("the removal of web held").await;
    let saved = std::fs::read_to_string(files.dir().join("state.json")).expect("state file");
    assert!(saved.contains("\"pending_removals\""), "{saved}");

    // A crash: no stop, no withdrawal. The restarted daemon runs the config without web.
    daemon.child.start_kill().expect("SIGKILL");
    let _ = tokio::time::timeout(WAIT, daemon.child.wait()).await;
    drop(peer);
    let daemon = Daemon::start(&path).await;
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.0.1".parse().expect("id"),
        9,
        true,
        false,
    ))
    .await;
    // web's route is announced again with the saved attributes, and guarded again.
    await_announcement(&mut peer, WEB).await;
    let doc = daemon.removal_held("the restored removal held").await;
    assert_eq!(doc.pending_removals[0].service, "web");
    assert!(
        daemon
            .log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("pending removal restored from the state file")),
        "no log line"
    );
    assert_nothing_withdrawn(&mut peer, Duration::from_millis(1000)).await;
    drop(peer);
    daemon.stop().await;
}
