//! Sign-in through a real OpenID Connect provider (npm oidc-provider): the whole browserless
//! authorization-code flow with PKCE, group mapping, replayed state, logout, a provider that is
//! down, and the ID-token checks (forged, expired, wrong audience, wrong nonce).

use crate::support::{Browser, map_groups, session_cookie};
use kiorex_api::identity::IdentitySettings;
use kiorex_api::identity::oidc::{OidcError, OidcSettings, client_from_parts, verify_id_token};
use kiorex_testkit::oidc::{CLIENT_ID, OidcProvider};
use kiorex_testkit::{Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn users() -> Value {
    json!({
        "olivia.ortiz": {"password": "Correct-Horse-42", "name": "Olivia Ortiz", "email": "olivia@hospital.test", "groups": ["kiorex-physicians"]},
        "victor.visitor": {"password": "Correct-Horse-43", "name": "Victor Visitor", "email": "victor@hospital.test", "groups": ["visitors"]}
    })
}

/// Starts Kiorex and the provider, each knowing the other's address.
async fn setup() -> (TestApp, OidcProvider) {
    // The provider must know Kiorex's callback and Kiorex the provider's issuer: bind Kiorex's
    // port first.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callback = format!(
        "http://{}/api/v1/auth/oidc/callback",
        listener.local_addr().unwrap()
    );
    let idp = OidcProvider::start(&callback, users());
    let app = spawn_for(&idp, &callback, listener).await;
    (app, idp)
}

async fn spawn_for(idp: &OidcProvider, callback: &str, listener: std::net::TcpListener) -> TestApp {
    let settings = IdentitySettings {
        oidc: Some(OidcSettings {
            issuer_url: idp.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: None,
            redirect_url: callback.into(),
            scopes: vec!["profile".into(), "email".into(), "groups".into()],
            username_claim: "preferred_username".into(),
            email_claim: "email".into(),
            name_claim: "name".into(),
            groups_claim: "groups".into(),
            ca_pem: None,
            clock_skew_seconds: 60,
            post_logout_redirect_url: Some("http://127.0.0.1/signed-out".into()),
        }),
        ..IdentitySettings::default()
    };
    let app = TestApp::spawn_on(settings, listener).await;
    map_groups(&app, &[("kiorex-physicians", "physician")]).await;
    app
}

/// A browser without a browser: follows redirects, keeps the provider's cookies, fills in the
/// login form and the consent form, and comes back to Kiorex's callback.
async fn sign_in(
    app: &TestApp,
    idp: &OidcProvider,
    user: &str,
    password: &str,
) -> Result<(Browser, String), Reply> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = app
        .send(http.get(app.url("/api/v1/auth/oidc/login?return_to=/chart/1")))
        .await;
    if start.status != StatusCode::SEE_OTHER {
        return Err(start);
    }
    let mut next = start.header("location").unwrap().to_owned();
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut form: Option<(String, Vec<(&str, String)>)> = None;
    for _ in 0..20 {
        if next.starts_with(&app.base) {
            let back = app.send(http.get(&next)).await;
            if back.status != StatusCode::SEE_OTHER {
                return Err(back);
            }
            let cookie = session_cookie(&back).expect("session cookie");
            let to = back.header("location").unwrap().to_owned();
            let session = app
                .send(
                    http.get(app.url("/api/v1/auth/session"))
                        .header("cookie", &cookie),
                )
                .await;
            return Ok((
                Browser {
                    cookie,
                    csrf: session.body["csrf_token"].as_str().unwrap_or("").into(),
                    body: session.body,
                },
                to,
            ));
        }
        let url = if next.starts_with('/') {
            format!("{}{next}", idp.issuer)
        } else {
            next.clone()
        };
        let header = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match form.take() {
            Some((_, fields)) => http.post(&url).form(&fields),
            None => http.get(&url),
        };
        let response = request.header("cookie", header).send().await.expect("idp");
        for c in response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("expires=Thu, 01 Jan 1970") {
                    cookies.remove(k);
                } else {
                    cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        if let Some(location) = location.filter(|_| status.is_redirection()) {
            next = location;
            continue;
        }
        if status == StatusCode::OK && body.contains("<form") {
            let action = body
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap()
                .to_owned();
            form = Some((
                action.clone(),
                vec![
                    ("login", user.to_owned()),
                    ("password", password.to_owned()),
                ],
            ));
            next = action;
            continue;
        }
        return Err(Reply {
            status,
            headers: Default::default(),
            body: json!({"idp": body}),
        });
    }
    panic!("the sign-in did not come back to Kiorex");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_provider_maps_groups_and_returns_to_the_page() {
    let (app, mut idp) = setup().await;
    let (olivia, landed) = sign_in(&app, &idp, "olivia.ortiz", "Correct-Horse-42")
        .await
        .expect("sign-in");
    assert_eq!(landed, "/chart/1");
    assert_eq!(olivia.roles(), ["physician"]);
    assert_eq!(olivia.body["method"], "oidc");
    // The provider rotates its signing key: Kiorex fetches the new key set at the first token
    // signed with it, and the sign-in works.
    idp.restart();
    let (again, _) = sign_in(&app, &idp, "olivia.ortiz", "Correct-Horse-42")
        .await
        .expect("after key rotation");
    assert_eq!(again.roles(), ["physician"]);
    // The provider checks passwords for real.
    let wrong = sign_in(&app, &idp, "olivia.ortiz", "wrong")
        .await
        .err()
        .expect("refused");
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // Someone whose groups map to nothing gets "no access", not an error page.
    let visitor = sign_in(&app, &idp, "victor.visitor", "Correct-Horse-43")
        .await
        .err()
        .expect("no access");
    assert_eq!(visitor.status, StatusCode::FORBIDDEN);
    assert_eq!(visitor.body["code"], "KX-AUTH-005");
    // Out of the group at the provider: no access at the next sign-in.
    idp.set_groups("olivia.ortiz", &["visitors"]);
    let removed = sign_in(&app, &idp, "olivia.ortiz", "Correct-Horse-42")
        .await
        .err()
        .expect("removed");
    assert_eq!(removed.status, StatusCode::FORBIDDEN);
    // Logout ends the session here and points at the provider's logout.
    let out = olivia
        .post(&app, "/api/v1/auth/logout", &json!({}), true)
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    let url = out.body["idp_logout_url"].as_str().expect("logout url");
    assert!(
        url.starts_with(&idp.issuer) && url.contains("id_token_hint="),
        "{url}"
    );
    assert_eq!(
        olivia.get(&app, "/api/v1/auth/session").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_unknown_state_is_refused_and_a_provider_that_is_down_is_explained() {
    let (app, mut idp) = setup().await;
    let forged = app
        .get_anonymous("/api/v1/auth/oidc/callback?code=abc&state=not-ours")
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.body["code"], "KX-AUTH-008");
    idp.stop();
    let down = app.get_anonymous("/api/v1/auth/oidc/login").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert_eq!(down.body["code"], "KX-AUTH-007");
    // Local administrators still sign in while the provider is down.
    let admin = crate::support::login(&app, "admin.a", kiorex_testkit::STAFF_PASSWORD).await;
    assert_eq!(admin.status, StatusCode::OK);
}

/// ID tokens signed with a key of our own, checked by the same verifier Kiorex uses.
mod id_tokens {
    use super::*;
    use base64::Engine;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    const ISSUER: &str = "https://idp.hospital.test";

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    fn client_trusting(key: &SigningKey) -> kiorex_api::identity::oidc::Client {
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let metadata = json!({
            "issuer": ISSUER, "authorization_endpoint": format!("{ISSUER}/auth"),
            "token_endpoint": format!("{ISSUER}/token"), "jwks_uri": format!("{ISSUER}/jwks"),
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "use": "sig", "alg": "EdDSA"}]});
        client_from_parts(&metadata.to_string(), &jwks.to_string(), "kiorex-portal").unwrap()
    }

    fn token(key: &SigningKey, claims: Value) -> String {
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn claims(aud: &str, nonce: &str, exp_offset: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": ISSUER, "sub": "olivia", "aud": aud, "iat": now - 10, "exp": now + exp_offset,
               "nonce": nonce, "preferred_username": "olivia", "groups": ["kiorex-physicians"]})
    }

    fn refused(result: Result<Value, OidcError>) -> bool {
        matches!(result, Err(OidcError::Rejected(_)))
    }

    #[test]
    fn only_a_genuine_current_token_for_us_with_our_nonce_passes() {
        let genuine = key();
        let client = client_trusting(&genuine);
        let good = verify_id_token(
            &client,
            &token(&genuine, claims("kiorex-portal", "n1", 300)),
            "n1",
            60,
        )
        .unwrap();
        assert_eq!(
            good["groups"][0], "kiorex-physicians",
            "custom claims come through"
        );
        let forged = token(&key(), claims("kiorex-portal", "n1", 300));
        assert!(
            refused(verify_id_token(&client, &forged, "n1", 60)),
            "signed by another key"
        );
        let expired = token(&genuine, claims("kiorex-portal", "n1", -600));
        assert!(
            refused(verify_id_token(&client, &expired, "n1", 60)),
            "expired beyond the skew"
        );
        let barely = token(&genuine, claims("kiorex-portal", "n1", -30));
        assert!(
            verify_id_token(&client, &barely, "n1", 60).is_ok(),
            "within the tolerated skew"
        );
        let other_app = token(&genuine, claims("another-app", "n1", 300));
        assert!(
            refused(verify_id_token(&client, &other_app, "n1", 60)),
            "wrong audience"
        );
        let replay = token(&genuine, claims("kiorex-portal", "n1", 300));
        assert!(
            refused(verify_id_token(&client, &replay, "n2", 60)),
            "wrong nonce"
        );
        let mut tampered = token(&genuine, claims("kiorex-portal", "n1", 300));
        tampered.insert(tampered.len() - 3, 'A');
        assert!(refused(verify_id_token(&client, &tampered, "n1", 60)));
    }
}
