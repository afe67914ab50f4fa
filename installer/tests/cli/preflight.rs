use super::kiorexctl;
use std::net::TcpListener;

/// `preflight --output json` on this machine: every check is reported with a known status, a
/// failed or warned check says what to do, and the exit status follows the worst result.
#[test]
fn preflight_json_on_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = kiorexctl(
        dir.path(),
        &["preflight", "--data-dir", data, "--output", "json"],
    );
    let report = run.json();
    let checks = report["checks"].as_array().expect("checks");
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for id in [
        "cpu",
        "memory",
        "disk.size",
        "disk.free",
        "disk.fsync",
        "kernel",
        "module.br_netfilter",
        "module.overlay",
        "module.rbd",
        "sysctl.vm.overcommit_memory",
        "time.sync",
        "network.default_route",
        "port.6443",
        "site",
    ] {
        assert!(ids.contains(&id), "check {id} missing: {ids:?}");
    }
    let mut worst = "pass";
    for c in checks {
        let status = c["status"].as_str().unwrap();
        assert!(["pass", "warn", "fail"].contains(&status), "{c}");
        assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
        assert_eq!(
            c["fix"].as_str().unwrap().is_empty(),
            status == "pass",
            "{c}"
        );
        worst = match (worst, status) {
            (_, "fail") | ("fail", _) => "fail",
            (_, "warn") | ("warn", _) => "warn",
            _ => "pass",
        };
    }
    assert_eq!(report["result"], worst);
    assert_eq!(
        run.status,
        if worst == "fail" { 3 } else { 0 },
        "{}",
        run.stderr
    );
    // The checks are read from this machine, not invented: the kernel release is the real one.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let kernel = checks.iter().find(|c| c["id"] == "kernel").unwrap();
    assert!(kernel["detail"].as_str().unwrap().contains(release.trim()));
}

/// With a site config, the services it names are reached: a listening port passes, a closed
/// one fails naming the host and port, and a name that does not resolve fails.
#[test]
fn preflight_reaches_the_site_services() {
    let dir = tempfile::tempdir().unwrap();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let site = format!(
        r#"
[site]
name = "test-site"
[[facility]]
code = "TST"
name = "Test Hospital"
[portals]
lan = "localhost.localdomain"
dmz = "no-such-host.invalid"
[directory]
url = "ldap://127.0.0.1:{}"
base_dn = "dc=test,dc=lan"
[smtp]
relay = "127.0.0.1:{closed_port}"
"#,
        open.local_addr().unwrap().port()
    );
    std::fs::write(dir.path().join("kiorex-site.toml"), site).unwrap();
    let data = dir.path().to_str().unwrap();
    let run = kiorexctl(
        dir.path(),
        &[
            "preflight",
            "--site",
            "kiorex-site.toml",
            "--data-dir",
            data,
            "--no-ports",
            "--timeout",
            "1",
            "--output",
            "json",
        ],
    );
    let report = run.json();
    let find = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {report}"))
            .clone()
    };
    assert_eq!(find("reach.directory")["status"], "pass");
    let smtp = find("reach.smtp");
    assert_eq!(smtp["status"], "fail");
    assert!(
        smtp["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{closed_port}"))
    );
    assert_eq!(find("dns.portal_dmz")["status"], "fail");
    assert_eq!(run.status, 3);
    assert!(run.stderr.contains("KX-CTL-020"), "{}", run.stderr);
}

/// A TLS service is judged by its handshake: a plain TCP listener on an ldaps:// URL fails.
#[test]
fn preflight_fails_a_tls_endpoint_that_does_not_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Answer the ClientHello with bytes that are not TLS, then close.
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"220 not tls\r\n");
        }
    });
    std::fs::write(
        dir.path().join("kiorex-site.toml"),
        format!(
            "[site]\nname = \"t\"\n[[facility]]\ncode = \"T\"\nname = \"T\"\n[portals]\nlan = \"a.example.lan\"\ndmz = \"b.example.org\"\n\
             [directory]\nurl = \"ldaps://127.0.0.1:{port}\"\nbase_dn = \"dc=t\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().to_str().unwrap();
    let run = kiorexctl(
        dir.path(),
        &[
            "preflight",
            "--site",
            "kiorex-site.toml",
            "--data-dir",
            data,
            "--no-ports",
            "--timeout",
            "2",
            "--output",
            "json",
        ],
    );
    server.join().unwrap();
    let report = run.json();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "reach.directory")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("TLS failed"),
        "{check}"
    );
}

/// A TLS server on loopback with a certificate for `name`; answers one handshake.
fn tls_server(name: &str) -> (u16, std::thread::JoinHandle<()>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                break;
            }
        }
    });
    (port, handle)
}

/// A real TLS service passes with its certificate's name and expiry; one whose certificate
/// names another host fails, naming what it does name. (Host names need a dot in the site
/// config, so the services are addressed by IP, which the certificates name.)
#[test]
fn preflight_checks_the_tls_certificate_of_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _good_server) = tls_server("127.0.0.1");
    let (wrong, _wrong_server) = tls_server("someone-else.example.org");
    std::fs::write(
        dir.path().join("kiorex-site.toml"),
        format!(
            "[site]\nname = \"t\"\n[[facility]]\ncode = \"T\"\nname = \"T\"\n[portals]\nlan = \"a.example.lan\"\ndmz = \"b.example.org\"\n\
             [directory]\nurl = \"ldaps://127.0.0.1:{good}\"\nbase_dn = \"dc=t\"\n[idp]\nissuer = \"https://127.0.0.1:{wrong}/realms/h\"\nclient_id = \"kiorex\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().to_str().unwrap();
    let run = kiorexctl(
        dir.path(),
        &[
            "preflight",
            "--site",
            "kiorex-site.toml",
            "--data-dir",
            data,
            "--no-ports",
            "--timeout",
            "3",
            "--output",
            "json",
        ],
    );
    // (the server threads are not joined: a server the check never reached would block)
    let report = run.json();
    let find = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    let directory = find("reach.directory");
    assert_eq!(directory["status"], "pass", "{directory}");
    assert!(
        directory["detail"]
            .as_str()
            .unwrap()
            .contains("certificate for 127.0.0.1"),
        "{directory}"
    );
    let idp = find("reach.idp");
    assert_eq!(idp["status"], "fail", "{idp}");
    assert!(
        idp["detail"]
            .as_str()
            .unwrap()
            .contains("someone-else.example.org"),
        "{idp}"
    );
}
