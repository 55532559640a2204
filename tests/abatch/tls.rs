//! TLS: certificates are verified, --cacert and --insecure change that, and every refusal is
//! said in words, after one attempt, since another could not pass.

use crate::common::*;

/// A server speaking HTTPS with a fresh self-signed certificate for 127.0.0.1, and that
/// certificate in PEM.
fn tls_server() -> (MockServer, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate can be made");
    let pem = cert.cert.pem();
    let server =
        MockServer::start_tls(Behavior::default(), &pem, &cert.signing_key.serialize_pem())
            .expect("TLS mock starts");
    (server, pem)
}

#[test]
fn tls_is_verified_unless_a_ca_is_given_or_checks_are_off() {
    let (server, pem) = tls_server();
    let out = abatch_to(&server)
        .args(["--retries", "0"])
        .write_stdin(records(0..2))
        .assert()
        .code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert!(
        stderr.message().contains("cannot connect to 127.0.0.1:"),
        "{stderr:#?}"
    );
    assert!(stderr.message().contains("certificate"), "{stderr:#?}");
    assert!(server.requests().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let out = abatch_to(&server)
        .arg("--cacert")
        .arg(&ca)
        .args(["-q", "--ordered"])
        .write_stdin(records(0..2))
        .assert()
        .success()
        .stderr("");
    assert_eq!(echoed_ids(&out.get_output().stdout), [0, 1]);

    let out = abatch_to(&server)
        .args(["--insecure", "-q"])
        .write_stdin(records(0..2))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(
        stderr,
        "abatch: warning: --insecure: TLS certificates are not verified\n"
    );

    // A --cacert file that is not what it should be is a usage error, as for -H @FILE.
    let not_pem = dir.path().join("not.pem");
    for (content, problem) in [
        ("hello", " holds no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
            ": certificate 1 of 1 is malformed",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n",
            ": a section has no closing line (-----END CERTIFICATE-----)",
        ),
    ] {
        std::fs::write(&not_pem, content).unwrap();
        let out = abatch_to(&server)
            .arg("--cacert")
            .arg(&not_pem)
            .write_stdin(records(0..2))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        let expected = format!("error: --cacert {}{problem}\n", not_pem.display());
        assert!(stderr.starts_with(&expected), "{stderr}");
    }
    assert_eq!(server.requests().len(), 2, "the runs that were let through");
}

/// A CA: its certificate in PEM, and what signs with it.
fn ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "abatch test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// A server on 127.0.0.1 presenting a certificate for `names` that `issuer` signed (expired
/// long ago if `expired`).
fn server_issued(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    names: &[&str],
    expired: bool,
) -> MockServer {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    MockServer::start_tls(Behavior::default(), &cert.pem(), &key.serialize_pem())
        .expect("TLS mock starts")
}

/// Runs abatch against `url` with up to 3 retries and `args`, expects the run to fail at
/// once, without a retry and without a request reaching `server`, and returns the message.
fn refused(server: &MockServer, url: &str, args: &[&str]) -> String {
    let out = abatch()
        .args(["-u", url, "--retries", "3", "--retry-backoff", "1ms"])
        .args(args)
        .write_stdin(records(0..2))
        .assert()
        .code(1);
    let stderr = Stderr::of(&out.get_output().stderr);
    assert!(stderr.summary.contains(" 0 retries"), "{stderr:#?}");
    assert_eq!(stderr.dead.len(), 2, "{stderr:#?}");
    assert_eq!(stderr.dead[0]["attempts"], 1, "{stderr:#?}");
    assert!(server.requests().is_empty());
    let message = stderr.message().to_owned();
    assert!(
        !message.contains("Other(") && !message.contains("Error("),
        "no library's Debug output: {message}"
    );
    message
}

/// The CA's certificate in a file, for --cacert.
fn ca_file(dir: &tempfile::TempDir, pem: &str) -> String {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused_in_words() {
    let (_, issuer) = ca();
    let server = server_issued(&issuer, &["127.0.0.1"], false);
    let message = refused(&server, &server.url(), &[]);
    assert!(
        message.ends_with(&format!(
            "cannot connect to {}: the server's certificate is not signed by a trusted CA \
             (--cacert adds one)",
            server.addr()
        )),
        "{message}"
    );
}

#[test]
fn an_expired_certificate_is_refused_in_words() {
    let (pem, issuer) = ca();
    let server = server_issued(&issuer, &["127.0.0.1"], true);
    let dir = tempfile::tempdir().unwrap();
    let message = refused(&server, &server.url(), &["--cacert", &ca_file(&dir, &pem)]);
    assert!(
        message.ends_with("the server's certificate expired on 2001-01-01T00:00:00Z"),
        "{message}"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_in_words() {
    let (pem, issuer) = ca();
    let server = server_issued(&issuer, &["example.com"], false);
    let dir = tempfile::tempdir().unwrap();
    let message = refused(&server, &server.url(), &["--cacert", &ca_file(&dir, &pem)]);
    assert!(
        message
            .ends_with("the server's certificate is not valid for 127.0.0.1; it names example.com"),
        "{message}"
    );
}

#[test]
fn a_ca_certificate_served_as_the_server_s_own_says_what_cacert_needs() {
    let (pem, issuer) = ca();
    // The server presents the CA's own certificate, and the CA is trusted: what someone who
    // made one self-signed certificate and gave it to both ends may have done.
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let server = MockServer::start_tls(Behavior::default(), &cert.pem(), &key.serialize_pem())
        .expect("TLS mock starts");
    drop((pem, issuer));
    let dir = tempfile::tempdir().unwrap();
    let message = refused(
        &server,
        &server.url(),
        &["--cacert", &ca_file(&dir, &cert.pem())],
    );
    assert!(
        message.ends_with(
            "the server's certificate is a CA certificate; --cacert needs the CA that issued \
             the server's certificate, and the server a certificate of its own"
        ),
        "{message}"
    );
}

#[test]
fn https_to_a_plain_http_port_is_one_attempt_said_in_words() {
    let server = quick_server();
    let url = server.url().replace("http://", "https://");
    let message = refused(&server, &url, &[]);
    assert!(
        message.ends_with(&format!(
            "cannot connect to {}: the server did not answer with TLS; is it plain http?",
            server.addr()
        )),
        "{message}"
    );
}
