//! The OpenAPI 3 document of the REST surface, generated from the handlers (utoipa), served at
//! `/api/v1/openapi.json` and checked into `docs/openapi.json` (a test fails when they differ).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Kiorex core REST API", description = "REST for the Kiorex portals. Clinical data is also served as FHIR R4 under /fhir (see /fhir/metadata)."),
    paths(crate::rest::token, crate::rest::register, crate::rest::merge, crate::rest::unmerge, crate::rest::duplicates, crate::rest::list_facilities,
        crate::identity::routes::login, crate::identity::routes::logout, crate::identity::routes::current_session,
        crate::documents::routes::upload, crate::documents::routes::upload_version, crate::documents::routes::list,
        crate::documents::routes::describe, crate::documents::routes::delete, crate::documents::routes::download,
        crate::documents::routes::download_version, crate::patient_search::search_patients, crate::patient_search::search_documents,
        crate::patient_search::search_medicines, crate::documents::routes::hold_status, crate::terminology::search_icd10cm),
    components(schemas(crate::rest::TokenRequest, crate::rest::TokenResponse, crate::rest::MergeRequest,
        crate::registration::Registration, crate::registration::Address, crate::registration::Registered,
        crate::registration::Candidate, crate::registration::Merged,
        crate::identity::routes::LoginRequest, crate::identity::routes::SessionView, crate::identity::routes::LoggedOut,
        crate::documents::DocumentView, crate::documents::VersionView, crate::patient_search::PatientHit, crate::patient_search::DocumentSearchHit,
        crate::patient_search::MedicineSearchHit, crate::documents::holds::HoldView, crate::terminology::ConceptView, crate::terminology::ConceptHits)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
