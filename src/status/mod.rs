//! The operator surface: status document, HTTP endpoint, metrics and control.

pub mod model;
