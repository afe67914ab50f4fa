//! Audit review for the privacy officer: search the log by patient, user, action and time;
//! a patient's access report ("who saw my record"); and the log as FHIR `AuditEvent`.
//! Reading the log is itself audited.

use crate::auth::{Caller, FhirCaller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::identity::local::security_event;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use http::{HeaderValue, StatusCode, header};
use kiorex_domain::permission::{Action, Permission, Principal, Resource};
use kiorex_store::audit::{AuditEntry, AuditFilter, search};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(rest_search))
        .route("/patients/{id}/access-report", get(access_report))
}

pub fn fhir_routes() -> Router<AppState> {
    Router::new()
        .route("/AuditEvent", get(fhir_search))
        .route("/AuditEvent/{id}", get(fhir_read))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    pub patient: Option<Uuid>,
    pub user: Option<String>,
    pub action: Option<String>,
    /// `2026-11-01` or an RFC 3339 time; inclusive.
    pub from: Option<String>,
    /// Exclusive.
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub format: Option<String>,
}

fn auditor_facilities(principal: &Principal) -> Result<Vec<String>, ApiError> {
    let facilities = principal.facilities_with(Permission::new(Resource::Audit, Action::Read));
    if facilities.is_empty() {
        return Err(ApiError::forbidden("the audit log is for auditors"));
    }
    Ok(facilities.iter().map(Uuid::to_string).collect())
}

fn parse_time(key: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::bad_request(
                "KX-REQ-001",
                format!("{key}: use 2026-11-01 or an RFC 3339 time"),
            )
        })
}

fn filter_of(q: &AuditQuery, facility_ids: Vec<String>) -> Result<AuditFilter, ApiError> {
    Ok(AuditFilter {
        patient_id: q.patient.map(|p| p.to_string()),
        actor: q.user.clone().filter(|u| !u.is_empty()),
        action: q.action.clone().filter(|a| !a.is_empty()),
        from: q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?,
        to: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        facility_ids,
        limit: q.limit.unwrap_or(200).clamp(1, 5_000),
    })
}

/// Runs an audit search and audits that it happened (what was asked, not what was found).
async fn run(
    state: &AppState,
    principal: &Principal,
    rid: &str,
    filter: AuditFilter,
) -> Result<Vec<AuditEntry>, ApiError> {
    let detail = format!(
        "patient={} user={} action={}",
        filter.patient_id.as_deref().unwrap_or("*"),
        filter.actor.as_deref().unwrap_or("*"),
        filter.action.as_deref().unwrap_or("*")
    );
    let mut event = security_event("audit-search", "success", detail);
    event.patient_id = filter
        .patient_id
        .as_deref()
        .and_then(|p| Uuid::parse_str(p).ok());
    state.audit.by(principal, rid, vec![event]).await?;
    Ok(state.store.run(move |conn| search(conn, &filter)).await?)
}

/// Searches the log for an auditor (the portal's audit page and the API share it).
pub async fn search_log(
    state: &AppState,
    principal: &Principal,
    query: &AuditQuery,
    rid: &str,
) -> Result<Vec<AuditEntry>, ApiError> {
    let filter = filter_of(query, auditor_facilities(principal)?)?;
    run(state, principal, rid, filter).await
}

fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "seq": e.seq, "recorded_at": e.recorded_at, "user": e.actor, "action": e.action,
        "outcome": e.outcome, "resource_type": e.resource_type, "resource_id": e.resource_id,
        "patient_id": e.patient_id, "facility_id": e.facility_id, "request_id": e.request_id,
        "detail": e.detail,
    })
}

/// Searches the audit log (auditors).
async fn rest_search(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Query(q): Query<AuditQuery>,
) -> Response {
    let result = async {
        let filter = filter_of(&q, auditor_facilities(&principal)?)?;
        let entries = run(&state, &principal, &rid.0, filter).await?;
        Ok::<_, ApiError>(entries.iter().map(entry_json).collect::<Vec<_>>())
    };
    match result.await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.render(Dialect::Problem, &rid.0),
    }
}

/// Who saw this patient's record, when, and why: JSON, or CSV with `?format=csv`.
async fn access_report(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Path(patient): Path<Uuid>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let result = async {
        let query = AuditQuery {
            patient: Some(patient),
            limit: Some(q.limit.unwrap_or(5_000)),
            ..q
        };
        let filter = filter_of(&query, auditor_facilities(&principal)?)?;
        let entries = run(&state, &principal, &rid.0, filter).await?;
        Ok::<_, ApiError>((entries, query.format))
    };
    match result.await {
        Ok((entries, Some(format))) if format == "csv" => {
            let mut csv = String::from("recorded_at,user,action,outcome,resource,detail\n");
            for e in &entries {
                csv.push_str(&format!(
                    "{},{},{},{},{}/{},{}\n",
                    e.recorded_at.to_rfc3339(),
                    csv_field(&e.actor),
                    csv_field(&e.action),
                    csv_field(&e.outcome),
                    csv_field(&e.resource_type),
                    csv_field(&e.resource_id),
                    csv_field(&e.detail)
                ));
            }
            let mut response = csv.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            response.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"access-report.csv\""),
            );
            response
        }
        Ok((entries, _)) => Json(json!({
            "patient_id": patient,
            "accesses": entries.iter().map(entry_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => e.render(Dialect::Problem, &rid.0),
    }
}

/// Quotes a CSV field, and defuses leading `=`/`+`/`-`/`@` so a spreadsheet does not run it.
fn csv_field(text: &str) -> String {
    let safe = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if safe.contains([',', '"', '\n']) {
        format!("\"{}\"", safe.replace('"', "\"\""))
    } else {
        safe
    }
}

/// One audit entry as a FHIR R4 `AuditEvent`.
pub fn audit_event(e: &AuditEntry) -> Value {
    let action = match e.action.as_str() {
        "create" => "C",
        "update" | "merge" | "unmerge" => "U",
        "delete" => "D",
        "read" | "vread" | "search" | "everything" | "history" => "R",
        _ => "E",
    };
    let outcome = match e.outcome.as_str() {
        "success" => "0",
        "denied" | "failure" | "locked" => "4",
        _ => "8",
    };
    let mut entity = Vec::new();
    if !e.patient_id.is_empty() {
        entity.push(json!({"what": {"reference": format!("Patient/{}", e.patient_id)},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}}));
    }
    let is_the_patient = e.resource_type == "Patient" && e.resource_id == e.patient_id;
    if !e.resource_type.is_empty() && !is_the_patient {
        entity
            .push(json!({"what": {"reference": format!("{}/{}", e.resource_type, e.resource_id)}}));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": e.seq.to_string(),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "urn:kiorex:audit-action", "code": e.action}],
        "action": action,
        "recorded": e.recorded_at.to_rfc3339(),
        "outcome": outcome,
        "agent": [{"who": {"display": e.actor}, "requestor": true}],
        "source": {"observer": {"display": "kiorex-core"}},
    });
    if !e.detail.is_empty() {
        event["outcomeDesc"] = json!(e.detail);
    }
    if !entity.is_empty() {
        event["entity"] = json!(entity);
    }
    event
}

#[derive(Debug, Default, Deserialize)]
struct FhirAuditQuery {
    patient: Option<String>,
    agent: Option<String>,
    subtype: Option<String>,
    date: Option<Vec<String>>,
    _count: Option<i64>,
}

/// `GET /fhir/AuditEvent?patient=&agent=&subtype=&date=ge…&date=lt…&_count=`.
async fn fhir_search(
    State(state): State<AppState>,
    rid: RequestId,
    FhirCaller(principal): FhirCaller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let result = async {
        let mut q = FhirAuditQuery::default();
        for (key, value) in pairs {
            match key.as_str() {
                "patient" => q.patient = Some(value.trim_start_matches("Patient/").to_owned()),
                "agent" => q.agent = Some(value),
                "subtype" => q.subtype = Some(value),
                "date" => q.date.get_or_insert_with(Vec::new).push(value),
                "_count" => q._count = value.parse().ok(),
                other => {
                    return Err(ApiError::bad_request(
                        "KX-REQ-001",
                        format!(
                            "AuditEvent cannot be searched by {other:?}; use patient, agent, subtype, date or _count"
                        ),
                    ));
                }
            }
        }
        let patient = q
            .patient
            .map(|p| {
                Uuid::parse_str(&p).map_err(|_| {
                    ApiError::bad_request("KX-REQ-001", "patient must be a Patient id")
                })
            })
            .transpose()?;
        let mut query = AuditQuery {
            patient,
            user: q.agent,
            action: q.subtype,
            limit: q._count,
            ..Default::default()
        };
        for d in q.date.unwrap_or_default() {
            if let Some(t) = d.strip_prefix("ge") {
                query.from = Some(t.to_owned());
            } else if let Some(t) = d.strip_prefix("lt") {
                query.to = Some(t.to_owned());
            } else {
                return Err(ApiError::bad_request(
                    "KX-REQ-001",
                    "date takes ge<time> and lt<time>",
                ));
            }
        }
        let filter = filter_of(&query, auditor_facilities(&principal)?)?;
        let entries = run(&state, &principal, &rid.0, filter).await?;
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": entries.len(),
            "entry": entries.iter().map(|e| json!({
                "fullUrl": format!("{}/AuditEvent/{}", state.fhir_base(), e.seq),
                "resource": audit_event(e),
                "search": {"mode": "match"},
            })).collect::<Vec<_>>(),
        }))
    };
    fhir_reply(&rid.0, result.await)
}

/// `GET /fhir/AuditEvent/{id}`.
async fn fhir_read(
    State(state): State<AppState>,
    rid: RequestId,
    FhirCaller(principal): FhirCaller,
    Path(id): Path<i64>,
) -> Response {
    let result = async {
        let facilities = auditor_facilities(&principal)?;
        let entry = state
            .store
            .run(move |conn| kiorex_store::audit::by_seq(conn, id))
            .await?
            .filter(|e| e.facility_id.is_empty() || facilities.contains(&e.facility_id))
            .ok_or_else(|| ApiError::not_found(format!("AuditEvent/{id}")))?;
        let mut event = security_event("audit-read", "success", format!("AuditEvent/{id}"));
        event.patient_id = Uuid::parse_str(&entry.patient_id).ok();
        state.audit.by(&principal, &rid.0, vec![event]).await?;
        Ok(audit_event(&entry))
    };
    fhir_reply(&rid.0, result.await)
}

fn fhir_reply(rid: &str, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => {
            let mut response = (StatusCode::OK, body.to_string()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/fhir+json"),
            );
            response
        }
        Err(e) => e.render(Dialect::Fhir, rid),
    }
}
