//! Helpers shared by the proto integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use anyguard_proto::{DecodeContext, EncodeContext, Message};

/// Parses hex, ignoring whitespace, `:` and `#` comments to the end of a line.
pub fn hex(s: &str) -> Vec<u8> {
    let clean: String = s
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    assert!(clean.len() % 2 == 0, "odd number of hex digits");
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

/// Lower-case hex of bytes.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A 4-octet-AS decode context.
pub fn ctx4() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    }
}

/// A 4-octet-AS encode context.
pub fn ectx4() -> EncodeContext {
    EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    }
}

/// The matching encode context.
pub fn ectx_for(ctx: &DecodeContext) -> EncodeContext {
    EncodeContext {
        four_octet_as: ctx.four_octet_as,
        extended_message: ctx.extended_message,
    }
}

/// Wraps a body into a frame with a header.
pub fn frame(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&u16::try_from(body.len() + 19).unwrap().to_be_bytes());
    v.push(msg_type);
    v.extend_from_slice(body);
    v
}

/// Checks a golden vector both ways: bytes decode to `msg`, `msg` encodes to the bytes.
pub fn golden(bytes: &[u8], msg: &Message, ctx: &DecodeContext) {
    let decoded = Message::decode(bytes, ctx).unwrap_or_else(|e| panic!("decode failed: {e:?}"));
    assert_eq!(&decoded, msg, "bytes -> value");
    let encoded = msg.to_bytes(&ectx_for(ctx)).expect("encode");
    assert_eq!(to_hex(&encoded), to_hex(bytes), "value -> bytes");
}
