//! Config tests for `reuse_connection` on http checks.

use super::tests::{errors, http_check, insert, ok};
use super::*;

fn reuse_of(c: &Config) -> bool {
    let CheckKind::Http {
        reuse_connection, ..
    } = &c.services[0].checks[0].kind
    else {
        panic!("not an http check");
    };
    *reuse_connection
}

#[test]
fn reuse_connection_is_off_by_default_and_may_be_set_for_http_and_https() {
    assert!(!reuse_of(&ok(&http_check(
        "http://127.0.0.1:8080/healthz",
        ""
    ))));
    for url in [
        "http://127.0.0.1:8080/healthz",
        "https://127.0.0.1:8443/healthz",
    ] {
        let c = ok(&http_check(url, "\nreuse_connection = true"));
        assert!(reuse_of(&c), "{url}");
        let c = ok(&http_check(url, "\nreuse_connection = false"));
        assert!(!reuse_of(&c), "{url}");
    }
}

#[test]
fn reuse_connection_on_another_check_type_or_not_a_boolean_is_rejected() {
    assert_eq!(
        errors(&insert(12, "reuse_connection = true")),
        [
            "t.toml:13:20: service[0].check[0].reuse_connection: `reuse_connection` does not \
          apply to a command check"
        ]
    );
    let got = errors(&http_check(
        "http://127.0.0.1:8080/healthz",
        "\nreuse_connection = \"yes\"",
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("t.toml:13:20: ") && got[0].contains("reuse_connection"),
        "{got:?}"
    );
}

#[test]
fn a_changed_reuse_connection_is_a_changed_check() {
    let off = ok(&http_check("http://127.0.0.1:8080/healthz", ""));
    let on = ok(&http_check(
        "http://127.0.0.1:8080/healthz",
        "\nreuse_connection = true",
    ));
    let (off, on) = (&off.services[0].checks[0], &on.services[0].checks[0]);
    assert!(crate::health::same_check(off, off));
    assert!(!crate::health::same_check(off, on));
}
