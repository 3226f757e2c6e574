//! Authenticated fleet reports: HMAC-SHA256 (RFC 2104, FIPS 180-4) over the report body,
//! the reporting site's name and a fresh nonce chosen by the poller.
//!
//! The poller sends `GET /fleet/report?nonce=<hex>`; the reporting site answers with the
//! report body and [`SIGNATURE_HEADER`]: `hmac-sha256=<hex>`, the MAC of
//! [`canonical_message`] under the fleet key. The poller recomputes it with its own copy of
//! the key, for the site it meant to ask and the nonce it just drew, and compares in
//! constant time (`hmac`'s `verify_slice`). What this gives and what it does not is the
//! threat model in `docs/guard.md` ("Authenticated reports").
//!
//! Pure functions only: the key file is read by [`read_key_file`] at fleet load, the
//! nonce drawn by [`Nonce::random`]; the HTTP sides are `status::server` and
//! `guard::poller`.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Domain-separation label and version at the start of every signed message: a MAC made
/// for a fleet report can never be mistaken for one over anything else made with the key.
pub const DOMAIN: &[u8] = b"anyguard fleet report v1";
/// Response header carrying the MAC.
pub const SIGNATURE_HEADER: &str = "anyguard-signature";
/// The scheme prefix of [`SIGNATURE_HEADER`]'s value.
pub const SIGNATURE_SCHEME: &str = "hmac-sha256=";
/// Path of the fleet report on the status endpoint (and the fleet listener).
pub const REPORT_PATH: &str = "/fleet/report";
/// Shortest key accepted, bytes (after trimming): 256 bits, the HMAC-SHA256 output size
/// (RFC 2104 §3: less than L bytes is strongly discouraged).
pub const MIN_KEY_LEN: usize = 32;
/// Nonce length the poller draws, bytes.
pub const NONCE_LEN: usize = 16;
/// Nonce lengths the reporting site accepts, bytes: short enough to bound the work a
/// request can cause, long enough that a replayed answer never matches by chance.
pub const NONCE_LENS: std::ops::RangeInclusive<usize> = 16..=64;

type HmacSha256 = Hmac<Sha256>;

/// The shared fleet key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetKey(Vec<u8>);

impl fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FleetKey({} bytes)", self.0.len())
    }
}

/// Why a key file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Missing, unreadable.
    #[error("cannot read key file {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// Only whitespace.
    #[error("key file {path} is empty")]
    Empty {
        /// The file.
        path: String,
    },
    /// Fewer than [`MIN_KEY_LEN`] bytes.
    #[error("key file {path} holds {len} bytes; at least {min} are needed (e.g. `openssl rand -hex 32`)")]
    TooShort {
        /// The file.
        path: String,
        /// Bytes after trimming.
        len: usize,
        /// [`MIN_KEY_LEN`].
        min: usize,
    },
}

/// Reads the fleet key: the file's bytes with surrounding whitespace trimmed (so that
/// `openssl rand -hex 32 > fleet.key` works as it is), at least [`MIN_KEY_LEN`] of them.
pub fn read_key_file(path: &Path) -> Result<FleetKey, KeyError> {
    let shown = path.display().to_string();
    let raw = std::fs::read(path).map_err(|e| KeyError::Read {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    FleetKey::from_file_bytes(&raw, &shown)
}

impl FleetKey {
    /// The key from a key file's content (`path` for messages).
    pub fn from_file_bytes(raw: &[u8], path: &str) -> Result<FleetKey, KeyError> {
        let key = raw.trim_ascii();
        if key.is_empty() {
            return Err(KeyError::Empty { path: path.into() });
        }
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                path: path.into(),
                len: key.len(),
                min: MIN_KEY_LEN,
            });
        }
        Ok(FleetKey(key.to_vec()))
    }

    fn mac(&self, site: &str, nonce: &[u8], body: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length (RFC 2104 §2), so this never fails.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_invalid_length(),
        };
        mac.update(&canonical_message(site, nonce, body));
        mac
    }

    /// The [`SIGNATURE_HEADER`] value for `body`, served by `site` for `nonce`.
    pub fn sign(&self, site: &str, nonce: &[u8], body: &[u8]) -> String {
        let tag = self.mac(site, nonce, body).finalize().into_bytes();
        format!("{SIGNATURE_SCHEME}{}", hex::encode(tag))
    }

    /// Checks a [`SIGNATURE_HEADER`] value: `site` is the site the poller asked, `nonce`
    /// the one it sent. The comparison is constant-time.
    pub fn verify(
        &self,
        site: &str,
        nonce: &[u8],
        body: &[u8],
        header: Option<&[u8]>,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let tag = header
            .strip_prefix(SIGNATURE_SCHEME.as_bytes())
            .and_then(|hex_tag| hex::decode(hex_tag.trim_ascii()).ok())
            .ok_or(SignatureError::Malformed)?;
        self.mac(site, nonce, body)
            .verify_slice(&tag)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cold]
fn unreachable_invalid_length() -> ! {
    // `Hmac::new_from_slice` only refuses key lengths for fixed-key MACs, never HMAC.
    panic!("HMAC-SHA256 accepts keys of every length")
}

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No [`SIGNATURE_HEADER`].
    #[error("no signature")]
    Missing,
    /// Not `hmac-sha256=<hex>`.
    #[error("malformed signature")]
    Malformed,
    /// Wrong key, altered body, another site's report, or another nonce (a replay).
    #[error("signature does not match")]
    Mismatch,
}

/// The signed message: every part length-prefixed so that no two different
/// (site, nonce, body) triples encode alike.
///
/// ```text
/// DOMAIN | 0x00 | u32 len(site) | site | u32 len(nonce) | nonce | u64 len(body) | body
/// ```
/// (lengths big-endian).
pub fn canonical_message(site: &str, nonce: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 17 + site.len() + nonce.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.push(0);
    m.extend_from_slice(&u32::try_from(site.len()).unwrap_or(u32::MAX).to_be_bytes());
    m.extend_from_slice(site.as_bytes());
    m.extend_from_slice(&u32::try_from(nonce.len()).unwrap_or(u32::MAX).to_be_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(&u64::try_from(body.len()).unwrap_or(u64::MAX).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A poller's fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// Drawn from the operating system's generator (through `rand`'s thread RNG,
    /// a CSPRNG seeded from it).
    pub fn random() -> Self {
        Nonce(rand::random())
    }

    /// Hex, as sent in the query.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The nonce of a `nonce=<hex>` query (other parameters ignored), if present and of an
/// accepted length.
pub fn nonce_from_query(query: Option<&str>) -> Option<Vec<u8>> {
    let value = query?.split('&').find_map(|kv| kv.strip_prefix("nonce="))?;
    let nonce = hex::decode(value).ok()?;
    NONCE_LENS.contains(&nonce.len()).then_some(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FleetKey {
        FleetKey::from_file_bytes(b"0123456789abcdef0123456789abcdef\n", "k").unwrap()
    }

    #[test]
    fn signature_verifies_only_for_the_same_site_nonce_body_and_key() {
        let k = key();
        let sig = k.sign("b", b"nonce-0123456789", b"{\"guard\":{}}");
        let sig = Some(sig.as_bytes());
        assert_eq!(
            k.verify("b", b"nonce-0123456789", b"{\"guard\":{}}", sig),
            Ok(())
        );
        for (site, nonce, body) in [
            ("c", &b"nonce-0123456789"[..], &b"{\"guard\":{}}"[..]),
            ("b", b"nonce-0123456780", b"{\"guard\":{}}"),
            ("b", b"nonce-0123456789", b"{\"guard\":{} }"),
        ] {
            assert_eq!(
                k.verify(site, nonce, body, sig),
                Err(SignatureError::Mismatch)
            );
        }
        let other = FleetKey::from_file_bytes(&[b'x'; 32], "k").unwrap();
        assert_eq!(
            other.verify("b", b"nonce-0123456789", b"{\"guard\":{}}", sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(k.verify("b", b"n", b"", None), Err(SignatureError::Missing));
        for bad in [&b"sha1=00"[..], b"hmac-sha256=zz", b"abc"] {
            assert_eq!(
                k.verify("b", b"n", b"", Some(bad)),
                Err(SignatureError::Malformed)
            );
        }
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2 (key "Jefe"), through the same HMAC with our framing:
        // checks that the tag is HMAC-SHA256 of the canonical message and nothing else.
        let mut mac = HmacSha256::new_from_slice(&[b'k'; 32]).unwrap();
        mac.update(&canonical_message("a", b"n", b"body"));
        let expected = hex::encode(mac.finalize().into_bytes());
        let k = FleetKey::from_file_bytes(&[b'k'; 32], "k").unwrap();
        assert_eq!(
            k.sign("a", b"n", b"body"),
            format!("hmac-sha256={expected}")
        );
        let mut jefe = HmacSha256::new_from_slice(b"Jefe").unwrap();
        jefe.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(jefe.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn canonical_message_separates_its_parts() {
        assert_ne!(
            canonical_message("ab", b"c", b""),
            canonical_message("a", b"bc", b"")
        );
        assert!(canonical_message("a", b"", b"").starts_with(DOMAIN));
    }

    #[test]
    fn key_file_must_be_long_enough_and_not_empty() {
        assert_eq!(
            FleetKey::from_file_bytes(b" \n", "f"),
            Err(KeyError::Empty { path: "f".into() })
        );
        assert_eq!(
            FleetKey::from_file_bytes(b"short\n", "f"),
            Err(KeyError::TooShort {
                path: "f".into(),
                len: 5,
                min: MIN_KEY_LEN
            })
        );
        assert!(matches!(
            read_key_file(Path::new("/nonexistent/anyguard/fleet.key")),
            Err(KeyError::Read { .. })
        ));
        assert_eq!(format!("{:?}", key()), "FleetKey(32 bytes)");
    }

    #[test]
    fn nonce_is_read_from_the_query_and_bounded() {
        let n = Nonce::random();
        assert_ne!(n, Nonce::random());
        let q = format!("x=1&nonce={}", n.to_hex());
        assert_eq!(nonce_from_query(Some(&q)), Some(n.0.to_vec()));
        assert_eq!(nonce_from_query(Some("nonce=abcd")), None);
        assert_eq!(nonce_from_query(Some("nonce=")), None);
        assert_eq!(
            nonce_from_query(Some(&format!("nonce={}", "ab".repeat(65)))),
            None
        );
        assert_eq!(nonce_from_query(Some("nonce=zz")), None);
        assert_eq!(nonce_from_query(None), None);
    }
}
