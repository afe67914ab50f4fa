//! Core's internal listener accepts only the edge's certificate from the internal CA.

use super::*;
use kiorex_testkit::edge::EDGE_CLIENT_NAME;
use kiorex_testkit::pki::{CertFiles, Pki};

fn client_with(stack: &EdgeStack, identity: Option<&CertFiles>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(stack.internal.ca_pem.as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_wrong_ca_client_certificate_cannot_reach_cores_internal_listener() {
    let stack = stack(&[]).await;
    let url = format!("https://127.0.0.1:{}/health/live", stack.internal_port);
    let ok = client_with(&stack, Some(&stack.edge_client))
        .get(&url)
        .send()
        .await;
    assert_eq!(
        ok.expect("the edge's certificate is accepted").status(),
        200
    );

    let other_ca = Pki::new("Someone else's CA");
    let refused = [
        ("no certificate", None),
        (
            "another CA",
            Some(other_ca.client("stranger", EDGE_CLIENT_NAME)),
        ),
        (
            "expired",
            Some(stack.internal.expired_client("expired", EDGE_CLIENT_NAME)),
        ),
        (
            "another name",
            Some(stack.internal.client("portal", "portal.kiorex.internal")),
        ),
    ];
    for (what, identity) in refused {
        let result = client_with(&stack, identity.as_ref())
            .get(&url)
            .send()
            .await;
        assert!(
            result.is_err(),
            "{what}: core's internal listener answered {:?}",
            result.map(|r| r.status())
        );
    }

    // The edge itself gets through: it is ready because core answers it over mutual TLS.
    let (status, _, body) =
        call(https_client(&stack).get(format!("{}/health/ready", stack.edge.base()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["core"], "pass");
}
