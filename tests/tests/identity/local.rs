//! Local accounts: sessions and CSRF, lockout, TOTP, session revocation, API clients.

use crate::support::{audit_count, browser, login, login_with, sign_in};
use kiorex_api::identity::IdentitySettings;
use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::json;

use kiorex_testkit::STAFF_PASSWORD as PASSWORD;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_is_locked_down_and_state_changes_need_the_csrf_token() {
    let app = TestApp::spawn().await;
    let reply = login(&app, "frontdesk.a", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let set_cookie = reply.header("set-cookie").expect("cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} missing: {set_cookie}"
        );
    }
    let desk = browser(&reply);
    assert_eq!(
        desk.get(&app, "/api/v1/auth/session").await.status,
        StatusCode::OK
    );
    let registration =
        json!({"family": "Csrf", "given": ["Carla"], "birth_date": "1990-01-01", "sex": "female"});
    let forged = desk
        .post(&app, "/api/v1/patients", &registration, false)
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.body["code"], "KX-AUTH-004");
    let real = desk
        .post(&app, "/api/v1/patients", &registration, true)
        .await;
    assert_ne!(real.status, StatusCode::FORBIDDEN, "{}", real.body);
    assert!(
        real.status.is_success() || real.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        real.body
    );
    // A second sign-in gets a new session token: tokens are never reused across sign-ins.
    let again = sign_in(&app, "frontdesk.a", PASSWORD).await;
    assert_ne!(again.cookie, desk.cookie);
    let out = desk
        .post(&app, "/api/v1/auth/logout", &json!({}), true)
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(
        desk.get(&app, "/api/v1/auth/session").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        again.get(&app, "/api/v1/auth/session").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_an_admin_can_revoke_one() {
    let app = TestApp::spawn().await;
    let nurse = sign_in(&app, "nurse.a", PASSWORD).await;
    // Idle past the limit: the last request was longer ago than session_idle_seconds.
    app.sql("UPDATE user_session SET last_seen_at = now() - interval '16 minutes'");
    let ended = nurse.get(&app, "/api/v1/auth/session").await;
    assert_eq!(ended.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ended.body["reason"], "session-ended");

    let nurse = sign_in(&app, "nurse.a", PASSWORD).await;
    let list = app
        .get(User::Admin, "/api/v1/auth/sessions?username=nurse.a")
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let sessions = list.body.as_array().expect("list");
    assert_eq!(sessions.len(), 1, "the idle one is gone: {}", list.body);
    let id = sessions[0]["id"].as_str().unwrap();
    let revoked = app
        .delete(User::Admin, &format!("/api/v1/auth/sessions/{id}"))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    assert_eq!(
        nurse.get(&app, "/api/v1/auth/session").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A nurse cannot look at someone else's sessions.
    let other = app
        .get(User::NurseA, "/api/v1/auth/sessions?username=admin.a")
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_account_and_then_the_address() {
    let mut settings = IdentitySettings::default();
    settings.lockout.address_threshold = 8;
    let app = TestApp::spawn_with(settings).await;
    for _ in 0..5 {
        let reply = login(&app, "nurse.a", "wrong-password-1").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["code"], "KX-AUTH-001");
    }
    // Locked: even the right password is refused now, with a time to wait.
    let locked = login(&app, "nurse.a", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    assert_eq!(locked.body["code"], "KX-AUTH-002");
    assert!(locked.body["retry_after_seconds"].as_i64().unwrap() > 0);
    assert_eq!(audit_count(&app, "lockout", "nurse.a"), 1);
    // Other accounts from the same address still work until the address itself is locked.
    assert_eq!(
        login(&app, "frontdesk.a", PASSWORD).await.status,
        StatusCode::OK
    );
    for name in ["ghost.1", "ghost.2", "ghost.3"] {
        login(&app, name, "guess-guess-guess").await;
    }
    let address_locked = login(&app, "frontdesk.a", PASSWORD).await;
    assert_eq!(
        address_locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        address_locked.body
    );
    // When the lock has passed, the account signs in again.
    app.sql("UPDATE sign_in_failure SET locked_until = now() - interval '1 second'");
    assert_eq!(
        login(&app, "nurse.a", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrolment_then_the_code_or_a_recovery_code_is_required() {
    let app = TestApp::spawn().await;
    let admin = sign_in(&app, "admin.a", PASSWORD).await;
    let enrol = admin
        .post(&app, "/api/v1/auth/totp/enroll", &json!({}), true)
        .await;
    assert_eq!(enrol.status, StatusCode::OK, "{}", enrol.body);
    assert!(enrol.body["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(
        enrol.body["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Kiorex:admin.a")
    );
    let totp =
        kiorex_api::identity::local::totp_for(enrol.body["secret"].as_str().unwrap(), "admin.a")
            .unwrap();
    let wrong = admin
        .post(
            &app,
            "/api/v1/auth/totp/confirm",
            &json!({"code": "000000"}),
            true,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let confirmed = admin
        .post(
            &app,
            "/api/v1/auth/totp/confirm",
            &json!({"code": totp.generate_current().unwrap()}),
            true,
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let codes: Vec<String> =
        serde_json::from_value(confirmed.body["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);

    let no_code = login(&app, "admin.a", PASSWORD).await;
    assert_eq!(no_code.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_code.body["code"], "KX-AUTH-003");
    let bad_code = login_with(
        &app,
        json!({"username": "admin.a", "password": PASSWORD, "totp_code": "123456"}),
    )
    .await;
    assert_eq!(bad_code.status, StatusCode::UNAUTHORIZED);
    let good = login_with(&app, json!({"username": "admin.a", "password": PASSWORD, "totp_code": totp.generate_current().unwrap()})).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let recovery = json!({"username": "admin.a", "password": PASSWORD, "recovery_code": codes[0].to_uppercase()});
    assert_eq!(
        login_with(&app, recovery.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login_with(&app, recovery).await.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );
    // The bearer-token endpoint asks for the code too.
    let token = app
        .send(
            app.client()
                .post(app.url("/api/v1/auth/token"))
                .json(&json!({"username": "admin.a", "password": PASSWORD})),
        )
        .await;
    assert_eq!(token.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clients_get_scoped_short_lived_tokens() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Client", "Carol", "1970-07-07").await;
    let registered = app
        .send(
            app.client()
                .post(app.url("/api/v1/admin/clients"))
                .bearer_auth(app.token(User::Admin))
                .json(&json!({
            "client_id": "lab-middleware", "name": "Lab middleware", "facility_id": app.facility_a,
            "role": "lab-technician", "scopes": "system/Patient.read system/Observation.write"})),
        )
        .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.body);
    let secret = registered.body["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = |scope: Option<&str>, secret: &str| {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(s) = scope {
            form.push(("scope", s.to_owned()));
        }
        app.client()
            .post(app.url("/oauth/token"))
            .basic_auth("lab-middleware", Some(secret))
            .form(&form)
    };
    let issued = app.send(token(None, &secret)).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(
        issued.body["scope"],
        "system/Patient.read system/Observation.write"
    );
    assert!(issued.body["expires_in"].as_i64().unwrap() <= 300);
    let access = issued.body["access_token"].as_str().unwrap().to_owned();
    let read = app
        .send(
            app.client()
                .get(app.url(&format!("/fhir/Patient/{patient}")))
                .bearer_auth(&access),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let observation = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
    let wrote = app
        .send(
            app.client()
                .post(app.url("/fhir/Observation"))
                .bearer_auth(&access)
                .header("content-type", "application/fhir+json")
                .body(observation.to_string()),
        )
        .await;
    assert_eq!(wrote.status, StatusCode::CREATED, "{}", wrote.body);
    // Reading observations is not in the scopes, although the lab role could.
    let id = wrote.body["id"].as_str().unwrap();
    let outside = app
        .send(
            app.client()
                .get(app.url(&format!("/fhir/Observation/{id}")))
                .bearer_auth(&access),
        )
        .await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN, "{}", outside.body);
    // Narrower scope on request; a scope never granted is refused; a wrong secret too.
    let narrow = app.send(token(Some("system/Patient.read"), &secret)).await;
    assert_eq!(narrow.body["scope"], "system/Patient.read");
    let too_much = app
        .send(token(Some("system/Condition.read"), &secret))
        .await;
    assert_eq!(too_much.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_much.body["error"], "invalid_scope");
    let wrong = app.send(token(None, "not-the-secret")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    let grant = app
        .send(
            app.client()
                .post(app.url("/oauth/token"))
                .form(&[("grant_type", "password")]),
        )
        .await;
    assert_eq!(grant.body["error"], "unsupported_grant_type");
}
