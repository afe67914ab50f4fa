//! The pages: sign-in, find a patient, register (with the duplicate warning), the chart (header,
//! summary, vitals with trend, results, encounters), break-the-glass, and the review queue.

use crate::trend::{self, Point};
use crate::{Staff, error_banner, page, raw};
use axum::extract::{Form, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use kiorex_api::AppState;
use kiorex_api::auth::RequestId;
use kiorex_api::chart::Chart;
use kiorex_api::error::ApiError;
use kiorex_api::identity::local::{self, Credentials};
use kiorex_api::identity::routes::{Origin, start_session};
use kiorex_api::identity::session::{self, Live, constant_time_eq};
use kiorex_api::records::{self, Ctx};
use kiorex_api::registration::{self, Registration};
use kiorex_domain::observation::vital_sign;
use kiorex_fhir::ResourceKind;
use kiorex_store::chart::ChartResultRow;
use kiorex_store::resources::Stored;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) fn idle(state: &AppState) -> i64 {
    state.identity.settings.session_idle_seconds
}

pub(crate) fn ctx(state: &AppState, live: &Live, rid: &RequestId) -> Ctx {
    Ctx::new(state, live.principal.clone(), &rid.0)
}

/// A page that says what went wrong, in words, with the request id, under the error's status.
pub(crate) fn error_page(
    state: &AppState,
    live: &Live,
    rid: &RequestId,
    title: &str,
    e: &ApiError,
) -> Response {
    let body = error_banner(e, &rid.0);
    (
        e.status,
        html_page(page(title, Some(live), idle(state), body)),
    )
        .into_response()
}

pub(crate) fn html_page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// Forms carry the session's CSRF token; a form from elsewhere is refused.
pub(crate) fn csrf_ok(live: &Live, sent: &str) -> bool {
    constant_time_eq(sent.as_bytes(), live.session.csrf_token.as_bytes())
}

pub(crate) fn csrf_refused(state: &AppState, live: &Live, rid: &RequestId) -> Response {
    let error = ApiError::new(
        StatusCode::FORBIDDEN,
        "KX-AUTH-004",
        "This form has expired. Go back, reload the page and try again.",
    );
    let body = error_banner(&error, &rid.0);
    (
        StatusCode::FORBIDDEN,
        html_page(page("Form expired", Some(live), idle(state), body)),
    )
        .into_response()
}

// ---------- sign-in ----------

#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
    expired: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    next.filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or("/")
        .to_owned()
}

fn signin_page(state: &AppState, next: &str, message: Option<Markup>, ask_totp: bool) -> Markup {
    let sso = state.identity.oidc.is_some();
    page(
        "Sign in",
        None,
        0,
        html! {
            div.panel style="max-width: 30rem; margin: 3rem auto" {
                h1 { "Sign in to Kiorex" }
                @if let Some(m) = message { (m) }
                @if sso {
                    a.button href={ "/api/v1/auth/oidc/login?return_to=" (next) } { "Sign in with the hospital account" }
                    p.muted { "or with a username and password:" }
                }
                form method="post" action="/signin" {
                    input type="hidden" name="next" value=(next);
                    label for="username" { "Username" }
                    input #username name="username" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    @if ask_totp {
                        label for="totp_code" { "Code from your authenticator app" }
                        input #totp_code name="totp_code" inputmode="numeric" autocomplete="one-time-code";
                    }
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}

pub async fn signin_form(State(state): State<AppState>, Query(q): Query<Next>) -> Response {
    let message = q.expired.map(|_| html! {
        div.banner.warn role="status" { "Your session ended. Sign in again to carry on: what you were typing in a form is kept and comes back when you open it again." }
    });
    html_page(signin_page(
        &state,
        &safe_next(q.next.as_deref()),
        message,
        false,
    ))
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    username: String,
    password: String,
    totp_code: Option<String>,
    next: Option<String>,
}

pub async fn signin(
    State(state): State<AppState>,
    rid: RequestId,
    origin: Origin,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let creds = Credentials {
        username: form.username,
        password: form.password,
        totp_code: form.totp_code.filter(|c| !c.is_empty()),
        recovery_code: None,
    };
    let result = async {
        let account = local::sign_in(&state, &creds, &origin.address, &rid.0).await?;
        start_session(&state, &account, None, &origin).await
    };
    match result.await {
        Ok((token, _)) => {
            let mut response = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&session::cookie_header(&token)) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => {
            let ask_totp = e.code == "KX-AUTH-003";
            let status = e.status;
            let banner = error_banner(&e, &rid.0);
            (
                status,
                html_page(signin_page(&state, &next, Some(banner), ask_totp)),
            )
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf_token: String,
}

pub async fn signout(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    let id = live.session.id;
    let _ = state
        .store
        .run(move |conn| kiorex_store::sessions::revoke(conn, id, Utc::now()))
        .await;
    let _ = state
        .audit
        .record(
            &live.principal.username,
            &rid.0,
            vec![local::security_event(
                "sign-out",
                "success",
                "portal".into(),
            )],
        )
        .await;
    let target = match (&state.identity.oidc, &live.session.id_token) {
        (Some(oidc), Some(token)) => oidc
            .logout_url(token)
            .await
            .unwrap_or_else(|| "/signin".into()),
        _ => "/signin".into(),
    };
    let mut response = Redirect::to(&target).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie_header()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

// ---------- find a patient ----------

pub async fn home(State(state): State<AppState>, Staff(live): Staff) -> Response {
    html_page(page(
        "Find a patient",
        Some(&live),
        idle(&state),
        html! {
            h1 { "Find a patient" }
            form role="search" action="/patients/search" method="get" {
                label for="q" { "Name, MRN or date of birth" }
                input #q type="search" name="q" autocomplete="off" autofocus
                    hx-get="/patients/search" hx-trigger="input changed delay:150ms, search" hx-target="#results";
            }
            div #results aria-live="polite" {}
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Query(q): Query<SearchQuery>,
) -> Response {
    let typed = q.q.unwrap_or_default();
    // Two letters match thousands of patients at a large hospital: the answer would be an
    // arbitrary twenty of them at the cost of a full fuzzy search on every keystroke.
    if typed.trim().chars().count() < 3 {
        return html_page(html! { p.muted { "Type at least three letters." } });
    }
    // The front-desk search (typos, reversed order, dates as typed, MRN, phone), audited.
    match kiorex_api::patient_search::find_patients(
        &state,
        &live.principal,
        &typed,
        Some(20),
        &rid.0,
    )
    .await
    {
        Ok(hits) if hits.is_empty() => html_page(
            html! { p { "No patient found. Check the spelling, or register a new patient." } },
        ),
        Ok(hits) => html_page(html! {
            table {
                thead { tr { th { "Name" } th { "Born" } th { "MRN" } } }
                tbody {
                    @for h in &hits {
                        tr {
                            td { a href={ "/patients/" (h.id) } { (h.name) } }
                            td { (h.birth_date.clone().unwrap_or_default()) }
                            td { (h.mrn.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }),
        Err(e) => html_page(error_banner(&e, &rid.0)),
    }
}

// ---------- register ----------

fn registration_form(csrf: &str, values: &RegisterForm, extra: Markup) -> Markup {
    html! {
        h1 { "Register a patient" }
        (extra)
        form method="post" action="/patients/new" data-draft="register" {
            input type="hidden" name="csrf_token" value=(csrf);
            div.grid {
                div { label for="family" { "Family name" } input #family name="family" required value=(values.family); }
                div { label for="given" { "Given names" } input #given name="given" required value=(values.given); }
                div { label for="birth_date" { "Date of birth" } input #birth_date name="birth_date" type="date" required value=(values.birth_date); }
                div {
                    label for="gender" { "Sex" }
                    select #gender name="gender" {
                        @for (v, l) in [("female", "Female"), ("male", "Male"), ("other", "Other"), ("unknown", "Unknown")] {
                            option value=(v) selected[values.gender == v] { (l) }
                        }
                    }
                }
                div { label for="phone" { "Phone" } input #phone name="phone" type="tel" value=(values.phone); }
                div { label for="national_id" { "National id" } input #national_id name="national_id" value=(values.national_id); }
            }
            p { button type="submit" { "Register" } }
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct RegisterForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    given: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    gender: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    national_id: String,
    override_reason: Option<String>,
}

pub async fn register_form(State(state): State<AppState>, Staff(live): Staff) -> Response {
    let form = registration_form(&live.session.csrf_token, &RegisterForm::default(), html! {});
    html_page(page("Register", Some(&live), idle(&state), form))
}

pub async fn register(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Form(form): Form<RegisterForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let registration = Registration {
        facility_id: None,
        family: form.family.trim().to_owned(),
        given: form.given.split_whitespace().map(str::to_owned).collect(),
        gender: form.gender.clone(),
        birth_date: form.birth_date.clone(),
        phone: opt(&form.phone),
        national_id: opt(&form.national_id),
        address: None,
        override_reason: form.override_reason.as_deref().and_then(opt),
    };
    match registration::register(&state, &ctx(&state, &live, &rid), registration).await {
        Ok(done) => {
            crate::drafts::discard(&state, live.principal.user_id, "register").await;
            let id = done.patient["id"].as_str().unwrap_or_default().to_owned();
            Redirect::to(&format!("/patients/{id}")).into_response()
        }
        Err(e) if e.code == "KX-PAT-001" => {
            let candidates = e
                .extra
                .as_ref()
                .and_then(|x| x["duplicates"].as_array().cloned())
                .unwrap_or_default();
            let warning = duplicate_warning(&form, &candidates);
            (
                StatusCode::CONFLICT,
                html_page(page(
                    "Possible duplicate",
                    Some(&live),
                    idle(&state),
                    warning,
                )),
            )
                .into_response()
        }
        Err(e) => {
            let banner = error_banner(&e, &rid.0);
            let body = registration_form(&live.session.csrf_token, &form, banner);
            (
                e.status,
                html_page(page("Register", Some(&live), idle(&state), body)),
            )
                .into_response()
        }
    }
}

/// The likely matches side by side with what was typed: open the existing record ("this is
/// the same person") or register anyway with a reason.
fn duplicate_warning(form: &RegisterForm, candidates: &[Value]) -> Markup {
    html! {
        h1 { "This patient may already be registered" }
        div.banner.warn role="alert" { "Check the records below before registering a second one: duplicates split a patient's history." }
        div.side-by-side {
            div.panel {
                h2 { "You typed" }
                p { strong { (form.family) ", " (form.given) } }
                p { "Born " (form.birth_date) " · " (form.gender) }
                @if !form.phone.is_empty() { p { "Phone " (form.phone) } }
                form method="post" action="/patients/new" {
                    @for (name, value) in [("csrf_token", &form.csrf_token), ("family", &form.family), ("given", &form.given), ("birth_date", &form.birth_date), ("gender", &form.gender), ("phone", &form.phone), ("national_id", &form.national_id)] {
                        input type="hidden" name=(name) value=(value);
                    }
                    label for="override_reason" { "Reason to register anyway" }
                    input #override_reason name="override_reason" required minlength="5";
                    p { button.secondary type="submit" { "Register anyway" } }
                }
            }
            div {
                @for c in candidates {
                    div.panel {
                        h2 { (name_of(&c["patient"])) }
                        p { "Born " (text(&c["patient"]["birthDate"])) " · " (text(&c["patient"]["gender"])) " · MRN " (mrn_of(&c["patient"])) }
                        p.muted { "Match: " (text(&c["strength"])) " — " (c["reasons"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        a.button href={ "/patients/" (text(&c["patient_id"])) } { "This is the same person" }
                    }
                }
            }
        }
    }
}

// ---------- the chart ----------

/// How the chart is shown: the latest results only (the default), or all of them.
#[derive(Debug, Deserialize, Default)]
pub struct ChartView {
    results: Option<String>,
}

/// The results table shows this many of the latest results unless all are asked for: a chart
/// must open fast on an old PC, and five years of vitals are in the trends above it.
const RECENT_RESULTS: usize = 30;

pub async fn chart(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Query(view): Query<ChartView>,
) -> Response {
    let all_results = view.results.as_deref() == Some("all");
    let ctx = ctx(&state, &live, &rid);
    let patient = match records::read(&state, &ctx, ResourceKind::Patient, id).await {
        Ok(p) => p,
        Err(e) => {
            return error_page(&state, &live, &rid, "Patient", &e);
        }
    };
    match kiorex_api::chart::open(&state, &ctx, &patient).await {
        Ok(chart) => {
            let (user, now) = (live.principal.user_id, Utc::now());
            let glass = state
                .store
                .run(move |conn| kiorex_store::care::active_break_glass(conn, user, id, now))
                .await
                .ok()
                .flatten();
            let documents = crate::documents::list(&state, &ctx, id).await;
            let body = html! {
                (chart_body(&live, &patient, &chart, glass.map(|g| g.expires_at), all_results))
                (crate::documents::panel(&live, id, &documents))
            };
            html_page(page(
                &name_of(&patient.content),
                Some(&live),
                idle(&state),
                body,
            ))
        }
        Err(e) if e.code == "KX-ACC-002" => {
            let body = restricted(&live, &patient, None);
            (
                StatusCode::FORBIDDEN,
                html_page(page("Restricted record", Some(&live), idle(&state), body)),
            )
                .into_response()
        }
        Err(e) => error_page(&state, &live, &rid, "Patient", &e),
    }
}

fn patient_header(patient: &Stored, allergies: &[String]) -> Markup {
    let p = &patient.content;
    html! {
        section.patient-header aria-label="Patient" {
            h1 { (name_of(p)) }
            span { (age(p)) " · " (text(&p["gender"])) }
            span { "Born " (text(&p["birthDate"])) }
            span { "MRN " strong { (mrn_of(p)) } }
            a.no-print href={ "/patients/" (patient.id) "/label" } target="_blank" { "Print label" }
            a.no-print href={ "/patients/" (patient.id) "/demographics" } { "Edit demographics" }
            a.no-print href={ "/history/Patient/" (patient.id) } { "History" }
            @if allergies.is_empty() {
                span.muted { "No known allergies recorded" }
            } @else {
                span.allergy { "Allergies: " (allergies.join(", ")) }
            }
        }
    }
}

fn restricted(live: &Live, patient: &Stored, message: Option<Markup>) -> Markup {
    html! {
        (patient_header(patient, &[]))
        div.panel {
            h2 { "Restricted record" }
            p { "This patient is not under your care, so the clinical record is closed to you." }
            p { "In an emergency you may open it now. Say why: the record opens for a limited time, the access is recorded, and the privacy officer reviews it." }
            @if let Some(m) = message { (m) }
            form method="post" action={ "/patients/" (patient.id) "/break-glass" } {
                input type="hidden" name="csrf_token" value=(live.session.csrf_token);
                label for="reason" { "Reason" }
                textarea #reason name="reason" required minlength="10" rows="3" {}
                p { button type="submit" { "Break the glass and open the record" } }
            }
        }
    }
}

fn chart_body(
    live: &Live,
    patient: &Stored,
    chart: &Chart,
    glass_until: Option<DateTime<Utc>>,
    all_results: bool,
) -> Markup {
    let of = |t: &'static str| chart.records.iter().filter(move |s| s.resource_type == t);
    let allergies: Vec<String> = of("AllergyIntolerance")
        .map(|a| concept(&a.content["code"]))
        .collect();
    let problems: Vec<(Uuid, String)> = of("Condition")
        .map(|c| (c.id, concept(&c.content["code"])))
        .collect();
    let allergy_rows: Vec<(Uuid, String)> = of("AllergyIntolerance")
        .map(|a| (a.id, concept(&a.content["code"])))
        .collect();
    let medications: Vec<String> = of("MedicationRequest")
        .filter(|m| m.content["status"] == "active")
        .map(|m| concept(&m.content["medicationCodeableConcept"]))
        .collect();
    let mut results: Vec<&ChartResultRow> = chart.results.iter().collect();
    results.sort_by_key(|r| std::cmp::Reverse(r.effective_at));
    let encounters: Vec<&Stored> = of("Encounter").collect();
    let notes: Vec<&Stored> = of("ClinicalImpression").collect();
    let open: Vec<&Stored> = encounters
        .iter()
        .copied()
        .filter(|e| {
            e.content["status"]
                .as_str()
                .is_some_and(|s| kiorex_domain::identity::OPEN_ENCOUNTER_STATUSES.contains(&s))
        })
        .collect();
    html! {
        (patient_header(patient, &allergies))
        @if let Some(until) = glass_until {
            div.banner.glass role="alert" { "Break-the-glass access: this record is open to you until " (until.format("%H:%M UTC")) ". Your access is recorded and reviewed." }
        }
        div.grid {
            section.panel { h2 { "Problems" } @if problems.is_empty() { p.muted { "None recorded" } } ul { @for (pid, p) in &problems { li { (p) " " a.history href={ "/history/Condition/" (pid) } { "history" } } } } }
            section.panel { h2 { "Current medications" } @if medications.is_empty() { p.muted { "None recorded" } } ul { @for m in &medications { li { (m) } } } }
            section.panel { h2 { "Allergies" } @if allergies.is_empty() { p.muted { "None recorded" } } ul { @for (aid, a) in &allergy_rows { li { span.allergy { (a) } " " a.history href={ "/history/AllergyIntolerance/" (aid) } { "history" } } } } }
        }
        section.panel {
            h2 { "Vital signs" }
            (vital_trends(&results))
            form method="post" action={ "/patients/" (patient.id) "/vitals" } data-draft={ "vitals-" (patient.id) } {
                input type="hidden" name="csrf_token" value=(live.session.csrf_token);
                div.grid {
                    @for (name, label, unit) in VITAL_FIELDS {
                        div { label for=(name) { (label) " (" (unit) ")" } input id=(name) name=(name) inputmode="decimal"; }
                    }
                }
                p { button type="submit" { "Record vital signs" } }
            }
        }
        section.panel #results {
            h2 { "Results" }
            @if results.is_empty() { p.muted { "No results yet" } } @else {
                table {
                    thead { tr { th { "Test" } th { "Value" } th { "Flag" } th { "When" } } }
                    tbody {
                        @for r in results.iter().take(if all_results { usize::MAX } else { RECENT_RESULTS }) {
                            tr {
                                td { (r.display) @if r.vital { span.muted { " (vital sign)" } } }
                                td { (r.value.map(|v| v.to_string()).unwrap_or_default()) " " (r.unit) }
                                td { @if !r.flag.is_empty() && r.flag != "N" { span class={ "flag-" (r.flag) } { (flag_words(&r.flag)) } } }
                                td { (r.effective_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()) " " a.history href={ "/history/Observation/" (r.resource_id) } { "history" } }
                            }
                        }
                    }
                }
                @if !all_results && results.len() > RECENT_RESULTS {
                    p { a href={ "/patients/" (patient.id) "?results=all#results" } { "Show all " (results.len()) " results" } }
                }
            }
        }
        (clinical_forms(live, patient.id, &open))
        (crate::notes::timeline(live, &encounters, &notes))
    }
}

/// The points of one vital sign, oldest first.
fn points_of(results: &[&ChartResultRow], loinc: &str) -> Vec<Point> {
    let mut p: Vec<Point> = results
        .iter()
        .filter(|r| r.code == loinc)
        .filter_map(|r| {
            Some(Point {
                at: r.effective_at?,
                value: r.value?,
            })
        })
        .collect();
    p.sort_by_key(|p| p.at);
    p
}

/// The normal range of a vital sign, as Kiorex ships it (marked as a default).
fn band_of(loinc: &str) -> Option<trend::Band> {
    let range = &vital_sign(loinc)?.range;
    Some(trend::Band {
        low: range.low?,
        high: range.high?,
        default: range.is_default,
    })
}

/// One trend chart per vital sign; systolic and diastolic pressure share one.
fn vital_trends(results: &[&ChartResultRow]) -> Markup {
    let single = |title: &str, unit: &str, loinc: &str| {
        let points = points_of(results, loinc);
        trend::chart(
            title,
            unit,
            &[trend::Series {
                name: title,
                points: &points,
                band: band_of(loinc),
            }],
        )
    };
    let systolic = points_of(results, "8480-6");
    let diastolic = points_of(results, "8462-4");
    let pressure = trend::chart(
        "Blood pressure",
        "mm Hg",
        &[
            trend::Series {
                name: "Systolic",
                points: &systolic,
                band: band_of("8480-6"),
            },
            trend::Series {
                name: "Diastolic",
                points: &diastolic,
                band: band_of("8462-4"),
            },
        ],
    );
    let charts = [
        ("Heart rate (/min)", single("Heart rate", "/min", "8867-4")),
        ("Blood pressure (mm Hg), systolic and diastolic", pressure),
        ("Temperature (°C)", single("Temperature", "°C", "8310-5")),
        (
            "Respiratory rate (/min)",
            single("Respiratory rate", "/min", "9279-1"),
        ),
        ("SpO₂ (%)", single("SpO₂", "%", "59408-5")),
        ("Weight (kg)", single("Weight", "kg", "29463-7")),
    ];
    html! {
        p.muted { "Green bands: the normal range (Kiorex's default ranges until your lab or ward sets its own). Red points are outside it." }
        div.trends {
            @for (caption, svg) in charts {
                figure { figcaption { (caption) } (raw(svg)) }
            }
        }
    }
}

const VITAL_FIELDS: [(&str, &str, &str); 7] = [
    ("heart_rate", "Heart rate", "/min"),
    ("systolic", "Systolic BP", "mm Hg"),
    ("diastolic", "Diastolic BP", "mm Hg"),
    ("temperature", "Temperature", "°C"),
    ("respiratory_rate", "Respiratory rate", "/min"),
    ("spo2", "SpO₂", "%"),
    ("weight", "Weight", "kg"),
];

fn loinc_of(field: &str) -> &'static str {
    match field {
        "heart_rate" => "8867-4",
        "systolic" => "8480-6",
        "diastolic" => "8462-4",
        "temperature" => "8310-5",
        "respiratory_rate" => "9279-1",
        "weight" => "29463-7",
        _ => "59408-5",
    }
}

fn flag_words(flag: &str) -> &'static str {
    match flag {
        "H" => "High",
        "L" => "Low",
        "HH" => "Critical high",
        "LL" => "Critical low",
        _ => "Abnormal",
    }
}

#[derive(Debug, Deserialize)]
pub struct VitalsForm {
    csrf_token: String,
    #[serde(flatten)]
    values: std::collections::HashMap<String, String>,
}

pub async fn record_vitals(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<VitalsForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    let ctx = ctx(&state, &live, &rid);
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut problem = None;
    for (field, label, _) in VITAL_FIELDS {
        let Some(raw_value) = form
            .values
            .get(field)
            .map(|v| v.trim().replace(',', "."))
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        let Ok(value) = raw_value.parse::<f64>() else {
            problem = Some(ApiError::bad_request(
                "KX-REQ-001",
                format!("{label}: {raw_value:?} is not a number"),
            ));
            break;
        };
        let loinc = loinc_of(field);
        let unit = vital_sign(loinc).map(|v| v.range.unit).unwrap_or("");
        let observation = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": label}]},
            "subject": {"reference": format!("Patient/{id}")}, "effectiveDateTime": now,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}});
        let result = async {
            let parsed = kiorex_fhir::parse::parse_value(ResourceKind::Observation, observation)
                .map_err(ApiError::invalid)?;
            records::create(&state, &ctx, parsed, None).await
        };
        if let Err(e) = result.await {
            problem = Some(e);
            break;
        }
    }
    match problem {
        None => {
            crate::drafts::discard(&state, live.principal.user_id, &format!("vitals-{id}")).await;
            Redirect::to(&format!("/patients/{id}")).into_response()
        }
        Some(e) => error_page(&state, &live, &rid, "Vital signs", &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct GlassForm {
    csrf_token: String,
    reason: String,
}

pub async fn break_glass(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<GlassForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    match kiorex_api::care::open_the_glass(&state, &live.principal, id, &form.reason, &rid.0).await
    {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => {
            let ctx = ctx(&state, &live, &rid);
            match records::read(&state, &ctx, ResourceKind::Patient, id).await {
                Ok(patient) => {
                    let body = restricted(&live, &patient, Some(error_banner(&e, &rid.0)));
                    (
                        e.status,
                        html_page(page("Restricted record", Some(&live), idle(&state), body)),
                    )
                        .into_response()
                }
                Err(other) => error_page(&state, &live, &rid, "Patient", &other),
            }
        }
    }
}

// ---------- review queue (auditors) ----------

pub async fn review_queue(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
) -> Response {
    match kiorex_api::care::queue_for(&state, &live.principal, None).await {
        Ok(items) => html_page(page(
            "Break-the-glass review",
            Some(&live),
            idle(&state),
            html! {
                h1 { "Break-the-glass review" }
                @if items.is_empty() { p { "Nothing to review." } } @else {
                    table {
                        thead { tr { th { "When" } th { "Who" } th { "Patient" } th { "Reason" } th { "Status" } th { "Decision" } } }
                        tbody {
                            @for item in &items {
                                tr {
                                    td { (item.granted_at.format("%Y-%m-%d %H:%M")) }
                                    td { (item.username) }
                                    td { a href={ "/patients/" (item.patient_id) } { "Open record" } }
                                    td { (item.reason) }
                                    td { (item.review_status) }
                                    td {
                                        @if item.review_status == "pending" {
                                            form method="post" action={ "/review/" (item.id) } {
                                                input type="hidden" name="csrf_token" value=(live.session.csrf_token);
                                                label for={ "note-" (item.id) } { "Note" }
                                                input id={ "note-" (item.id) } name="note";
                                                button type="submit" name="decision" value="approve" { "Approve" }
                                                " "
                                                button.secondary type="submit" name="decision" value="flag" { "Flag" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        )),
        Err(e) => error_page(&state, &live, &rid, "Review", &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    csrf_token: String,
    decision: String,
    #[serde(default)]
    note: String,
}

pub async fn review(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<ReviewForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    match kiorex_api::care::decide(
        &state,
        &live.principal,
        id,
        &form.decision,
        &form.note,
        &rid.0,
    )
    .await
    {
        Ok(_) => Redirect::to("/review").into_response(),
        Err(e) => error_page(&state, &live, &rid, "Review", &e),
    }
}

// ---------- reading FHIR for display ----------

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn concept(c: &Value) -> String {
    c["text"]
        .as_str()
        .or(c["coding"][0]["display"].as_str())
        .or(c["coding"][0]["code"].as_str())
        .unwrap_or("(unnamed)")
        .to_owned()
}

pub(crate) fn name_of(p: &Value) -> String {
    let name = &p["name"][0];
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{}, {}",
        name["family"]
            .as_str()
            .unwrap_or("(no name)")
            .to_uppercase(),
        given.join(" ")
    )
}

pub(crate) fn mrn_of(p: &Value) -> String {
    p["identifier"]
        .as_array()
        .and_then(|ids| {
            ids.iter().find(|i| {
                i["system"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(records::MRN_SYSTEM_PREFIX))
            })
        })
        .map(|i| text(&i["value"]))
        .unwrap_or_default()
}

fn age(p: &Value) -> String {
    let Some(born) = p["birthDate"]
        .as_str()
        .and_then(|b| chrono::NaiveDate::parse_from_str(b, "%Y-%m-%d").ok())
    else {
        return String::new();
    };
    let today = Utc::now().date_naive();
    today
        .years_since(born)
        .map(|y| format!("{y} y"))
        .unwrap_or_default()
}

// ---------- encounters, diagnoses, allergies ----------

#[derive(Debug, Deserialize)]
pub struct ClinicalForm {
    csrf_token: String,
    /// open-encounter | close-encounter | diagnosis | allergy
    what: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    encounter: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    criticality: String,
    /// What was typed in the ICD-10-CM picker's search box (used when no code was chosen).
    #[serde(default)]
    q: String,
}

fn encounter_json(
    patient: Uuid,
    class: &str,
    practitioner: Option<Uuid>,
) -> Result<Value, ApiError> {
    let (code, display) = match class {
        "AMB" => ("AMB", "ambulatory"),
        "IMP" => ("IMP", "inpatient encounter"),
        "EMER" => ("EMER", "emergency"),
        _ => {
            return Err(ApiError::bad_request(
                "KX-REQ-001",
                "choose outpatient, inpatient or emergency",
            ));
        }
    };
    let mut encounter = json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}});
    if let Some(p) = practitioner {
        encounter["participant"] =
            json!([{"individual": {"reference": format!("Practitioner/{p}")}}]);
    }
    Ok(encounter)
}

/// Opens or closes an encounter, or records a diagnosis or an allergy, through the records
/// service (permissions, care relationship, audit).
pub async fn clinical(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<ClinicalForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    let ctx = ctx(&state, &live, &rid);
    let result = async {
        match form.what.as_str() {
            "open-encounter" => {
                let user = live.principal.user_id;
                let practitioner = state
                    .store
                    .run(move |conn| kiorex_store::directory::practitioner_of(conn, user))
                    .await?;
                let parsed = kiorex_fhir::parse::parse_value(
                    ResourceKind::Encounter,
                    encounter_json(id, &form.class, practitioner)?,
                )
                .map_err(ApiError::invalid)?;
                records::create(&state, &ctx, parsed, None)
                    .await
                    .map(|_| ())
            }
            "close-encounter" => {
                let encounter_id = Uuid::parse_str(&form.encounter)
                    .map_err(|_| ApiError::not_found("That encounter"))?;
                let current =
                    records::read(&state, &ctx, ResourceKind::Encounter, encounter_id).await?;
                let mut content = current.content.clone();
                content["status"] = json!("finished");
                content["period"]["end"] =
                    json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                let parsed = kiorex_fhir::parse::parse_value(ResourceKind::Encounter, content)
                    .map_err(ApiError::invalid)?;
                records::update(&state, &ctx, encounter_id, parsed, Some(current.version_id))
                    .await
                    .map(|_| ())
            }
            "diagnosis" => {
                // Only a code of the loaded ICD-10-CM list, and one that may be recorded.
                let typed = if form.code.trim().is_empty() {
                    &form.q
                } else {
                    &form.code
                };
                let concept = kiorex_api::terminology::icd10cm_code(&state, typed).await?;
                if !concept.billable {
                    return Err(ApiError::bad_request(
                        "KX-TERM-404",
                        format!(
                            "{} is a heading: choose a more specific code under it",
                            concept.code
                        ),
                    ));
                }
                let condition = json!({"resourceType": "Condition",
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "code": {"coding": [{"system": kiorex_fhir::extract::ICD10CM, "code": concept.code, "display": concept.display}], "text": concept.display},
                    "subject": {"reference": format!("Patient/{id}")}});
                let parsed = kiorex_fhir::parse::parse_value(ResourceKind::Condition, condition)
                    .map_err(ApiError::invalid)?;
                records::create(&state, &ctx, parsed, None)
                    .await
                    .map(|_| ())
            }
            "allergy" => {
                if form.text.trim().is_empty() {
                    return Err(ApiError::bad_request(
                        "KX-REQ-001",
                        "say what the patient is allergic to",
                    ));
                }
                let criticality = match form.criticality.as_str() {
                    "high" | "low" | "unable-to-assess" => form.criticality.clone(),
                    _ => "unable-to-assess".to_owned(),
                };
                let allergy = json!({"resourceType": "AllergyIntolerance",
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                    "criticality": criticality, "code": {"text": form.text.trim()},
                    "patient": {"reference": format!("Patient/{id}")}});
                let parsed =
                    kiorex_fhir::parse::parse_value(ResourceKind::AllergyIntolerance, allergy)
                        .map_err(ApiError::invalid)?;
                records::create(&state, &ctx, parsed, None)
                    .await
                    .map(|_| ())
            }
            _ => Err(ApiError::bad_request("KX-REQ-001", "unknown action")),
        }
    };
    match result.await {
        Ok(()) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => (
            e.status,
            html_page(page(
                "Patient",
                Some(&live),
                idle(&state),
                html! {
                    (error_banner(&e, &rid.0))
                    p { a href={ "/patients/" (id) } { "Back to the chart" } }
                },
            )),
        )
            .into_response(),
    }
}

fn clinical_forms(live: &Live, patient: Uuid, open: &[&Stored]) -> Markup {
    let csrf = &live.session.csrf_token;
    let action = format!("/patients/{patient}/clinical");
    html! {
        div.grid {
            form.panel method="post" action=(action) {
                h2 { "Open an encounter" }
                input type="hidden" name="csrf_token" value=(csrf);
                input type="hidden" name="what" value="open-encounter";
                label for="class" { "Kind" }
                select #class name="class" { option value="AMB" { "Outpatient" } option value="IMP" { "Inpatient" } option value="EMER" { "Emergency" } }
                p { button type="submit" { "Open" } }
                @for e in open {
                    p { (text(&e.content["class"]["display"])) " since " (text(&e.content["period"]["start"])) }
                }
            }
            @if let Some(current) = open.first() {
                form.panel method="post" action=(action) {
                    h2 { "Close the encounter" }
                    input type="hidden" name="csrf_token" value=(csrf);
                    input type="hidden" name="what" value="close-encounter";
                    input type="hidden" name="encounter" value=(current.id);
                    p { (text(&current.content["class"]["display"])) " since " (text(&current.content["period"]["start"])) }
                    p { button.secondary type="submit" { "Close" } }
                }
            }
            (crate::picker::diagnosis_form(csrf, patient))
            form.panel method="post" action=(action) {
                h2 { "Add an allergy" }
                input type="hidden" name="csrf_token" value=(csrf);
                input type="hidden" name="what" value="allergy";
                label for="allergy-text" { "Substance" }
                input #allergy-text name="text" required;
                label for="criticality" { "Criticality" }
                select #criticality name="criticality" { option value="high" { "High" } option value="low" { "Low" } option value="unable-to-assess" { "Unknown" } }
                p { button type="submit" { "Add allergy" } }
            }
        }
    }
}

// ---------- demographics ----------

#[derive(Debug, Deserialize)]
pub struct DemographicsForm {
    csrf_token: String,
    version: i32,
    family: String,
    given: String,
    birth_date: String,
    gender: String,
    #[serde(default)]
    phone: String,
}

pub async fn demographics_form(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = ctx(&state, &live, &rid);
    match records::read(&state, &ctx, ResourceKind::Patient, id).await {
        Ok(patient) => {
            let p = &patient.content;
            let given: Vec<&str> = p["name"][0]["given"]
                .as_array()
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let phone = p["telecom"]
                .as_array()
                .and_then(|t| t.iter().find(|c| c["system"] == "phone"))
                .map(|c| text(&c["value"]))
                .unwrap_or_default();
            html_page(page(
                "Edit demographics",
                Some(&live),
                idle(&state),
                html! {
                    (patient_header(&patient, &[]))
                    h1 { "Edit demographics" }
                    form method="post" action={ "/patients/" (id) "/demographics" } {
                        input type="hidden" name="csrf_token" value=(live.session.csrf_token);
                        input type="hidden" name="version" value=(patient.version_id);
                        div.grid {
                            div { label for="family" { "Family name" } input #family name="family" required value=(text(&p["name"][0]["family"])); }
                            div { label for="given" { "Given names" } input #given name="given" required value=(given.join(" ")); }
                            div { label for="birth_date" { "Date of birth" } input #birth_date name="birth_date" type="date" required value=(text(&p["birthDate"])); }
                            div {
                                label for="gender" { "Sex" }
                                select #gender name="gender" {
                                    @for (v, l) in [("female", "Female"), ("male", "Male"), ("other", "Other"), ("unknown", "Unknown")] {
                                        option value=(v) selected[p["gender"] == v] { (l) }
                                    }
                                }
                            }
                            div { label for="phone" { "Phone" } input #phone name="phone" type="tel" value=(phone); }
                        }
                        p { button type="submit" { "Save" } }
                    }
                },
            ))
        }
        Err(e) => error_page(&state, &live, &rid, "Patient", &e),
    }
}

/// Saves demographics as a new version of the Patient (with If-Match: someone else's change in
/// between is reported, not overwritten).
pub async fn save_demographics(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<DemographicsForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    let ctx = ctx(&state, &live, &rid);
    let result = async {
        let current = records::read(&state, &ctx, ResourceKind::Patient, id).await?;
        let mut content = current.content.clone();
        content["name"][0]["family"] = json!(form.family.trim());
        content["name"][0]["given"] = json!(form.given.split_whitespace().collect::<Vec<_>>());
        content["birthDate"] = json!(form.birth_date.trim());
        content["gender"] = json!(form.gender);
        let mut telecom: Vec<Value> = content["telecom"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["system"] != "phone")
            .collect();
        if !form.phone.trim().is_empty() {
            telecom.push(json!({"system": "phone", "value": form.phone.trim()}));
        }
        content["telecom"] = json!(telecom);
        if telecom.is_empty()
            && let Some(o) = content.as_object_mut()
        {
            o.remove("telecom");
        }
        let parsed = kiorex_fhir::parse::parse_value(ResourceKind::Patient, content)
            .map_err(ApiError::invalid)?;
        records::update(&state, &ctx, id, parsed, Some(form.version)).await
    };
    match result.await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => (
            e.status,
            html_page(page(
                "Edit demographics",
                Some(&live),
                idle(&state),
                html! {
                    (error_banner(&e, &rid.0))
                    p { a href={ "/patients/" (id) "/demographics" } { "Reload the form" } }
                },
            )),
        )
            .into_response(),
    }
}
