//! The wristband / label: name, date of birth, sex and the MRN, with the MRN as a Code 128
//! barcode (drawn by the `barcoders` crate as SVG, so it prints sharp on any label printer).

use crate::Staff;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use kiorex_api::AppState;
use kiorex_api::auth::RequestId;
use kiorex_api::records::{self, Ctx};
use kiorex_fhir::ResourceKind;
use maud::{DOCTYPE, PreEscaped, html};
use uuid::Uuid;

/// The MRN as a Code 128 barcode in SVG. Code set B carries letters, digits and the dash.
pub fn barcode_svg(mrn: &str) -> Result<String, String> {
    use barcoders::generators::svg::SVG;
    use barcoders::sym::code128::Code128;
    let code = Code128::new(format!("Ɓ{mrn}")).map_err(|e| format!("{e:?}"))?;
    let svg = SVG::new(60)
        .xmlns("http://www.w3.org/2000/svg".to_owned())
        .xdim(2)
        .generate(code.encode())
        .map_err(|e| format!("{e:?}"))?;
    Ok(svg)
}

pub async fn label(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = Ctx::new(&state, live.principal.clone(), &rid.0);
    let patient = match records::read(&state, &ctx, ResourceKind::Patient, id).await {
        Ok(p) => p,
        Err(e) => return e.render(kiorex_api::error::Dialect::Problem, &rid.0),
    };
    let p = &patient.content;
    let mrn = crate::pages::mrn_of(p);
    let bars = barcode_svg(&mrn).unwrap_or_default();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Label" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body.label {
                div.wristband {
                    strong { (crate::pages::name_of(p)) }
                    div { "Born " (p["birthDate"].as_str().unwrap_or("")) " · " (p["gender"].as_str().unwrap_or("")) }
                    div { "MRN " (mrn) }
                    div.barcode role="img" aria-label={ "Barcode of MRN " (mrn) } { (PreEscaped(bars)) }
                }
                p.no-print { "Use the browser's Print command to print this label." }
            }
        }
    };
    Html(page.into_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mrn_becomes_a_code128_barcode() {
        let svg = barcode_svg("FACA-0000001-8").unwrap();
        assert!(svg.starts_with("<svg"));
        // Start, 14 characters, checksum and stop: well over forty bars.
        assert!(svg.matches("<rect").count() > 40, "{svg}");
        assert_ne!(barcode_svg("FACA-0000001-8"), barcode_svg("FACA-0000002-6"));
    }
}
