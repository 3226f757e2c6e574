//! anyguard: BGP anycast announcer.

pub mod announcer;
pub mod config;
pub mod guard;
pub mod status;
