//! The ICD-10-CM picker of the diagnosis form: a search box that asks the server as the
//! clinician types (htmx) and answers with the matching codes as radio buttons. Choosing is a
//! plain form control, so the picker works by keyboard (Tab to the list, arrows to choose) and
//! needs no script of its own. The loaded release is shown under every list.

use crate::Staff;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use kiorex_api::AppState;
use kiorex_api::terminology::ConceptHits;
use kiorex_store::terminology::Typed;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct PickerQuery {
    #[serde(default)]
    q: String,
}

/// `GET /terminology/icd-10-cm?q=` from the picker's search box: the list as radio buttons.
pub async fn options(
    State(state): State<AppState>,
    Staff(_live): Staff,
    Query(q): Query<PickerQuery>,
) -> Response {
    if !worth_searching(&q.q) {
        return Html(
            html! { p.muted { "Type at least two characters of a code (E1) or three letters of a word." } }
                .into_string(),
        )
        .into_response();
    }
    let markup = match kiorex_api::terminology::find_icd10cm(&state, &q.q, Some(15)).await {
        Ok(hits) => list(&hits),
        Err(e) => html! { p.banner.error role="alert" { (e.title) } },
    };
    Html(markup.into_string()).into_response()
}

/// Whether what is in the box is worth a search yet: the start of a code from two characters
/// (E1), words once one of them has three letters. One or two letters of a word appear in most
/// of the 98,000 descriptions and cannot use the trigram index, so such a keystroke cost
/// 100–150 ms and showed nothing useful.
fn worth_searching(typed: &str) -> bool {
    match kiorex_store::terminology::parse_typed(typed) {
        Some(Typed::CodePrefix(code)) => code.chars().count() >= 2,
        Some(Typed::Words(words)) => words.iter().any(|w| w.chars().count() >= 3),
        None => false,
    }
}

fn list(hits: &ConceptHits) -> Markup {
    html! {
        @if hits.concepts.is_empty() {
            p { "No ICD-10-CM code matches. Try fewer letters or another word." }
        } @else {
            fieldset.codes {
                legend { "Choose the code" }
                @for (i, c) in hits.concepts.iter().enumerate() {
                    @let id = format!("dx-option-{i}");
                    div.code-option {
                        input type="radio" id=(id) name="code" value=(c.code) required;
                        label for=(id) {
                            strong { (c.code) } " " (c.display)
                            @if !c.billable { span.muted { " (header: choose a more specific code)" } }
                        }
                    }
                }
            }
        }
        p.muted.source { "ICD-10-CM, " (hits.version) " release" }
    }
}

/// The diagnosis form with the picker.
pub fn diagnosis_form(csrf: &str, patient: Uuid) -> Markup {
    html! {
        form.panel #diagnosis method="post" action={ "/patients/" (patient) "/clinical" } {
            h2 { "Add a diagnosis" }
            input type="hidden" name="csrf_token" value=(csrf);
            input type="hidden" name="what" value="diagnosis";
            label for="dx-search" { "Find the ICD-10-CM code (code or words)" }
            input #dx-search type="search" name="q" autocomplete="off" placeholder="E11.9 or type 2 diabetes"
                hx-get="/terminology/icd-10-cm" hx-trigger="input changed delay:200ms, search" hx-target="#dx-options";
            div #dx-options aria-live="polite" {}
            p { button type="submit" { "Add diagnosis" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::worth_searching;

    #[test]
    fn codes_search_from_two_characters_and_words_from_three_letters() {
        assert!(worth_searching("E1"));
        assert!(worth_searching("e11.9"));
        assert!(!worth_searching("E"));
        assert!(!worth_searching("ty"));
        assert!(worth_searching("typ"));
        assert!(
            worth_searching("type 2"),
            "a short word beside a longer one"
        );
        assert!(!worth_searching("  "));
    }
}
