//! anyguard: BGP anycast announcer.

pub mod announcer;
pub mod config;
pub mod fsm;
pub mod session;
pub mod status;
