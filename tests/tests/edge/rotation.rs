//! The edge's certificate is replaced on disk while partners keep sending requests: none fails,
//! and new connections get the new certificate without a restart.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The certificate the edge presents on a new connection.
async fn served_certificate(stack: &EdgeStack) -> Vec<u8> {
    let tls = raw_tls(stack).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Replaces `path` in one step (write aside, then rename), as deployment tools do.
fn replace(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_drops_no_request() {
    let stack = Arc::new(
        stack(&[
            ("KIOREX_EDGE__RELOAD_INTERVAL_SECONDS", "1"),
            ("KIOREX_EDGE__PER_IP_PER_SECOND", "100000"),
            ("KIOREX_EDGE__PER_IP_BURST", "100000"),
        ])
        .await,
    );
    assert_eq!(
        served_certificate(&stack).await,
        der_of(&stack.public_cert.cert_pem)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut senders = Vec::new();
    for sender in 0..3 {
        let (stack, stop, ok, failed) = (stack.clone(), stop.clone(), ok.clone(), failed.clone());
        senders.push(tokio::spawn(async move {
            let mut client = https_client(&stack);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Sender 0 keeps its connection; the others reconnect often, so handshakes
                // happen all through the rotation.
                if sender > 0 && n % 5 == 0 {
                    client = https_client(&stack);
                }
                n += 1;
                let answered = match client
                    .get(format!("{}/fhir/metadata", stack.edge.base()))
                    .send()
                    .await
                {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if answered { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Rotate under load: wait until requests are flowing.
    answered_at_least(&ok, 30).await;
    let renewed = stack
        .public
        .server("edge-public-renewed", &["127.0.0.1", "localhost"]);
    // Key first, then certificate: for a moment the pair does not match, and the edge must
    // keep serving the old one until both files agree.
    replace(&stack.public_cert.key, &renewed.key_pem);
    // Hold the mismatched pair past the 1 s reload interval (this is the behaviour under test:
    // at least one reload check must see the key without its certificate).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replace(&stack.public_cert.cert, &renewed.cert_pem);
    let new_der = der_of(&renewed.cert_pem);
    let mut switched = false;
    for _ in 0..50 {
        if served_certificate(&stack).await == new_der {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And keep the load on for a while with the new certificate.
    let so_far = ok.load(Ordering::Relaxed);
    answered_at_least(&ok, so_far + 30).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(switched, "the edge never served the renewed certificate");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "{failed} requests failed during the rotation ({ok} succeeded)"
    );
    assert!(ok > 20, "too few requests to prove anything: {ok}");
}

/// Waits (up to 20 s) until `ok` requests have been answered.
async fn answered_at_least(ok: &AtomicU64, n: u64) {
    for _ in 0..400 {
        if ok.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} requests were answered");
}
