//! NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5).
