//! IT pages: facility settings (edited, versioned, audited) and system health (each component
//! green, amber or red, with words). Both call the same services the API would.

use crate::pages::{csrf_ok, csrf_refused, error_page, html_page, idle};
use crate::{Staff, error_banner, page};
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use kiorex_api::AppState;
use kiorex_api::auth::RequestId;
use kiorex_api::error::ApiError;
use kiorex_api::facility_settings::{self, FacilitySettings};
use kiorex_api::identity::session::Live;
use kiorex_api::system_health::{self, Level};
use kiorex_domain::permission::Role;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

fn is_it(live: &Live) -> bool {
    live.principal
        .grants
        .iter()
        .any(|g| matches!(g.role, Role::ItAdmin | Role::Administrator))
}

fn settings_form(live: &Live, f: &FacilitySettings) -> Markup {
    let field = |id: &str, label: &str, value: &str| {
        let input_id = format!("{id}-{}", f.code);
        html! { div { label for=(input_id) { (label) } input id=(input_id) name=(id) value=(value); } }
    };
    html! {
        form.panel method="post" action={ "/admin/facility/" (f.id) } {
            h2 { (f.name) " (" (f.code) ")" }
            p.muted { "Code " strong { (f.code) } ": the prefix of every MRN issued here, so it cannot be changed. Version " (f.version) " · " a href={ "/history/Organization/" (f.id) } { "history" } }
            input type="hidden" name="csrf_token" value=(live.session.csrf_token);
            input type="hidden" name="version" value=(f.version);
            div.grid {
                (field("name", "Name", &f.name))
                (field("address_line", "Street address", &f.address_line))
                (field("city", "City", &f.city))
                (field("postal_code", "Postal code", &f.postal_code))
                (field("country", "Country", &f.country))
                (field("phone", "Phone", &f.phone))
                (field("timezone", "Time zone (e.g. Africa/Nairobi)", &f.timezone))
            }
            p { button type="submit" { "Save the settings" } }
        }
    }
}

/// `GET /admin/facility`: the settings of every facility this person administers.
pub async fn facility_page(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
) -> Response {
    match facility_settings::editable(&state, &live.principal).await {
        Ok(facilities) => html_page(page(
            "Facility settings",
            Some(&live),
            idle(&state),
            html! {
                h1 { "Facility settings" }
                p.muted { "Changes are saved as a new version and recorded in the audit log." }
                @for f in &facilities { (settings_form(&live, f)) }
            },
        )),
        Err(e) => error_page(&state, &live, &rid, "Facility settings", &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    csrf_token: String,
    version: i32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    address_line: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    timezone: String,
}

/// `POST /admin/facility/{id}`.
pub async fn save_facility(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
    Form(form): Form<SettingsForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return csrf_refused(&state, &live, &rid);
    }
    let edit = FacilitySettings {
        id,
        code: String::new(),
        name: form.name,
        address_line: form.address_line,
        city: form.city,
        postal_code: form.postal_code,
        country: form.country,
        phone: form.phone,
        timezone: form.timezone,
        version: form.version,
    };
    match facility_settings::save(&state, &live.principal, &rid.0, edit).await {
        Ok(_) => Redirect::to("/admin/facility?saved=1").into_response(),
        Err(e) => (
            e.status,
            html_page(page(
                "Facility settings",
                Some(&live),
                idle(&state),
                html! {
                    (error_banner(&e, &rid.0))
                    p { a href="/admin/facility" { "Back to the facility settings" } }
                },
            )),
        )
            .into_response(),
    }
}

fn level_words(level: Level) -> &'static str {
    match level {
        Level::Green => "Working",
        Level::Amber => "Needs a look",
        Level::Red => "Not working",
        Level::Off => "Not configured",
    }
}

/// `GET /admin/health`: every component, checked now.
pub async fn health_page(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
) -> Response {
    if !is_it(&live) {
        let e = ApiError::forbidden("system health is for IT administrators");
        return error_page(&state, &live, &rid, "System health", &e);
    }
    let components = system_health::check(&state).await;
    let worst = if components.iter().any(|c| c.level == Level::Red) {
        Level::Red
    } else if components.iter().any(|c| c.level == Level::Amber) {
        Level::Amber
    } else {
        Level::Green
    };
    html_page(page(
        "System health",
        Some(&live),
        idle(&state),
        html! {
            h1 { "System health" }
            p class={ "health-summary level-" (format!("{worst:?}").to_lowercase()) } {
                @match worst {
                    Level::Red => "Something is not working: see the red lines below.",
                    Level::Amber => "Kiorex is working; some parts need a look.",
                    _ => "Everything is working.",
                }
            }
            table.health {
                thead { tr { th { "Component" } th { "State" } th { "Details" } } }
                tbody {
                    @for c in &components {
                        @let level = format!("{:?}", c.level).to_lowercase();
                        tr class={ "level-" (level) } {
                            td { (c.name) }
                            td { span class={ "dot level-" (level) } aria-hidden="true" {} " " (level_words(c.level)) }
                            td { (c.words) }
                        }
                    }
                }
            }
            p.muted { "Checked from this core server just now. Reload the page to check again." }
        },
    ))
}
