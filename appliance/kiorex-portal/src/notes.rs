//! Notes on an encounter, written from the encounter in the chart's timeline.
//!
//! A note is a FHIR `ClinicalImpression`: the clinician's assessment during an encounter, with
//! `subject`, `encounter`, `assessor`, `date` and the text in `summary`. It fits the store as it
//! is: a small JSON record, versioned like every clinical write (an edit is a new version with
//! its author, shown in the record's history), found through its patient and encounter
//! references, and guarded like observations (nurses and physicians write notes; the front
//! desk does not). `DocumentReference` is the documents service's type (a file in the object
//! store), and a `Composition` needs sections, a type and a title that a progress note has not.
//! Half-typed notes are kept as drafts on the server like the other forms.

use crate::pages::{csrf_ok, ctx, error_page, html_page, idle, text};
use crate::{Staff, page};
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{SecondsFormat, Utc};
use kiorex_api::AppState;
use kiorex_api::auth::RequestId;
use kiorex_api::error::ApiError;
use kiorex_api::identity::session::Live;
use kiorex_api::records;
use kiorex_fhir::ResourceKind;
use kiorex_store::resources::Stored;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// At most this much text in one note.
const MAX_NOTE_CHARS: usize = 20_000;

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    csrf_token: String,
    #[serde(default)]
    note: String,
    /// The version being edited (absent for a new note).
    version: Option<i32>,
}

fn note_text(form: &NoteForm) -> Result<String, ApiError> {
    let note = form.note.trim();
    if note.is_empty() {
        return Err(ApiError::bad_request("KX-REQ-001", "the note is empty"));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "KX-REQ-001",
            format!("a note holds at most {MAX_NOTE_CHARS} characters; split it in two"),
        ));
    }
    Ok(note.to_owned())
}

fn note_json(patient: Uuid, encounter: Uuid, practitioner: Option<Uuid>, note: &str) -> Value {
    let mut n = json!({"resourceType": "ClinicalImpression", "status": "completed",
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{encounter}")},
        "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "summary": note});
    if let Some(p) = practitioner {
        n["assessor"] = json!({"reference": format!("Practitioner/{p}")});
    }
    n
}

/// `POST /encounters/{id}/notes`: a new note on the encounter.
pub async fn create(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(encounter_id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return crate::pages::csrf_refused(&state, &live, &rid);
    }
    let ctx = ctx(&state, &live, &rid);
    let result = async {
        let note = note_text(&form)?;
        let encounter = records::read(&state, &ctx, ResourceKind::Encounter, encounter_id).await?;
        let patient = records::patient_of_stored(&encounter)
            .ok_or_else(|| ApiError::not_found("The encounter's patient"))?;
        let user = live.principal.user_id;
        let practitioner = state
            .store
            .run(move |conn| kiorex_store::directory::practitioner_of(conn, user))
            .await?;
        let parsed = kiorex_fhir::parse::parse_value(
            ResourceKind::ClinicalImpression,
            note_json(patient, encounter_id, practitioner, &note),
        )
        .map_err(ApiError::invalid)?;
        records::create(&state, &ctx, parsed, None).await?;
        crate::drafts::discard(&state, user, &format!("note-{encounter_id}")).await;
        Ok::<_, ApiError>(patient)
    };
    match result.await {
        Ok(patient) => Redirect::to(&format!("/patients/{patient}#encounters")).into_response(),
        Err(e) => error_page(&state, &live, &rid, "Note", &e),
    }
}

/// `GET /notes/{id}/edit`: the note in a form, at its current version.
pub async fn edit_form(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = ctx(&state, &live, &rid);
    match records::read(&state, &ctx, ResourceKind::ClinicalImpression, id).await {
        Ok(note) => {
            let patient = records::patient_of_stored(&note);
            let body = html! {
                h1 { "Edit the note" }
                p.muted { "The earlier text stays in the note's history." }
                form method="post" action={ "/notes/" (id) } {
                    input type="hidden" name="csrf_token" value=(live.session.csrf_token);
                    input type="hidden" name="version" value=(note.version_id);
                    label for="note-edit" { "Note" }
                    textarea #note-edit name="note" rows="10" required { (text(&note.content["summary"])) }
                    p { button type="submit" { "Save the note" } }
                }
                @if let Some(p) = patient { p { a href={ "/patients/" (p) } { "Back to the chart" } } }
            };
            html_page(page("Edit the note", Some(&live), idle(&state), body))
        }
        Err(e) => error_page(&state, &live, &rid, "Note", &e),
    }
}

/// `POST /notes/{id}`: a new version of the note (refused if someone saved one in between).
pub async fn save(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return crate::pages::csrf_refused(&state, &live, &rid);
    }
    let ctx = ctx(&state, &live, &rid);
    let result = async {
        let note = note_text(&form)?;
        let current = records::read(&state, &ctx, ResourceKind::ClinicalImpression, id).await?;
        let mut content = current.content.clone();
        content["summary"] = json!(note);
        let parsed = kiorex_fhir::parse::parse_value(ResourceKind::ClinicalImpression, content)
            .map_err(ApiError::invalid)?;
        let version = form.version.unwrap_or(current.version_id);
        records::update(&state, &ctx, id, parsed, Some(version)).await?;
        Ok::<_, ApiError>(records::patient_of_stored(&current))
    };
    match result.await {
        Ok(Some(patient)) => {
            Redirect::to(&format!("/patients/{patient}#encounters")).into_response()
        }
        Ok(None) => Redirect::to("/").into_response(),
        Err(e) => error_page(&state, &live, &rid, "Note", &e),
    }
}

/// The encounters timeline, newest first, each with its notes and, while it is open, a form
/// to write one.
pub fn timeline(live: &Live, encounters: &[&Stored], notes: &[&Stored]) -> Markup {
    let mut encounters = encounters.to_vec();
    encounters.sort_by(|a, b| {
        text(&b.content["period"]["start"]).cmp(&text(&a.content["period"]["start"]))
    });
    let open = |e: &Stored| {
        e.content["status"]
            .as_str()
            .is_some_and(|s| kiorex_domain::identity::OPEN_ENCOUNTER_STATUSES.contains(&s))
    };
    html! {
        section.panel #encounters {
            h2 { "Encounters" }
            @if encounters.is_empty() { p.muted { "No encounters" } }
            ol.timeline {
                @for e in &encounters {
                    @let reference = format!("Encounter/{}", e.id);
                    li {
                        p {
                            strong { (text(&e.content["class"]["display"])) }
                            " · " (text(&e.content["status"])) " · " (text(&e.content["period"]["start"]))
                            " " a.history href={ "/history/Encounter/" (e.id) } { "history" }
                        }
                        ul.notes {
                            @for n in notes.iter().filter(|n| n.content["encounter"]["reference"] == reference.as_str()) {
                                li.note {
                                    p.note-text { (text(&n.content["summary"])) }
                                    p.muted {
                                        (text(&n.content["date"])) " · version " (n.version_id) " · "
                                        a href={ "/notes/" (n.id) "/edit" } { "edit" } " · "
                                        a.history href={ "/history/ClinicalImpression/" (n.id) } { "history" }
                                    }
                                }
                            }
                        }
                        @if open(e) {
                            @let field = format!("note-{}", e.id);
                            form method="post" action={ "/encounters/" (e.id) "/notes" } data-draft=(field) {
                                input type="hidden" name="csrf_token" value=(live.session.csrf_token);
                                label for=(field) { "Note on this encounter" }
                                textarea id=(field) name="note" rows="4" required {}
                                p { button type="submit" { "Save the note" } }
                            }
                        }
                    }
                }
            }
        }
    }
}
