//! Keyboard and tablet: the main flow (sign in, find a patient, open the chart, record a vital
//! sign) by keyboard only, with a visible focus on every stop; every form field has a label;
//! the main pages fit 1366×768 and a tablet (820×1180) without horizontal scrolling.

use fantoccini::key::Key;
use kiorex_testkit::browser::Browser;
use kiorex_testkit::{STAFF_PASSWORD, TestApp};

fn key(k: Key) -> String {
    char::from(k).to_string()
}

/// Types into whatever has the focus, as a person at the keyboard would.
async fn keys(browser: &Browser, text: &str) {
    browser
        .client
        .active_element()
        .await
        .expect("a focused element")
        .send_keys(text)
        .await
        .expect("keys");
}

/// The focused element's id, tag, text, and whether its focus is drawn (an outline).
async fn focused(browser: &Browser) -> serde_json::Value {
    browser
        .client
        .execute(
            "var e = document.activeElement; var s = getComputedStyle(e);
             return {id: e.id, tag: e.tagName, text: (e.textContent || '').trim().slice(0, 60),
                     visible: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2};",
            vec![],
        )
        .await
        .expect("script")
}

/// Presses Tab until the element with `id` has the focus (at most `limit` times), checking that
/// every stop on the way shows where the focus is.
async fn tab_to(browser: &Browser, id: &str, limit: usize) {
    for _ in 0..limit {
        keys(browser, &key(Key::Tab)).await;
        let now = focused(browser).await;
        assert_eq!(now["visible"], true, "focus must be visible: {now}");
        if now["id"] == id {
            return;
        }
    }
    panic!("#{id} was not reached with {limit} presses of Tab");
}

/// Form fields (not hidden ones) without a label or an aria-label, on the current page.
async fn unlabelled(browser: &Browser) -> Vec<String> {
    let found = browser
        .client
        .execute(
            "var bad = [];
             document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach(function (el) {
               var named = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label')
                 || el.getAttribute('aria-labelledby');
               if (!named) { bad.push(el.outerHTML.slice(0, 120)); }
             });
             return bad;",
            vec![],
        )
        .await
        .expect("script");
    serde_json::from_value(found).unwrap_or_default()
}

async fn fits_the_width(browser: &Browser) -> (i64, i64) {
    let sizes = browser
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("script");
    (sizes[0].as_i64().unwrap(), sizes[1].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_flow_works_by_keyboard_with_labels_and_fits_a_tablet() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Keyboard", "Kimani", "1990-02-03").await;
    let browser = Browser::start().await;

    // Sign in: the username field has the focus; Tab to the password; Enter sends.
    browser.goto(&app.url("/signin")).await;
    browser.wait_for_text("Sign in to Kiorex").await;
    assert_eq!(focused(&browser).await["id"], "username");
    keys(&browser, "admin.a").await;
    keys(&browser, &key(Key::Tab)).await;
    assert_eq!(focused(&browser).await["id"], "password");
    keys(&browser, &format!("{STAFF_PASSWORD}{}", key(Key::Enter))).await;
    browser.wait_for_text("Find a patient").await;

    // Find the patient: the search box has the focus; type, Tab to the hit, Enter opens it.
    assert_eq!(focused(&browser).await["id"], "q");
    keys(&browser, "kimani keyb").await;
    browser.wait_for_text("Kimani Keyboard").await;
    keys(&browser, &key(Key::Tab)).await;
    let hit = focused(&browser).await;
    assert_eq!(hit["tag"], "A", "{hit}");
    assert_eq!(hit["visible"], true, "{hit}");
    keys(&browser, &key(Key::Enter)).await;
    browser.wait_for_text("KEYBOARD, Kimani").await;

    // Record a heart rate: Tab through the chart to the field, type, Enter saves.
    tab_to(&browser, "heart_rate", 60).await;
    keys(&browser, &format!("64{}", key(Key::Enter))).await;
    browser.wait_for_text("64 /min").await;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Observation'"),
        1
    );
    browser.screenshot("keyboard-chart").await;

    // Every field on the main pages has a label, and no page scrolls sideways on a ward PC or
    // on a tablet held upright.
    let pages = [
        "/".to_owned(),
        "/patients/new".to_owned(),
        format!("/patients/{patient}"),
        format!("/patients/{patient}/demographics"),
        format!("/history/Patient/{patient}"),
        "/admin".to_owned(),
        "/admin/facility".to_owned(),
        "/admin/health".to_owned(),
        "/audit".to_owned(),
    ];
    for (width, height, name) in [(1366, 768, "1366x768"), (820, 1180, "tablet-820x1180")] {
        browser
            .client
            .set_window_size(width, height)
            .await
            .expect("window size");
        for path in &pages {
            browser.goto(&app.url(path)).await;
            browser.wait_for_text("Sign out").await;
            let missing = unlabelled(&browser).await;
            assert!(
                missing.is_empty(),
                "{path}: fields without a label: {missing:?}"
            );
            let (scroll, inner) = fits_the_width(&browser).await;
            assert!(
                scroll <= inner,
                "{path} at {name}: {scroll}px wide in a {inner}px window"
            );
        }
        browser
            .goto(&app.url(&format!("/patients/{patient}")))
            .await;
        browser.wait_for_text("Vital signs").await;
        browser.screenshot(&format!("chart-{name}")).await;
    }
}
