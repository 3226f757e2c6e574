//! anyguard: BGP anycast announcer.

pub mod config;
pub mod health;
