//! The demo's sites: each a real daemon (`coordinator::run`, as `anyguard run` starts it)
//! with a config file of its own in the demo's directory, the shared fleet file, and a
//! local HTTP health target whose answer the story flips.
//!
//! The timings are the demo's own (checks every 100 ms, fleet polls every 200 ms, no
//! hold-down), written into its config files: the daemon's defaults are not touched.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use ipnet::{IpNet, Ipv4Net};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{self, ConfigErrors};
use crate::coordinator::{self, DaemonSignal, RunError, RunOptions};

/// The anycast service every site announces.
pub const SERVICE: &str = "web";
/// Its prefix (TEST-NET-3, documentation space).
pub const PREFIX: IpNet = IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24));
/// The sites' AS.
pub const SITE_ASN: u32 = 65010;
/// The sites, in the fleet's preference order.
pub const SITES: [&str; 3] = ["a", "b", "c"];
/// `min_sites` of the service: two of three, so that the guard matters as soon as one
/// site is gone.
pub const MIN_SITES: usize = 2;

/// A local HTTP health target (`GET /healthz`): 200 while healthy, 503 otherwise.
#[derive(Debug)]
pub struct HealthTarget {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl HealthTarget {
    /// Listens on 127.0.0.1 (port chosen by the OS), healthy.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let healthy = Arc::new(AtomicBool::new(true));
        let shared = Arc::clone(&healthy);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let (code, body) = if shared.load(Ordering::Relaxed) {
                            (StatusCode::OK, "ok\n")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "failing (anyguard demo)\n")
                        };
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *resp.status_mut() = code;
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    // A probe that gives up closes the connection: nothing to report.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(HealthTarget {
            addr,
            healthy,
            task,
        })
    }

    /// The URL the site's check probes.
    pub fn url(&self) -> String {
        format!("http://{}/healthz", self.addr)
    }

    /// Whether it answers 200 now.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Answers 200 (`true`) or 503 from now on.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

impl Drop for HealthTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fleet file every site shares: the three sites' status endpoints, signed reports
/// (`fleet.key` next to it), polls every 200 ms, `web` at `min_sites = 2`.
pub fn fleet_toml(status_ports: &[(&str, u16)]) -> String {
    let mut t = String::from(
        "# anyguard demo fleet (written by `anyguard demo`)\n\
         [auth]\nkey_file = \"fleet.key\"\n\n\
         [poll]\ninterval = \"200ms\"\ntimeout = \"100ms\"\n",
    );
    for (site, port) in status_ports {
        t.push_str(&format!(
            "\n[[site]]\nname = \"{site}\"\nstatus_url = \"http://127.0.0.1:{port}/status\"\n"
        ));
    }
    t.push_str(&format!(
        "\n[[service]]\nname = \"{SERVICE}\"\nmin_sites = {MIN_SITES}\nprefixes = [\"{PREFIX}\"]\n"
    ));
    t
}

/// Where a site's pieces are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePlan {
    /// Name in the fleet.
    pub name: String,
    /// Its status endpoint's port on 127.0.0.1.
    pub status_port: u16,
    /// The router's port for its session.
    pub router_port: u16,
    /// Its health target's URL.
    pub target_url: String,
}

impl SitePlan {
    /// Its `/status` URL.
    pub fn status_url(&self) -> String {
        format!("http://127.0.0.1:{}/status", self.status_port)
    }

    /// The site's config: one active session to the router, `web` checked against the
    /// health target when `with_service` (without it, the "bad config" of the story: the
    /// service removed).
    pub fn config_toml(&self, with_service: bool, index: u8) -> String {
        let mut t = format!(
            "# anyguard demo: site {name} (written by `anyguard demo`)\n\
             router_id = \"198.18.{n}.2\"\n\
             local_asn = {SITE_ASN}\n\n\
             [status]\nlisten = \"127.0.0.1:{status}\"\n\n\
             [fleet]\npath = \"fleet.toml\"\nsite = \"{name}\"\n\n\
             [[peer]]\nname = \"router\"\naddress = \"127.0.0.1\"\nport = {router}\n\
             remote_asn = {asn}\nhold_time = \"9s\"\n\
             # Kept when a config without services is pushed: the session stays up.\n\
             ipv4 = true\n\
             reconnect = {{ min = \"100ms\", max = \"1s\" }}\n",
            name = self.name,
            n = u16::from(index) + 1,
            status = self.status_port,
            router = self.router_port,
            asn = super::router::ROUTER_ASN,
        );
        if with_service {
            t.push_str(&format!(
                "\n[[service]]\nname = \"{SERVICE}\"\nprefixes = [\"{PREFIX}\"]\n\
                 # The demo's pace: no hold-down, a short drain.\n\
                 hold_down = \"0s\"\ndrain_time = \"200ms\"\n\n\
                 [[service.check]]\ntype = \"http\"\nurl = \"{url}\"\n\
                 interval = \"100ms\"\ntimeout = \"80ms\"\nrise = 2\nfall = 2\n",
                url = self.target_url
            ));
        }
        t
    }
}

/// One running site: its daemon, config file and health target.
#[derive(Debug)]
pub struct Site {
    /// Where its pieces are.
    pub plan: SitePlan,
    index: u8,
    config_path: PathBuf,
    /// Its health target.
    pub target: HealthTarget,
    signals: mpsc::Sender<DaemonSignal>,
    task: JoinHandle<Result<(), RunError>>,
}

/// A site could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// Writing its config file failed.
    #[error("site {site}: cannot write {path}: {source}")]
    Write {
        /// Site.
        site: String,
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Its config does not load (a bug of the demo: the text is generated).
    #[error("site {site}: {errors}")]
    Config {
        /// Site.
        site: String,
        /// Every error.
        errors: ConfigErrors,
    },
}

impl Site {
    /// Writes the site's config into `dir` and starts its daemon, as `anyguard run
    /// --config` would (no state file: the demo keeps nothing across runs).
    pub fn start(
        plan: SitePlan,
        index: u8,
        target: HealthTarget,
        dir: &Path,
    ) -> Result<Self, SiteError> {
        let config_path = dir.join(format!("{}.toml", plan.name));
        write(&plan.name, &config_path, &plan.config_toml(true, index))?;
        let config = config::load(&config_path).map_err(|errors| SiteError::Config {
            site: plan.name.clone(),
            errors,
        })?;
        let (signals, rx) = mpsc::channel(4);
        let options = RunOptions {
            config_path: Some(config_path.clone()),
            ..RunOptions::default()
        };
        let task = tokio::spawn(coordinator::run(config, options, rx));
        Ok(Site {
            plan,
            index,
            config_path,
            target,
            signals,
            task,
        })
    }

    /// Writes the config with or without the service and reloads it (what SIGHUP does).
    pub async fn push_config(&self, with_service: bool) -> Result<(), SiteError> {
        write(
            &self.plan.name,
            &self.config_path,
            &self.plan.config_toml(with_service, self.index),
        )?;
        // A daemon that has ended has nothing to reload; its end is reported by `stop`.
        let _ = self.signals.send(DaemonSignal::Reload).await;
        Ok(())
    }

    /// Whether the daemon has ended (it only does on a stop or a start-up error).
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the daemon as SIGTERM does and waits for it; its error, if it failed.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.signals.send(DaemonSignal::Stop).await;
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("daemon task failed: {e}")),
        }
    }
}

fn write(site: &str, path: &Path, text: &str) -> Result<(), SiteError> {
    std::fs::write(path, text).map_err(|source| SiteError::Write {
        site: site.to_owned(),
        path: path.display().to_string(),
        source,
    })
}
