//! The check tasks' log lines through the real binary: every one names its service and
//! check (the `check` span, `status::logging`), and a span-scoped filter
//! (`anyguard[check{service=…}]=debug`) still picks one service's results out. The check
//! tasks enter their span only for a log line and around a probe that may log, not at
//! every poll (issue 13: ~2 % of the daemon's CPU at 2,000 checks a second), so this pins
//! down what that must keep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::process::Process;
use super::*;

/// Starts `anyguard --log-format json --log-level <filter> run --dry-run` with services
/// `web` and `db`, each with an HTTP check on `http` and a TCP check on `tcp` every
/// 100 ms; waits (bounded) until `enough(log lines)` holds, stops it and returns the
/// JSON lines.
async fn json_lines_of_a_run(
    filter: &str,
    http: SocketAddr,
    tcp: SocketAddr,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("anyguard.toml");
    let mut text = format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    );
    for (i, name) in ["web", "db"].iter().enumerate() {
        text.push_str(&format!(
            r#"
[[service]]
name = "{name}"
prefixes = ["203.0.113.{i}/32"]

[[service.check]]
name = "http"
type = "http"
url = "http://{http}/healthz"
interval = "100ms"
fast_interval = "100ms"

[[service.check]]
name = "tcp"
type = "tcp"
address = "{tcp}"
interval = "100ms"
fast_interval = "100ms"
"#
        ));
    }
    std::fs::write(&config, text).unwrap();
    let log_path = dir.path().join("anyguard.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut process = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_anyguard"))
            .args(["--log-format", "json", "--log-level", filter])
            .args(["run", "--dry-run", "--config"])
            .arg(&config)
            .env("STATE_DIRECTORY", dir.path())
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let parse = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    // Bounded: 10 s.
    for _ in 0..200 {
        if enough(&parse()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.signal(nix::sys::signal::Signal::SIGTERM);
    let status = process.exit().await;
    let lines = parse();
    assert!(status.success(), "exit {status:?}: {lines:#?}");
    lines
}

/// The span a line ran in: (service, check), if it names them.
fn check_of(line: &serde_json::Value) -> Option<(String, String)> {
    let span = &line["span"];
    (span["name"] == "check").then(|| {
        (
            span["service"].as_str().unwrap_or_default().to_owned(),
            span["check"].as_str().unwrap_or_default().to_owned(),
        )
    })
}

/// A check's transition line (`check unknown → up: …`, info) or result line (debug).
fn is_transition(line: &serde_json::Value) -> bool {
    from_runner(line) && line["fields"]["from"].is_string() && line["fields"]["to"].is_string()
}

fn is_result(line: &serde_json::Value) -> bool {
    from_runner(line) && line["level"] == "DEBUG" && line["fields"]["passes"].is_number()
}

/// A line of a check task (the coordinator logs a service's change with its own fields).
fn from_runner(line: &serde_json::Value) -> bool {
    line["target"] == "anyguard::health::runner"
}

/// Every (service, check) pair of the run.
const CHECKS: [(&str, &str); 4] = [
    ("web", "http"),
    ("web", "tcp"),
    ("db", "http"),
    ("db", "tcp"),
];

fn pairs(
    lines: &[serde_json::Value],
    kind: fn(&serde_json::Value) -> bool,
) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = lines
        .iter()
        .filter(|l| kind(l))
        .map(|l| check_of(l).unwrap_or_else(|| panic!("a check's line without its span: {l}")))
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

fn all_checks() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = CHECKS
        .iter()
        .map(|(s, c)| ((*s).to_owned(), (*c).to_owned()))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn every_check_log_line_names_its_service_and_check() {
    let target = Target::start(Answer::Pass).await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    // Accepts and drops every connection, so the backlog never fills.
    let acceptor = tokio::spawn(async move { while tcp.accept().await.is_ok() {} });
    let lines = json_lines_of_a_run("debug", target.addr, tcp_addr, |lines| {
        pairs(lines, is_transition).len() == CHECKS.len()
            && pairs(lines, is_result).len() == CHECKS.len()
    })
    .await;
    acceptor.abort();
    assert_eq!(pairs(&lines, is_transition), all_checks(), "transitions");
    assert_eq!(pairs(&lines, is_result), all_checks(), "results");
}

#[tokio::test]
async fn a_filter_on_the_check_span_picks_one_services_results() {
    let target = Target::start(Answer::Pass).await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let acceptor = tokio::spawn(async move { while tcp.accept().await.is_ok() {} });
    let web = |lines: &[serde_json::Value]| {
        pairs(lines, is_result)
            .iter()
            .filter(|(s, _)| s == "web")
            .count()
    };
    let lines = json_lines_of_a_run(
        "info,anyguard[check{service=web}]=debug",
        target.addr,
        tcp_addr,
        // Both of web's checks have given results at the debug level, and every check
        // its transition (info).
        |lines| web(lines) == 2 && pairs(lines, is_transition).len() == CHECKS.len(),
    )
    .await;
    acceptor.abort();
    let results = pairs(&lines, is_result);
    assert_eq!(
        results,
        vec![
            ("web".to_owned(), "http".to_owned()),
            ("web".to_owned(), "tcp".to_owned())
        ],
        "debug results of web only"
    );
    assert_eq!(pairs(&lines, is_transition), all_checks(), "transitions");
}
