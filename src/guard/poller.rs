//! The thin tokio driver that polls the other sites' fleet reports and publishes the
//! [`FleetView`] on a `tokio::sync::watch` channel.
//!
//! One task per other site: GET the site's report URL (`/fleet/report`, HTTP/1.1,
//! hyper-util client, a new connection per poll) with a fresh random nonce, bounded by the
//! fleet's poll timeout for the whole exchange and by [`MAX_STATUS_BODY`] for the body;
//! with a fleet key, verify the answer's HMAC for this site and this nonce
//! ([`super::auth`]); parse the `"guard"` key, record the outcome with the time the
//! request was *started*, sleep until the next interval (or until the coordinator asks for
//! an immediate round, e.g. right after publishing an intent to withdraw). Anything but a
//! complete, valid (and, with a key, correctly signed) report of [`REPORT_VERSION`] from
//! the expected site is a [`PollFailure`], which the guard counts as "not announcing".

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, ACCEPT, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::auth::{FleetKey, Nonce, SignatureError, SIGNATURE_HEADER};
use super::fleet::Fleet;
use super::report::{StatusEnvelope, REPORT_VERSION};
use super::view::{FleetView, PollFailure, PollOutcome};

/// Largest status document accepted.
pub const MAX_STATUS_BODY: usize = 1024 * 1024;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What the poller polls and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct PollerConfig {
    /// Other sites: name and fleet report URL, in fleet order.
    pub targets: Vec<(String, Uri)>,
    /// Time between the starts of two polls of one site.
    pub interval: Duration,
    /// Limit for one poll.
    pub timeout: Duration,
    /// The fleet key: every report must be signed with it. `None` accepts unsigned
    /// reports (a fleet without `[auth]`).
    pub key: Option<FleetKey>,
}

impl PollerConfig {
    /// Every site of `fleet` except `local`, with the fleet's timing.
    pub fn from_fleet(fleet: &Fleet, local: &str) -> Self {
        PollerConfig {
            targets: fleet
                .sites
                .iter()
                .filter(|s| s.name != local)
                .map(|s| (s.name.clone(), s.report_url.clone()))
                .collect(),
            interval: fleet.poll.interval,
            timeout: fleet.poll.timeout,
            key: fleet.auth.as_ref().map(|a| a.key.clone()),
        }
    }
}

fn client() -> HttpClient {
    // No idle connection is kept: the status endpoint bounds each connection's lifetime
    // (`status::server`), and a kept one it closed between two polls would fail the next
    // poll. One TCP handshake per poll is well inside the poll timeout.
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// `url` with `nonce=<hex>` as its query (any query it had is replaced).
fn with_nonce(url: &Uri, nonce: &Nonce) -> Result<Uri, PollFailure> {
    let mut parts = url.clone().into_parts();
    let path = parts.path_and_query.as_ref().map_or("/", |pq| pq.path());
    let pq = format!("{path}?nonce={}", nonce.to_hex());
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|e| PollFailure::Request(format!("{e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| PollFailure::Request(e.to_string()))
}

/// The body and the signature header of one answer.
async fn fetch(
    client: &HttpClient,
    url: &Uri,
) -> Result<(Bytes, Option<HeaderValue>), PollFailure> {
    let request = Request::get(url.clone())
        .header(USER_AGENT, concat!("anyguard/", env!("CARGO_PKG_VERSION")))
        .header(ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| PollFailure::Request(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| PollFailure::Request(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(PollFailure::Status(response.status().as_u16()));
    }
    let signature = response.headers().get(SIGNATURE_HEADER).cloned();
    let body = Limited::new(response.into_body(), MAX_STATUS_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| PollFailure::Body(e.to_string()))?;
    Ok((body, signature))
}

/// What the poller makes of an answer of `site` to its request with `nonce`: with a key,
/// the answer must carry a valid signature for `site` and `nonce`, checked before the body
/// is parsed so that nothing unauthenticated is interpreted; then the report, of this
/// build's version and from `site`. Pure: the guard simulation feeds it forged, unsigned
/// and replayed answers.
pub fn accept_answer(
    key: Option<&FleetKey>,
    site: &str,
    nonce: &Nonce,
    body: &[u8],
    signature: Option<&[u8]>,
) -> Result<super::report::SiteReport, PollFailure> {
    if let Some(key) = key {
        match key.verify(site, &nonce.0, body, signature) {
            Ok(()) => {}
            Err(SignatureError::Missing) => return Err(PollFailure::Unsigned),
            Err(e) => return Err(PollFailure::BadSignature(e.to_string())),
        }
    }
    parse(body, site)
}

/// The error and its sources, `: `-separated (hyper's top-level text is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Just the version of a report, read before the rest: a report of another version may
/// not have the fields of this one, or give them another meaning.
#[derive(serde::Deserialize)]
struct VersionEnvelope {
    guard: VersionOnly,
}

#[derive(serde::Deserialize)]
struct VersionOnly {
    version: u32,
}

fn parse(body: &[u8], expected: &str) -> Result<super::report::SiteReport, PollFailure> {
    let version: VersionEnvelope =
        serde_json::from_slice(body).map_err(|e| PollFailure::Body(e.to_string()))?;
    if version.guard.version != REPORT_VERSION {
        return Err(PollFailure::UnsupportedVersion {
            found: version.guard.version,
            supported: REPORT_VERSION,
        });
    }
    let envelope: StatusEnvelope =
        serde_json::from_slice(body).map_err(|e| PollFailure::Body(e.to_string()))?;
    if envelope.guard.site != expected {
        return Err(PollFailure::WrongSite {
            expected: expected.to_owned(),
            found: envelope.guard.site,
        });
    }
    Ok(envelope.guard)
}

async fn poll_with(
    client: &HttpClient,
    site: &str,
    url: &Uri,
    timeout: Duration,
    key: Option<&FleetKey>,
) -> PollOutcome {
    // Taken before anything is sent: the protocol needs "requested after the intent".
    let requested_at = Instant::now();
    // A fresh nonce per request: an answer recorded earlier (for another nonce) does not
    // verify, so a replay is a bad signature.
    let nonce = Nonce::random();
    let exchange = async {
        let (body, signature) = fetch(client, &with_nonce(url, &nonce)?).await?;
        accept_answer(
            key,
            site,
            &nonce,
            &body,
            signature.as_ref().map(HeaderValue::as_bytes),
        )
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(PollFailure::Timeout(timeout)),
    };
    PollOutcome {
        requested_at,
        result,
    }
}

/// One round over every other site of `fleet`, concurrently, as a view (for `anyguard
/// check --config NEW.toml --fleet F`, which judges a candidate against the other sites'
/// current reports).
pub async fn poll_round(fleet: &Fleet, local: &str) -> FleetView {
    let client = client();
    let mut view = fleet.view_for(local);
    let config = PollerConfig::from_fleet(fleet, local);
    let mut tasks = JoinSet::new();
    for (site, url) in config.targets {
        let client = client.clone();
        let timeout = config.timeout;
        let key = config.key.clone();
        tasks.spawn(async move {
            let outcome = poll_with(&client, &site, &url, timeout, key.as_ref()).await;
            (site, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((site, outcome)) => view.record(&site, outcome, Instant::now()),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    view
}

/// Poll every target until `shutdown` becomes true (or its sender is dropped), recording
/// each outcome in `view`. A change on `poll_now` starts a round at once (the coordinator
/// bumps it after publishing an intent to withdraw).
pub async fn run(
    config: PollerConfig,
    view: watch::Sender<FleetView>,
    poll_now: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) {
    if config.key.is_none() {
        tracing::warn!(
            warning = super::view::UNSIGNED_WARNING,
            "all-sites guard: UNSIGNED fleet reports"
        );
    }
    let client = client();
    let view = std::sync::Arc::new(view);
    let mut tasks = JoinSet::new();
    for (site, url) in config.targets {
        let client = client.clone();
        let view = view.clone();
        let mut poll_now = Some(poll_now.clone());
        let mut shutdown = shutdown.clone();
        let (interval, timeout) = (config.interval, config.timeout);
        let key = config.key.clone();
        tasks.spawn(async move {
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let outcome = poll_with(&client, &site, &url, timeout, key.as_ref()).await;
                let next = tokio::time::Instant::from_std(outcome.requested_at) + interval;
                // Seen now: the hand-over of a site starts when its report reaches this
                // site's view, never earlier (`guard::hand_over`).
                view.send_modify(|v| v.record(&site, outcome, Instant::now()));
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    changed = async {
                        match poll_now.as_mut() {
                            Some(rx) => rx.changed().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if changed.is_err() {
                            // The coordinator dropped its sender: intervals only from now.
                            poll_now = None;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
