//! The staff portal in a real headless Chromium: sign in through the directory (slapd), a local
//! account and the OpenID provider; register with the duplicate warning; break the glass;
//! record vitals and see the abnormal flag; the auditor sees the event. Screenshots of the main
//! pages are saved under `target/portal-screenshots/`.

mod clinical;
mod keyboard;

use kiorex_api::identity::IdentitySettings;
use kiorex_testkit::browser::Browser;
use kiorex_testkit::ldap::{PASSWORD, Slapd};
use kiorex_testkit::{STAFF_PASSWORD, TestApp, User};
use serde_json::json;
use std::time::Duration;

async fn directory_app(slapd: &Slapd) -> TestApp {
    let ldap = slapd.settings();
    let app = TestApp::spawn_with(IdentitySettings {
        ldap: Some(ldap),
        ..IdentitySettings::default()
    })
    .await;
    let mapping = json!([{"group": "Nurses", "facility_id": app.facility_a, "role": "nurse"}]);
    let reply = app
        .send(
            app.client()
                .put(app.url("/api/v1/admin/group-roles"))
                .bearer_auth(app.token(User::Admin))
                .json(&mapping),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    app
}

/// Waits (up to 10 s) until `done` holds; the page saves drafts a moment after typing.
async fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the condition never held");
}

async fn sign_in(browser: &Browser, app: &TestApp, username: &str, password: &str) {
    browser.goto(&app.url("/signin")).await;
    browser.fill("#username", username).await;
    browser.fill("#password", password).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Sign out").await;
}

async fn sign_out(browser: &Browser) {
    browser.click("header form button").await;
    browser.wait_for_text("Sign in to Kiorex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_at_the_front_desk_the_ward_and_the_privacy_office() {
    let slapd = Slapd::start();
    let app = directory_app(&slapd).await;
    let browser = Browser::start().await;

    // Unsigned visitors land on the sign-in page; a wrong password is explained in words.
    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Sign in to Kiorex").await;
    browser.screenshot("signin").await;
    browser.fill("#username", "frontdesk.a").await;
    browser.fill("#password", "not-the-password").await;
    browser.click("button[type=submit]").await;
    let page = browser.wait_for_text("wrong username or password").await;
    assert!(
        page.contains("reference"),
        "the request id is shown for IT: {page}"
    );

    // Front desk registers a patient, then nearly the same one: the duplicate warning.
    sign_in(&browser, &app, "frontdesk.a", STAFF_PASSWORD).await;
    browser.goto(&app.url("/patients/new")).await;
    browser.fill("#family", "Browne").await;
    browser.fill("#given", "Amelia").await;
    browser.fill("#birth_date", "03121980").await;
    browser
        .click("form[action='/patients/new'] button[type=submit]")
        .await;
    let chart = browser.wait_for_text("MRN").await;
    assert!(chart.contains("BROWNE, Amelia"), "{chart}");
    let amelia = browser.url().await.rsplit('/').next().unwrap().to_owned();
    // Demographics are edited as a new version of the record.
    browser
        .goto(&app.url(&format!("/patients/{amelia}/demographics")))
        .await;
    browser.wait_for_text("Edit demographics").await;
    browser.fill("#phone", "+254 700 123 456").await;
    browser.click("form[action$='/demographics'] button").await;
    browser.wait_for_text("BROWNE, Amelia").await;
    let versions = app.count(&format!(
        "SELECT count(*) AS n FROM resource_version WHERE id = '{amelia}'"
    ));
    assert_eq!(versions, 2, "the edit is a second version");
    // The wristband label carries the MRN as a barcode.
    browser
        .goto(&app.url(&format!("/patients/{amelia}/label")))
        .await;
    let label = browser.wait_for_text("MRN").await;
    assert!(label.contains("BROWNE, Amelia"), "{label}");
    let bars = browser
        .client
        .find(fantoccini::Locator::Css(".barcode svg"))
        .await;
    assert!(bars.is_ok(), "the barcode is drawn");
    browser.screenshot("label").await;
    browser.goto(&app.url("/patients/new")).await;
    browser.fill("#family", "Brown").await;
    browser.fill("#given", "Amelia").await;
    browser.fill("#birth_date", "03121980").await;
    browser
        .click("form[action='/patients/new'] button[type=submit]")
        .await;
    let warning = browser.wait_for_text("may already be registered").await;
    assert!(
        warning.contains("BROWNE, Amelia") && warning.contains("This is the same person"),
        "{warning}"
    );
    browser.screenshot("duplicate-warning").await;

    // A half-filled form survives the end of the session: it is kept on the server and comes
    // back after the next sign-in.
    browser.goto(&app.url("/patients/new")).await;
    browser.fill("#family", "Halfway").await;
    browser.fill("#given", "Typed").await;
    wait_until(|| {
        app.count("SELECT count(*) AS n FROM form_draft WHERE content->>'given' = 'Typed'") == 1
    })
    .await;
    app.sql("UPDATE user_session SET revoked_at = now()");
    browser.goto(&app.url("/patients/new")).await;
    browser.wait_for_text("Sign in to Kiorex").await;
    browser.fill("#username", "frontdesk.a").await;
    browser.fill("#password", STAFF_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Register a patient").await;
    let field = browser
        .client
        .find(fantoccini::Locator::Css("#family"))
        .await
        .unwrap();
    let mut kept = String::new();
    for _ in 0..100 {
        kept = field.prop("value").await.unwrap().unwrap_or_default();
        if !kept.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        kept, "Halfway",
        "the draft came back after signing in again"
    );

    // Search as you type finds her by a fragment.
    browser.goto(&app.url("/")).await;
    browser.fill("#q", "amelia brwne").await;
    browser.wait_for_text("Amelia Browne").await;
    browser.screenshot("search").await;
    sign_out(&browser).await;

    // A nurse from the directory: not her patient, so the record is restricted until the glass
    // is broken with a reason; then the chart opens with a banner.
    sign_in(&browser, &app, "nurse.ward", PASSWORD).await;
    browser.goto(&app.url(&format!("/patients/{amelia}"))).await;
    browser.wait_for_text("Restricted record").await;
    browser.screenshot("restricted").await;
    browser
        .fill(
            "#reason",
            "Found unresponsive in the waiting room, her nurse is off the ward",
        )
        .await;
    browser.click("form[action$='/break-glass'] button").await;
    browser.wait_for_text("Break-the-glass access").await;

    // Vitals: an abnormal heart rate is flagged, in words.
    browser.fill("#heart_rate", "132").await;
    browser.fill("#spo2", "97").await;
    browser.click("form[action$='/vitals'] button").await;
    let chart = browser.wait_for_text("High").await;
    assert!(chart.contains("132"), "{chart}");
    browser.screenshot("chart").await;

    // Allergies show in red in the header; encounters open and close; a nurse may not diagnose,
    // and is told so in words.
    browser.fill("#allergy-text", "Penicillin").await;
    browser.click("form input[value=allergy] ~ p button").await;
    let chart = browser.wait_for_text("Allergies: Penicillin").await;
    assert!(chart.contains("Penicillin"));
    browser
        .click("form input[value=open-encounter] ~ p button")
        .await;
    browser.wait_for_text("Close the encounter").await;
    browser
        .click("form input[value=close-encounter] ~ p button")
        .await;
    let closed = browser.wait_for_text("finished").await;
    assert!(!closed.contains("Close the encounter"), "{closed}");
    browser.fill("#dx-search", "I10").await;
    browser
        .click("form input[value=diagnosis] ~ p button")
        .await;
    let refused = browser.wait_for_text("Back to the chart").await;
    assert!(refused.contains("may not write Condition"), "{refused}");
    sign_out(&browser).await;

    // The privacy officer sees the event with its reason and approves it.
    sign_in(&browser, &app, "auditor.a", STAFF_PASSWORD).await;
    browser.goto(&app.url("/review")).await;
    let queue = browser.wait_for_text("nurse.ward").await;
    assert!(
        queue.contains("unresponsive in the waiting room"),
        "{queue}"
    );
    browser.screenshot("review-queue").await;
    browser.click("button[value=approve]").await;
    browser.wait_for_text("approved").await;
    // The audit log shows who opened the record, and why.
    browser.goto(&app.url("/audit?action=break-glass")).await;
    let log = browser
        .wait_for_text("unresponsive in the waiting room")
        .await;
    assert!(log.contains("nurse.ward"), "{log}");
    sign_out(&browser).await;

    // IT sees the directory mapping and the sessions people have open, and can end one.
    app.send(
        app.client()
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "nurse.a", "password": STAFF_PASSWORD})),
    )
    .await;
    sign_in(&browser, &app, "admin.a", STAFF_PASSWORD).await;
    browser.goto(&app.url("/admin?username=nurse.a")).await;
    let admin = browser.wait_for_text("Directory groups and roles").await;
    assert!(admin.contains("Nurses"), "{admin}");
    browser.screenshot("admin").await;
    browser
        .click("form[action='/admin/sessions/end'] button")
        .await;
    browser.wait_for_text("No open sessions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_strict_policy_and_forms_need_the_session_token() {
    let app = TestApp::spawn().await;
    let page = app.send(app.client().get(app.url("/signin"))).await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // A form post without the session's token is refused, even with a valid session cookie.
    let login = app
        .send(
            app.client()
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "frontdesk.a", "password": STAFF_PASSWORD})),
        )
        .await;
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let forged = app
        .send(
            app.client()
                .post(app.url("/patients/new"))
                .header("cookie", &cookie)
                .form(&[("csrf_token", "forged"), ("family", "X")]),
        )
        .await;
    assert_eq!(forged.status, reqwest::StatusCode::FORBIDDEN);
    // Without a session, pages send the browser to sign in, keeping only the path.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = app.send(anonymous.get(app.url("/patients/new"))).await;
    assert_eq!(
        redirect.header("location"),
        Some("/signin?next=/patients/new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_through_the_hospital_provider_in_the_browser() {
    use kiorex_api::identity::oidc::OidcSettings;
    use kiorex_testkit::oidc::{CLIENT_ID, OidcProvider};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callback = format!(
        "http://{}/api/v1/auth/oidc/callback",
        listener.local_addr().unwrap()
    );
    let idp = OidcProvider::start(
        &callback,
        json!({"olivia.ortiz": {"password": "Correct-Horse-42", "name": "Olivia Ortiz",
                                "email": "olivia@hospital.test", "groups": ["kiorex-physicians"]}}),
    );
    let settings = IdentitySettings {
        oidc: Some(OidcSettings {
            issuer_url: idp.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: None,
            redirect_url: callback,
            scopes: vec!["profile".into(), "email".into(), "groups".into()],
            username_claim: "preferred_username".into(),
            email_claim: "email".into(),
            name_claim: "name".into(),
            groups_claim: "groups".into(),
            ca_pem: None,
            clock_skew_seconds: 60,
            post_logout_redirect_url: None,
        }),
        ..IdentitySettings::default()
    };
    let app = TestApp::spawn_on(settings, listener).await;
    let mapping =
        json!([{"group": "kiorex-physicians", "facility_id": app.facility_a, "role": "physician"}]);
    app.send(
        app.client()
            .put(app.url("/api/v1/admin/group-roles"))
            .bearer_auth(app.token(User::Admin))
            .json(&mapping),
    )
    .await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/signin")).await;
    browser.click("a.button").await;
    // The provider's own sign-in page, then its consent page.
    browser.wait_for_text("Sign in").await;
    browser.fill("input[name=login]", "olivia.ortiz").await;
    browser
        .fill("input[name=password]", "Correct-Horse-42")
        .await;
    browser.click("button").await;
    for _ in 0..50 {
        if browser.url().await.starts_with(&app.base) {
            break;
        }
        if browser
            .client
            .find(fantoccini::Locator::Css("form[action$='/confirm'] button"))
            .await
            .is_ok()
        {
            browser.click("form[action$='/confirm'] button").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let home = browser.wait_for_text("Find a patient").await;
    assert!(home.contains("olivia.ortiz"), "{home}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_is_uploaded_from_the_chart_and_viewed_in_the_page() {
    let (app, _site) = kiorex_testkit::documents_on(kiorex_testkit::DocumentSite::default()).await;
    let patient = app.patient("Docs", "Dora", "1970-01-01").await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, "admin.a", STAFF_PASSWORD).await;
    browser
        .goto(&app.url(&format!("/patients/{patient}")))
        .await;
    browser.wait_for_text("No documents yet").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("referral.pdf");
    std::fs::write(&file, kiorex_testkit::sample_pdf("Referral for chest pain")).unwrap();
    let input = browser
        .client
        .find(fantoccini::Locator::Css("#doc-file"))
        .await
        .unwrap();
    input.send_keys(file.to_str().unwrap()).await.unwrap();
    browser.fill("#doc-title", "Referral from Dr Okafor").await;
    browser.click("#upload button[type=submit]").await;
    browser.wait_for_text("Referral from Dr Okafor").await;
    browser.click("a.view-document").await;
    let viewer = browser
        .client
        .find(fantoccini::Locator::Css("#viewer"))
        .await
        .unwrap();
    let mut src = String::new();
    for _ in 0..100 {
        src = viewer.attr("src").await.unwrap().unwrap_or_default();
        if !src.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(src.ends_with("/view"), "{src}");
    // Screenshot once the viewer's document has loaded (what is served is checked below).
    for _ in 0..100 {
        let state = browser
            .client
            .execute(
                "var f = document.getElementById('viewer'); return f.contentDocument ? f.contentDocument.readyState : '';",
                vec![],
            )
            .await
            .unwrap();
        if state == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.screenshot("documents").await;
    // The viewer's address serves the PDF inline, sandboxed, to this session only.
    let cookie = browser
        .client
        .get_named_cookie("__Host-kiorex-session")
        .await
        .unwrap();
    let url = if src.starts_with("http") {
        src.clone()
    } else {
        app.url(&src)
    };
    let shown = app
        .client()
        .get(&url)
        .header(
            "cookie",
            format!("__Host-kiorex-session={}", cookie.value()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), reqwest::StatusCode::OK);
    assert_eq!(shown.headers()["content-type"], "application/pdf");
    assert_eq!(shown.headers()["content-disposition"], "inline");
    assert!(
        shown.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'self'")
    );
    assert!(shown.bytes().await.unwrap().starts_with(b"%PDF"));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let anonymous = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        reqwest::StatusCode::SEE_OTHER,
        "no session, no document"
    );
}
