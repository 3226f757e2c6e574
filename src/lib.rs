//! anyguard: BGP anycast announcer.

pub mod config;
