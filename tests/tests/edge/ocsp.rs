//! OCSP stapling from a response file, and the edge's client certificate for core renewed on
//! disk without a restart.

use super::*;
use kiorex_testkit::wait_until;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An OCSP response about `cert` from `ca`, as the CA's responder would sign it; `revoked`
/// chooses the answer. Written aside and renamed into `target`, as a fetch job does.
fn ocsp_response(ca: &kiorex_testkit::pki::Pki, cert: &Path, revoked: bool, target: &Path) {
    let dir = ca.dir.path();
    let serial = openssl(&["x509", "-noout", "-serial", "-in", path(cert)]);
    let serial = serial.trim().trim_start_matches("serial=");
    let line = if revoked {
        format!("R\t991231235959Z\t250101000000Z\t{serial}\tunknown\t/CN=127.0.0.1\n")
    } else {
        format!("V\t991231235959Z\t\t{serial}\tunknown\t/CN=127.0.0.1\n")
    };
    let index = dir.join("index.txt");
    std::fs::write(&index, line).unwrap();
    let request = dir.join("ocsp-request.der");
    openssl(&[
        "ocsp",
        "-issuer",
        path(&ca.ca_file),
        "-cert",
        path(cert),
        "-no_nonce",
        "-reqout",
        path(&request),
    ]);
    let aside = target.with_extension("new");
    openssl(&[
        "ocsp",
        "-index",
        path(&index),
        "-rsigner",
        path(&ca.ca_file),
        "-rkey",
        path(&ca.ca_key_file),
        "-CA",
        path(&ca.ca_file),
        "-reqin",
        path(&request),
        "-respout",
        path(&aside),
        "-ndays",
        "1",
    ]);
    std::fs::rename(&aside, target).unwrap();
}

/// What `openssl s_client -status` says about the stapled response.
fn stapled(stack: &EdgeStack) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", stack.edge.port),
            "-status",
            "-CAfile",
            path(&stack.public.ca_file),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_good_ocsp_response_is_stapled_and_a_revoked_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let response: PathBuf = dir.path().join("edge.ocsp");
    let file = response.to_str().unwrap().to_owned();
    let stack = tokio::task::spawn_blocking(move || {
        EdgeStack::start(&[
            ("KIOREX_EDGE__RELOAD_INTERVAL_SECONDS", "1"),
            ("KIOREX_EDGE__OCSP_RESPONSE_FILE", &file),
        ])
    })
    .await
    .unwrap();
    // No response yet: the edge serves without one.
    assert!(stapled(&stack).contains("OCSP response: no response sent"));

    ocsp_response(&stack.public, &stack.public_cert.cert, false, &response);
    let stapling = wait_until(Duration::from_secs(10), || {
        let out = stapled(&stack);
        out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good")
    });
    assert!(
        stapling,
        "the good response was not stapled:\n{}",
        stapled(&stack)
    );

    // A revoked answer must never be stapled: the edge drops it and logs why.
    ocsp_response(&stack.public, &stack.public_cert.cert, true, &response);
    let dropped = wait_until(Duration::from_secs(10), || {
        stapled(&stack).contains("OCSP response: no response sent")
    });
    assert!(dropped, "the revoked response was not dropped");
    let log = std::fs::read_to_string(&stack.edge.log).unwrap();
    assert!(log.contains("revoked"), "{log}");
}

/// Sends `n` requests at once (so the edge opens new connections to core) and counts the
/// answers that came from core.
async fn answered_of(stack: &EdgeStack, n: usize) -> usize {
    let client = https_client(stack);
    let mut calls = Vec::new();
    for _ in 0..n {
        let request = client.get(format!("{}/fhir/metadata", stack.edge.base()));
        calls.push(tokio::spawn(async move {
            request.send().await.is_ok_and(|r| r.status() == 200)
        }));
    }
    let mut answered = 0;
    for call in calls {
        answered += usize::from(call.await.unwrap());
    }
    answered
}

/// How often the edge has logged taking up a new client certificate.
fn client_reloads(stack: &EdgeStack) -> usize {
    std::fs::read_to_string(&stack.edge.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("certificate reloaded") && l.contains("edge client certificate"))
        .count()
}

fn replace(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edges_client_certificate_is_renewed_without_a_restart() {
    let stack = stack(&[
        ("KIOREX_EDGE__RELOAD_INTERVAL_SECONDS", "1"),
        ("KIOREX_EDGE__PER_IP_PER_SECOND", "100000"),
        ("KIOREX_EDGE__PER_IP_BURST", "100000"),
    ])
    .await;
    assert_eq!(answered_of(&stack, 4).await, 4);
    let pid = stack.edge.pid();

    // The certificate on disk expires (replaced by an expired one). Once the edge has taken it
    // up, core refuses the new connections the edge opens with it, and says why in its log:
    // the edge presents what the file holds. (The partners may not notice: the edge's pooled
    // connections, made before, still serve them.)
    let expired = stack.internal.expired_client(
        "edge-client-expired",
        kiorex_testkit::edge::EDGE_CLIENT_NAME,
    );
    replace(&stack.edge_client.key, &expired.key_pem);
    replace(&stack.edge_client.cert, &expired.cert_pem);
    assert!(
        wait_until(Duration::from_secs(10), || client_reloads(&stack) >= 1),
        "the edge did not take up the new file"
    );
    answered_of(&stack, 16).await;
    let refusals = || {
        std::fs::read_to_string(&stack.core.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("refused a TLS handshake") && l.contains("certificate expired"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || refusals() > 0),
        "core did not refuse the expired certificate: {}",
        std::fs::read_to_string(&stack.core.log).unwrap_or_default()
    );

    // IT drops the renewed certificate in place: every new connection is accepted again.
    let renewed = stack.internal.client(
        "edge-client-renewed",
        kiorex_testkit::edge::EDGE_CLIENT_NAME,
    );
    replace(&stack.edge_client.key, &renewed.key_pem);
    replace(&stack.edge_client.cert, &renewed.cert_pem);
    assert!(
        wait_until(Duration::from_secs(10), || client_reloads(&stack) >= 2),
        "the edge did not take up the renewed file"
    );
    let refused_before = refusals();
    assert_eq!(answered_of(&stack, 16).await, 16);
    assert_eq!(
        refusals(),
        refused_before,
        "new connections are accepted again"
    );
    assert_eq!(stack.edge.pid(), pid, "the edge was not restarted");
}
