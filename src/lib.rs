//! anyguard: BGP anycast announcer.

pub mod announcer;
pub mod bfd;
pub mod cli_check;
pub mod cli_docs;
pub mod config;
pub mod coordinator;
pub mod demo;
pub mod fsm;
pub mod guard;
pub mod health;
pub mod hooks;
pub mod local_addr;
pub mod process;
pub mod service;
pub mod session;
pub mod state;
pub mod status;
