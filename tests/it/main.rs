//! Daemon integration tests: one binary, one module per subject.

mod bfd;
mod cli_docs;
mod config_examples;
mod daemon;
mod demo;
mod fakepeer;
mod fleet_channel;
mod fleet_etcd;
mod fleet_reload;
mod guard_cli;
mod guard_sim;
mod guard_stop;
mod hand_over;
mod health;
mod host;
mod httpd;
mod interop;
// The bench's attribution of the daemon's kernel work (its unit tests run here: a bench
// target runs none); its perf-driving half is the bench's alone.
#[allow(dead_code)]
#[path = "../../benches/many_services/kernel_share.rs"]
mod kernel_share;
mod link_local;
mod local_actions;
mod session;
mod status_http;
