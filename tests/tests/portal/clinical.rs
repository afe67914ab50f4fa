//! The chart's clinical work in the browser: vitals with their trends, an ICD-10-CM diagnosis
//! chosen in the picker, a note on an encounter (edited, then read in its history), and the IT
//! pages: facility settings and system health.

use super::{sign_in, wait_until};
use fantoccini::Locator;
use kiorex_testkit::browser::Browser;
use kiorex_testkit::{STAFF_PASSWORD, TestApp};

/// How many elements match `css` on the page now.
async fn count(browser: &Browser, css: &str) -> usize {
    browser
        .client
        .find_all(Locator::Css(css))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_codes_a_diagnosis_writes_a_note_and_reads_the_history() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Okafor", "Ngozi", "1961-05-04").await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, "admin.a", STAFF_PASSWORD).await;
    let chart = app.url(&format!("/patients/{patient}"));

    // Vitals: a fever and a high blood pressure, each on its own trend with its band.
    browser.goto(&chart).await;
    browser.wait_for_text("Vital signs").await;
    browser.fill("#temperature", "39.4").await;
    browser.fill("#systolic", "162").await;
    browser.fill("#diastolic", "84").await;
    browser.fill("#weight", "71.5").await;
    browser.click("form[action$='/vitals'] button").await;
    browser.wait_for_text("39.4").await;
    assert_eq!(
        count(&browser, "svg[aria-label='Temperature trend'] circle").await,
        1
    );
    assert_eq!(
        count(
            &browser,
            "svg[aria-label='Temperature trend'] circle[fill='#b00020']"
        )
        .await,
        1,
        "the fever is drawn red"
    );
    assert_eq!(
        count(&browser, "svg[aria-label='Blood pressure trend'] polyline").await,
        2,
        "systolic and diastolic on one chart"
    );
    assert_eq!(
        count(&browser, "svg[aria-label='Blood pressure trend'] rect").await,
        2
    );
    assert_eq!(
        count(&browser, "svg[aria-label='Weight trend'] circle").await,
        1
    );
    let page = browser.text().await;
    assert!(
        page.contains("default ranges"),
        "defaults are marked as such"
    );
    // Each chart view is audited once, naming the patient and what was shown.
    assert!(
        app.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'chart' AND patient_id = '{patient}' \
             AND detail LIKE '%4 Observation%'"
        )) >= 1
    );

    // An encounter, and a note written from it; then the note is corrected.
    browser
        .click("form input[value=open-encounter] ~ p button")
        .await;
    browser.wait_for_text("Note on this encounter").await;
    browser
        .fill(
            "ol.timeline textarea[name=note]",
            "Chest pain since this morning, no radiation.",
        )
        .await;
    browser.click("ol.timeline form button").await;
    browser.wait_for_text("Chest pain since this morning").await;
    browser.click("li.note a[href$='/edit']").await;
    browser.wait_for_text("Edit the note").await;
    browser
        .fill(
            "#note-edit",
            "Chest pain since this morning, radiating to the left arm.",
        )
        .await;
    browser.click("form[action^='/notes/'] button").await;
    let shown = browser.wait_for_text("radiating to the left arm").await;
    assert!(shown.contains("version 2"), "{shown}");
    browser.screenshot("encounter-note").await;

    // The note's history: who changed what, when, with the old and new text.
    browser.click("li.note a.history").await;
    let history = browser.wait_for_text("Version 2").await;
    assert!(
        history.contains("Changed") && history.contains("Created"),
        "{history}"
    );
    assert!(history.contains("by admin.a"), "{history}");
    assert!(
        history.contains("summary")
            && history.contains("no radiation")
            && history.contains("radiating to the left arm"),
        "{history}"
    );
    browser.screenshot("record-history").await;
    assert!(
        app.count("SELECT count(*) AS n FROM audit_log WHERE action = 'history' AND resource_type = 'ClinicalImpression'") >= 2,
        "reading the history is audited, one entry per version shown"
    );

    // ICD-10-CM: search by words, choose from the list, recorded with the list's description.
    browser.goto(&chart).await;
    browser.fill("#dx-search", "diabetes type 2 without").await;
    let options = browser.wait_for_text("E11.9").await;
    assert!(
        options.contains("April 2026 release"),
        "the loaded version is shown"
    );
    browser.screenshot("icd10-picker").await;
    browser.click("input[name=code][value='E11.9']").await;
    browser.click("#diagnosis button[type=submit]").await;
    let chart_text = browser.wait_for_text("Type 2 diabetes mellitus").await;
    assert!(chart_text.contains("Problems"), "{chart_text}");
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM resource WHERE resource_type = 'Condition' \
             AND content->'code'->'coding'->0->>'code' = 'E11.9'"
        ),
        1
    );
    // A code that is not in the list is refused in words; nothing is recorded.
    browser.fill("#dx-search", "E11.99").await;
    browser.wait_for_text("No ICD-10-CM code matches").await;
    browser.click("#diagnosis button[type=submit]").await;
    let refused = browser.wait_for_text("not an ICD-10-CM code").await;
    assert!(refused.contains("reference"), "{refused}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Condition'"),
        1
    );

    // Facility settings: saved as a new version, audited; a bad time zone is explained.
    browser.goto(&app.url("/admin/facility")).await;
    browser.wait_for_text("Facility settings").await;
    browser
        .fill(
            "form[action^='/admin/facility/'] input[name=city]",
            "Nairobi",
        )
        .await;
    browser
        .fill(
            "form[action^='/admin/facility/'] input[name=timezone]",
            "Africa/Nairobi",
        )
        .await;
    browser
        .click("form[action^='/admin/facility/'] button")
        .await;
    wait_until(|| {
        app.count("SELECT count(*) AS n FROM audit_log WHERE action = 'facility-update'") == 1
    })
    .await;
    browser.wait_for_text("Version 2").await;
    let tz = browser
        .client
        .find(Locator::Css(
            "form[action^='/admin/facility/'] input[name=timezone]",
        ))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(tz.as_deref(), Some("Africa/Nairobi"));
    browser.screenshot("facility-settings").await;
    browser
        .fill(
            "form[action^='/admin/facility/'] input[name=timezone]",
            "Nairobi time",
        )
        .await;
    browser
        .click("form[action^='/admin/facility/'] button")
        .await;
    browser.wait_for_text("is not a time zone name").await;

    // System health: every component with its state in words.
    browser.goto(&app.url("/admin/health")).await;
    let health = browser.wait_for_text("System health").await;
    for expected in [
        "Database",
        "Migrations",
        "Code lists",
        "April 2026",
        "Outbox",
        "Directory (LDAP/AD)",
        "Not configured",
        "Working",
    ] {
        assert!(health.contains(expected), "{expected}: {health}");
    }
    assert_eq!(count(&browser, "tr.level-red").await, 0, "{health}");
    browser.screenshot("system-health").await;
}
