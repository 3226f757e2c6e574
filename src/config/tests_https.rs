//! Config tests for `https://` checks: `ca_file`, `tls_server_name`, `tls_verify`.

use super::tests::{errors, http_check, ok};
use super::*;

#[test]
fn https_checks_verify_against_the_system_store_by_default() {
    let c = ok(&http_check("https://127.0.0.1:8443/healthz", ""));
    let CheckKind::Http { tls, .. } = &c.services[0].checks[0].kind else {
        panic!("not an http check");
    };
    assert_eq!(
        tls,
        &Some(HttpTls {
            ca_file: None,
            server_name: None,
            verify: true,
        })
    );
}

#[test]
fn ca_file_is_read_at_load_and_a_server_name_may_be_given() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ca = dir.path().join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["health.example.test".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&ca, cert.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    let extra = format!(
        "\nca_file = \"{}\"\ntls_server_name = \"health.example.test\"",
        ca.display()
    );
    let c = ok(&http_check("https://127.0.0.1:8443/healthz", &extra));
    let CheckKind::Http { tls, .. } = &c.services[0].checks[0].kind else {
        panic!("not an http check");
    };
    assert_eq!(
        tls,
        &Some(HttpTls {
            ca_file: Some(ca),
            server_name: Some("health.example.test".into()),
            verify: true,
        })
    );
}

#[test]
fn an_unusable_ca_file_or_server_name_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "garbage\n").unwrap_or_else(|e| panic!("{e}"));
    let extra = format!(
        "\nca_file = \"{}\"\ntls_server_name = \"bad name!\"",
        bad.display()
    );
    assert_eq!(
        errors(&http_check("https://127.0.0.1:8443/healthz", &extra)),
        [
            format!(
                "t.toml:13:11: service[0].check[0].ca_file: {}: no certificate in it",
                bad.display()
            ),
            "t.toml:14:19: service[0].check[0].tls_server_name: \"bad name!\" is not a DNS name \
             or IP address"
                .to_string(),
        ]
    );
}

#[test]
fn tls_keys_on_a_plain_http_url_are_rejected() {
    assert_eq!(
        errors(&http_check(
            "http://127.0.0.1:8080/healthz",
            "\ntls_verify = false"
        )),
        ["t.toml:13:14: service[0].check[0].tls_verify: applies to https:// URLs only"]
    );
}

#[test]
fn tls_verify_false_with_verification_settings_is_rejected() {
    assert_eq!(
        errors(&http_check(
            "https://127.0.0.1:8443/healthz",
            "\ntls_server_name = \"health.example.test\"\ntls_verify = false"
        )),
        [
            "t.toml:14:14: service[0].check[0].tls_verify: false verifies nothing, so ca_file and \
          tls_server_name would be ignored"
        ]
    );
}
