//! The allow-list and the scope check happen at the edge; what they refuse never reaches core.

use super::*;

/// A REST write with a valid staff token, sent through the edge, is answered 404 by the edge
/// and core never sees it: the patient does not exist afterwards. The same request sent to core
/// on the LAN creates it (the control). Sign-in through the edge is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_outside_the_allow_list_never_reaches_core() {
    let stack = stack(&[]).await;
    let client = https_client(&stack);
    let staff = staff_token(&stack).await;
    let registration = |family: &str| json!({"family": family, "given": ["Ada"], "gender": "female", "birth_date": "1970-01-01"});
    let (status, headers, body) = call(
        client
            .post(format!("{}/api/v1/patients", stack.edge.base()))
            .bearer_auth(&staff)
            .json(&registration("Edgeleak")),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "KX-EDGE-404");
    assert!(
        headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, _, body) = call(
        client
            .post(format!("{}/api/v1/auth/token", stack.edge.base()))
            .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.get("access_token").is_none());

    // Existing and non-existing paths get the same answer (only the request id differs).
    let (_, _, unknown) = call(client.get(format!("{}/no/such/thing", stack.edge.base()))).await;
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(unknown), strip(body));

    let lan = reqwest::Client::new();
    let search = |family: &str| {
        lan.get(format!("{}/fhir/Patient?family={family}", stack.core.base))
            .bearer_auth(&staff)
    };
    let (_, _, bundle) = call(search("Edgeleak")).await;
    assert_eq!(
        bundle["entry"].as_array().map(Vec::len),
        Some(0),
        "the write sent through the edge reached core: {bundle}"
    );
    let (status, _, _) = call(
        lan.post(format!("{}/api/v1/patients", stack.core.base))
            .bearer_auth(&staff)
            .json(&registration("Lanonly")),
    )
    .await;
    assert_eq!(status, 201, "the control write on the LAN works");
    let (_, _, bundle) = call(search("Lanonly")).await;
    assert_eq!(
        bundle["entry"].as_array().map(Vec::len),
        Some(1),
        "{bundle}"
    );

    // What the allow-list admits is forwarded to core over mutual TLS.
    let (status, headers, capability) =
        call(client.get(format!("{}/fhir/metadata", stack.edge.base()))).await;
    assert_eq!(status, 200, "{capability}");
    assert_eq!(capability["resourceType"], "CapabilityStatement");
    assert!(headers.contains_key("strict-transport-security"));
    assert!(headers.contains_key("x-request-id"));
    assert!(
        !headers.contains_key("server-timing"),
        "no timing of the inside unless edge.server_timing is on"
    );
    let text = metrics(&stack).await;
    assert_eq!(
        metric(
            &text,
            "kiorex_edge_requests_total{outcome=\"rejected\",reason=\"not_found\"}"
        ),
        3
    );
    assert_eq!(
        metric(&text, "kiorex_edge_requests_total{outcome=\"forwarded\"}"),
        1
    );
    // Only the forwarded request waited for core.
    assert_eq!(
        metric(&text, "kiorex_edge_upstream_duration_seconds_count"),
        1
    );
    assert_eq!(
        metric(&text, "kiorex_edge_request_duration_seconds_count"),
        4
    );
}

/// The edge checks the SMART scope the route needs before anything is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_token_without_the_scope_is_refused_at_the_edge() {
    let stack = stack(&[]).await;
    let client = https_client(&stack);
    let url = |path: &str| format!("{}{path}", stack.edge.base());
    let observations_only = stack.partner_token("lab-north", "system/Observation.read");
    let (status, _, body) = call(
        client
            .get(url("/fhir/Patient?family=X"))
            .bearer_auth(&observations_only),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("KX-EDGE-403")),
        "{body}"
    );
    let reader = stack.partner_token("lab-north", "system/Patient.read");
    let (status, _, body) = call(
        client
            .post(url("/fhir/Patient"))
            .bearer_auth(&reader)
            .header("content-type", "application/fhir+json")
            .body(r#"{"resourceType":"Patient"}"#),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("KX-EDGE-403")),
        "a read scope does not write: {body}"
    );

    // No token, a forged one, an expired one: 401 at the edge.
    let forged = kiorex_testkit::edge::sign_partner_token(
        &kiorex_api::auth::generate_signing_key_pem().unwrap(),
        "lab-north",
        "system/*.*",
        300,
    );
    let expired = kiorex_testkit::edge::sign_partner_token(
        &std::fs::read_to_string(&stack.site.key_file).unwrap(),
        "lab-north",
        "system/*.*",
        -600,
    );
    for token in [None, Some(forged), Some(expired)] {
        let mut request = client.get(url("/fhir/Patient"));
        if let Some(t) = &token {
            request = request.bearer_auth(t);
        }
        let (status, _, body) = call(request).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("KX-EDGE-401")),
            "{body}"
        );
    }

    // The right scope passes the edge; core answers (and checks again).
    let (status, _, body) = call(
        client
            .get(url("/fhir/Patient?family=X"))
            .bearer_auth(&reader),
    )
    .await;
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        !code.starts_with("KX-EDGE"),
        "refused at the edge: {status} {body}"
    );
    let text = metrics(&stack).await;
    assert_eq!(
        metric(
            &text,
            "kiorex_edge_requests_total{outcome=\"rejected\",reason=\"insufficient_scope\"}"
        ),
        2
    );
    assert_eq!(
        metric(
            &text,
            "kiorex_edge_requests_total{outcome=\"rejected\",reason=\"unauthenticated\"}"
        ),
        3
    );
}
