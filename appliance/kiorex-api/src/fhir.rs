//! FHIR R4 REST under `/fhir`: read, vread, create (conditional), update with If-Match, soft
//! delete, history, search, Bundle transaction/batch, Patient/$everything, and metadata.

use crate::auth::{FhirCaller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::records::{self, Ctx};
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::SecondsFormat;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use kiorex_domain::permission::{Action, Permission};
use kiorex_fhir::bundle::{self, BundleKind, EntryResponse, HistoryItem, InEntry, Method};
use kiorex_fhir::params::{DEFAULT_COUNT, FhirSearch, parse_search};
use kiorex_fhir::parse::{parse_bytes, parse_value};
use kiorex_fhir::{FHIR_JSON, Issue, IssueCode, ResourceKind};
use kiorex_store::resources::{self, Draft, Stored, WriteContext};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(transaction))
        .route("/metadata", get(metadata))
        .route("/{type}", get(search_type).post(create))
        .route("/{type}/_search", post(search_post))
        .route("/{type}/_history", get(type_history))
        .route("/{type}/{id}", get(read).put(update).delete(delete))
        .route("/{type}/{id}/{operation}", get(instance_operation))
        .route("/{type}/{id}/_history/{version}", get(vread))
}

type Pairs = Query<Vec<(String, String)>>;

/// Runs a handler body, rendering its error as an OperationOutcome.
fn fhir_result(request_id: &str, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.render(Dialect::Fhir, request_id))
}

fn kind_of(name: &str) -> Result<ResourceKind, ApiError> {
    ResourceKind::from_name(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "KX-FHIR-404",
            format!("this server does not hold {name} resources"),
        )
        .with_issues(vec![Issue::new(
            IssueCode::NotSupported,
            format!("resource type {name:?} is not supported; see /fhir/metadata"),
        )])
    })
}

fn id_of(kind: ResourceKind, id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("{}/{id}", kind.name())))
}

fn ctx(state: &AppState, caller: FhirCaller, request_id: &RequestId) -> Ctx {
    Ctx::new(state, caller.0, &request_id.0)
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn etag(version: i32) -> String {
    format!("W/\"{version}\"")
}

/// A resource with its ETag and Last-Modified headers.
fn resource_response(status: StatusCode, stored: &Stored) -> Response {
    let mut response = fhir_json(status, &stored.content);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(stored.version_id)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(
        &stored
            .last_updated
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    response
}

fn with_location(mut response: Response, state: &AppState, stored: &Stored) -> Response {
    let location = format!(
        "{}/{}/{}/_history/{}",
        state.fhir_base(),
        stored.resource_type,
        stored.id,
        stored.version_id
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `If-Match: W/"3"` → 3.
fn parse_if_match(value: &str) -> Result<i32, ApiError> {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| {
            ApiError::bad_request(
                "KX-FHIR-412",
                format!("If-Match must be a version ETag like W/\"3\", got {value:?}"),
            )
        })
}

fn if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(parse_if_match)
        .transpose()
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct) if ct.starts_with(FHIR_JSON) || ct.starts_with("application/json") => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "KX-REQ-415",
            format!("send application/fhir+json, not {other}"),
        )
        .with_issues(vec![Issue::new(
            IssueCode::NotSupported,
            format!("content type {other} is not supported; send application/fhir+json"),
        )])),
    }
}

async fn metadata(State(state): State<AppState>) -> Response {
    let published = chrono::Utc::now().format("%Y-%m-%d").to_string();
    fhir_json(
        StatusCode::OK,
        &kiorex_fhir::capability::capability_statement(
            &state.fhir_base(),
            env!("CARGO_PKG_VERSION"),
            &published,
        ),
    )
}

async fn read(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path((t, id)): Path<(String, String)>,
) -> Response {
    let result = async {
        let kind = kind_of(&t)?;
        let stored =
            records::read(&state, &ctx(&state, caller, &rid), kind, id_of(kind, &id)?).await?;
        Ok(resource_response(StatusCode::OK, &stored))
    };
    fhir_result(&rid.0, result.await)
}

async fn vread(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path((t, id, v)): Path<(String, String, String)>,
) -> Response {
    let result = async {
        let kind = kind_of(&t)?;
        let version: i32 = v
            .parse()
            .map_err(|_| ApiError::not_found(format!("{t}/{id}/_history/{v}")))?;
        let stored = records::vread(
            &state,
            &ctx(&state, caller, &rid),
            kind,
            id_of(kind, &id)?,
            version,
        )
        .await?;
        Ok(resource_response(StatusCode::OK, &stored))
    };
    fhir_result(&rid.0, result.await)
}

async fn create(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let kind = kind_of(&t)?;
        check_content_type(&headers)?;
        let parsed = parse_bytes(kind, &body).map_err(ApiError::invalid)?;
        let condition = headers
            .get("if-none-exist")
            .and_then(|v| v.to_str().ok())
            .map(|q| condition_of(kind, q))
            .transpose()?;
        let created =
            records::create(&state, &ctx(&state, caller, &rid), parsed, condition).await?;
        let status = if created.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(with_location(
            resource_response(status, &created.stored),
            &state,
            &created.stored,
        ))
    };
    fhir_result(&rid.0, result.await)
}

/// An `If-None-Exist` query (`identifier=sys|val`) as a search.
fn condition_of(kind: ResourceKind, query: &str) -> Result<FhirSearch, ApiError> {
    let pairs: Vec<(String, String)> = url_pairs(query.trim_start_matches('?'));
    if pairs.is_empty() {
        return Err(ApiError::bad_request(
            "KX-FHIR-001",
            "If-None-Exist needs search parameters, e.g. identifier=system|value",
        ));
    }
    parse_search(kind, &pairs).map_err(ApiError::invalid)
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded_pairs(query)
}

/// Decodes `a=1&b=2` the way axum's Query does.
fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

async fn update(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path((t, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let kind = kind_of(&t)?;
        check_content_type(&headers)?;
        let id = id_of(kind, &id)?;
        let parsed = parse_bytes(kind, &body).map_err(ApiError::invalid)?;
        let stored = records::update(
            &state,
            &ctx(&state, caller, &rid),
            id,
            parsed,
            if_match(&headers)?,
        )
        .await?;
        Ok(resource_response(StatusCode::OK, &stored))
    };
    fhir_result(&rid.0, result.await)
}

async fn delete(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path((t, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let kind = kind_of(&t)?;
        records::delete(
            &state,
            &ctx(&state, caller, &rid),
            kind,
            id_of(kind, &id)?,
            if_match(&headers)?,
        )
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    fhir_result(&rid.0, result.await)
}

async fn search_type(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path(t): Path<String>,
    Query(pairs): Pairs,
) -> Response {
    fhir_result(
        &rid.0,
        run_search(&state, ctx(&state, caller, &rid), &t, pairs).await,
    )
}

/// `POST /{type}/_search` with form-encoded parameters.
async fn search_post(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path(t): Path<String>,
    Query(mut pairs): Pairs,
    body: Bytes,
) -> Response {
    pairs.extend(serde_urlencoded_pairs(&String::from_utf8_lossy(&body)));
    fhir_result(
        &rid.0,
        run_search(&state, ctx(&state, caller, &rid), &t, pairs).await,
    )
}

async fn run_search(
    state: &AppState,
    ctx: Ctx,
    t: &str,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(t)?;
    let search = parse_search(kind, &pairs).map_err(ApiError::invalid)?;
    let (count, offset, echo) = (search.query.count, search.query.offset, search.echo.clone());
    let found = records::search(state, &ctx, kind, search).await?;
    let base = format!("{}/{}", state.fhir_base(), kind.name());
    let link = |offset: u32| page_link(&base, &echo, count, offset);
    let next = found.page.has_more.then(|| link(offset + count));
    let previous = (offset > 0).then(|| link(offset.saturating_sub(count)));
    let fhir_base = state.fhir_base();
    let entries = found
        .page
        .matches
        .into_iter()
        .map(|s| (s, "match"))
        .chain(found.included.into_iter().map(|s| (s, "include")))
        .map(|(s, mode)| {
            (
                format!("{fhir_base}/{}/{}", s.resource_type, s.id),
                s.content,
                mode,
            )
        })
        .collect();
    Ok(fhir_json(
        StatusCode::OK,
        &bundle::searchset(&link(offset), next.as_deref(), previous.as_deref(), entries),
    ))
}

fn page_link(base: &str, echo: &[(String, String)], count: u32, offset: u32) -> String {
    let mut params: Vec<String> = echo
        .iter()
        .filter(|(k, _)| k != "_count")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if count != DEFAULT_COUNT || offset > 0 {
        params.push(format!("_count={count}"));
    }
    if offset > 0 {
        params.push(format!("_offset={offset}"));
    }
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// Percent-encodes a query component.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn instance_operation(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path((t, id, op)): Path<(String, String, String)>,
    Query(pairs): Pairs,
) -> Response {
    let result = async {
        let kind = kind_of(&t)?;
        let id = id_of(kind, &id)?;
        match (kind, op.as_str()) {
            (_, "_history") => {
                history(
                    &state,
                    ctx(&state, caller, &rid),
                    Some(kind),
                    Some(id),
                    &pairs,
                )
                .await
            }
            (ResourceKind::Patient, "$everything") => {
                let all = records::everything(&state, &ctx(&state, caller, &rid), id).await?;
                let base = state.fhir_base();
                let entries = all
                    .into_iter()
                    .map(|s| {
                        (
                            format!("{base}/{}/{}", s.resource_type, s.id),
                            s.content,
                            "match",
                        )
                    })
                    .collect();
                let self_link = format!("{base}/Patient/{id}/$everything");
                Ok(fhir_json(
                    StatusCode::OK,
                    &bundle::searchset(&self_link, None, None, entries),
                ))
            }
            _ => Err(ApiError::not_found(format!("operation {op} on {t}"))),
        }
    };
    fhir_result(&rid.0, result.await)
}

async fn type_history(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path(t): Path<String>,
    Query(pairs): Pairs,
) -> Response {
    let result = async {
        history(
            &state,
            ctx(&state, caller, &rid),
            Some(kind_of(&t)?),
            None,
            &pairs,
        )
        .await
    };
    fhir_result(&rid.0, result.await)
}

async fn history(
    state: &AppState,
    ctx: Ctx,
    kind: Option<ResourceKind>,
    id: Option<Uuid>,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let mut count = i64::from(DEFAULT_COUNT);
    let mut offset = 0i64;
    let mut since = None;
    for (key, value) in pairs {
        match key.as_str() {
            "_count" => {
                count = value
                    .parse()
                    .ok()
                    .filter(|c| (1..=500).contains(c))
                    .ok_or_else(|| {
                        ApiError::bad_request("KX-FHIR-002", "_count must be between 1 and 500")
                    })?
            }
            "_offset" => {
                offset = value.parse().map_err(|_| {
                    ApiError::bad_request("KX-FHIR-002", "_offset must be a whole number")
                })?
            }
            "_since" => {
                since = Some(
                    kiorex_fhir::dates::period_of(value)
                        .map_err(|e| ApiError::bad_request("KX-FHIR-002", e))?
                        .0,
                )
            }
            other => {
                return Err(ApiError::bad_request(
                    "KX-FHIR-002",
                    format!("history does not take the parameter {other:?}"),
                ));
            }
        }
    }
    let (entries, has_more) = crate::history::versions(
        state,
        &ctx,
        crate::history::Wanted {
            kind,
            id,
            since,
            count,
            offset,
        },
    )
    .await?;
    let base = state.fhir_base();
    let path = match (kind, id) {
        (Some(k), Some(id)) => format!("{base}/{}/{id}/_history", k.name()),
        (Some(k), None) => format!("{base}/{}/_history", k.name()),
        _ => format!("{base}/_history"),
    };
    let next = has_more.then(|| format!("{path}?_count={count}&_offset={}", offset + count));
    let items = entries
        .into_iter()
        .map(|e| HistoryItem {
            full_url: format!("{base}/{}/{}", e.resource_type, e.id),
            method: if e.deleted {
                "DELETE"
            } else if e.version_id == 1 {
                "POST"
            } else {
                "PUT"
            },
            url: if e.version_id == 1 {
                e.resource_type.clone()
            } else {
                format!("{}/{}", e.resource_type, e.id)
            },
            last_modified: e.last_updated.to_rfc3339_opts(SecondsFormat::Micros, true),
            resource: (!e.deleted).then_some(e.content),
        })
        .collect();
    Ok(fhir_json(
        StatusCode::OK,
        &bundle::history(&path, next.as_deref(), items),
    ))
}

async fn transaction(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        check_content_type(&headers)?;
        let parsed = bundle::parse_bundle(&body).map_err(ApiError::invalid)?;
        let ctx = ctx(&state, caller, &rid);
        let (kind, responses) = match parsed.kind {
            BundleKind::Transaction => (
                BundleKind::Transaction,
                run_transaction(&state, &ctx, parsed.entries).await?,
            ),
            BundleKind::Batch => (
                BundleKind::Batch,
                run_batch(&state, &ctx, parsed.entries).await,
            ),
        };
        Ok(fhir_json(
            StatusCode::OK,
            &bundle::transaction_response(kind, responses),
        ))
    };
    fhir_result(&rid.0, result.await)
}

/// The order FHIR processes a transaction in: deletes, then creates (references first), then
/// updates, then reads.
fn processing_rank(entry: &InEntry) -> (u8, u8) {
    let kind_rank = entry
        .url
        .split(['/', '?'])
        .next()
        .and_then(ResourceKind::from_name)
        .map_or(9, |k| match k {
            ResourceKind::Organization => 0,
            ResourceKind::Practitioner => 1,
            ResourceKind::Patient => 2,
            ResourceKind::Encounter => 3,
            _ => 4,
        });
    let method_rank = match entry.method {
        Method::Delete => 0,
        Method::Post => 1,
        Method::Put => 2,
        Method::Get => 3,
    };
    (method_rank, kind_rank)
}

/// Everything in one database transaction: one bad entry and nothing is written.
async fn run_transaction(
    state: &AppState,
    ctx: &Ctx,
    entries: Vec<InEntry>,
) -> Result<Vec<EntryResponse>, ApiError> {
    let c = ctx.clone();
    let (responses, written) = state
        .store
        .transaction_with(move |conn| -> Result<_, ApiError> {
            {
                let wctx = WriteContext {
                    author: c.principal.username.clone(),
                    request_id: c.request_id.clone(),
                    at: chrono::Utc::now(),
                };
                let resolved = assign_ids(&entries);
                let mut order: Vec<usize> = (0..entries.len()).collect();
                order.sort_by_key(|&i| processing_rank(&entries[i]));
                let mut responses: Vec<Option<EntryResponse>> =
                    (0..entries.len()).map(|_| None).collect();
                let mut written = Vec::new();
                let mut known = records::Known::default();
                // Plain creates are checked one by one but written together.
                let mut pending: Vec<(usize, Draft)> = Vec::new();
                for i in order {
                    let entry = &entries[i];
                    if entry.method == Method::Post && entry.if_none_exist.is_none() {
                        let draft = prepare_post(conn, &c, &wctx, entry, &resolved, &mut known)
                            .map_err(|e| within_entry(e, entry))?;
                        pending.push((i, draft));
                        continue;
                    }
                    flush_creates(conn, &wctx, &mut pending, &mut responses, &mut written)?;
                    let (response, stored) =
                        run_entry(conn, &c, &wctx, entry, &resolved, &mut known)
                            .map_err(|e| within_entry(e, entry))?;
                    written.extend(stored);
                    responses[i] = Some(response);
                }
                flush_creates(conn, &wctx, &mut pending, &mut responses, &mut written)?;
                Ok((responses.into_iter().flatten().collect::<Vec<_>>(), written))
            }
        })
        .await?;
    audit_written(state, ctx, &written).await?;
    Ok(responses)
}

/// Writes the creates prepared so far and fills in their responses.
fn flush_creates(
    conn: &mut diesel::PgConnection,
    wctx: &WriteContext,
    pending: &mut Vec<(usize, Draft)>,
    responses: &mut [Option<EntryResponse>],
    written: &mut Vec<(String, Stored)>,
) -> Result<(), ApiError> {
    if pending.is_empty() {
        return Ok(());
    }
    let (slots, drafts): (Vec<usize>, Vec<Draft>) = std::mem::take(pending).into_iter().unzip();
    for (slot, stored) in slots
        .into_iter()
        .zip(records::write_creates(conn, wctx, drafts)?)
    {
        responses[slot] = Some(written_response("201 Created", &stored));
        written.push(("create".into(), stored));
    }
    Ok(())
}

/// Checks a POST entry and prepares its create, with `urn:uuid:` references resolved and the
/// id assigned up front.
fn prepare_post(
    conn: &mut diesel::PgConnection,
    ctx: &Ctx,
    wctx: &WriteContext,
    entry: &InEntry,
    resolved: &HashMap<String, String>,
    known: &mut records::Known,
) -> Result<Draft, ApiError> {
    let kind = kind_of(entry.url.split(['/', '?']).next().unwrap_or_default())?;
    let mut resource = entry.resource.clone().unwrap_or_default();
    bundle::resolve_references(&mut resource, resolved);
    let parsed = parse_value(kind, resource).map_err(ApiError::invalid)?;
    records::prepare_create(conn, ctx, parsed, assigned_id(entry, resolved), wctx, known)
}

/// The id `assign_ids` gave a POST entry, or a new one.
fn assigned_id(entry: &InEntry, resolved: &HashMap<String, String>) -> Uuid {
    entry
        .full_url
        .as_ref()
        .and_then(|u| resolved.get(u))
        .and_then(|r| r.split('/').nth(1))
        .and_then(|i| Uuid::parse_str(i).ok())
        .unwrap_or_else(Uuid::new_v4)
}

/// Each entry on its own; failures are reported per entry.
async fn run_batch(state: &AppState, ctx: &Ctx, entries: Vec<InEntry>) -> Vec<EntryResponse> {
    let mut responses = Vec::with_capacity(entries.len());
    for entry in entries {
        let c = ctx.clone();
        let outcome = state
            .store
            .transaction_with(move |conn| -> Result<_, ApiError> {
                let wctx = WriteContext {
                    author: c.principal.username.clone(),
                    request_id: c.request_id.clone(),
                    at: chrono::Utc::now(),
                };
                run_entry(
                    conn,
                    &c,
                    &wctx,
                    &entry,
                    &HashMap::new(),
                    &mut records::Known::default(),
                )
                .map_err(|e| within_entry(e, &entry))
            })
            .await;
        match outcome {
            Ok((response, written)) => {
                if let Err(e) = audit_written(state, ctx, &written).await {
                    responses.push(error_entry(e, &ctx.request_id));
                } else {
                    responses.push(response);
                }
            }
            Err(e) => responses.push(error_entry(e, &ctx.request_id)),
        }
    }
    responses
}

fn error_entry(e: ApiError, request_id: &str) -> EntryResponse {
    let status = format!(
        "{} {}",
        e.status.as_u16(),
        e.status.canonical_reason().unwrap_or("")
    );
    let issues = if e.issues.is_empty() {
        vec![Issue::new(IssueCode::Exception, e.title.clone())]
    } else {
        e.issues.clone()
    };
    EntryResponse {
        status,
        location: None,
        etag: None,
        last_modified: None,
        resource: None,
        outcome: Some(kiorex_fhir::outcome::operation_outcome(&issues, request_id)),
    }
}

fn within_entry(mut e: ApiError, entry: &InEntry) -> ApiError {
    let prefix = format!("{}.resource", entry.path());
    if e.issues.is_empty() {
        let title = e.title.clone();
        e.issues.push(Issue::new(IssueCode::Processing, title));
    }
    let issues = std::mem::take(&mut e.issues);
    e.issues = issues.into_iter().map(|i| i.within(&prefix)).collect();
    e
}

async fn audit_written(
    state: &AppState,
    ctx: &Ctx,
    written: &[(String, Stored)],
) -> Result<(), ApiError> {
    let events = written
        .iter()
        .map(|(action, s)| crate::audit::Event {
            action: if action == "create" {
                "create"
            } else if action == "update" {
                "update"
            } else if action == "delete" {
                "delete"
            } else {
                "read"
            },
            outcome: "success",
            resource_type: ResourceKind::from_name(&s.resource_type)
                .map_or("Unknown", ResourceKind::name),
            resource_id: s.id.to_string(),
            patient_id: records::patient_of_stored(s),
            facility_id: Some(s.facility_id),
            detail: "bundle".into(),
        })
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await
}

/// Gives every POST entry with a `urn:uuid:` fullUrl its server id up front, so that entries can
/// refer to each other.
fn assign_ids(entries: &[InEntry]) -> HashMap<String, String> {
    entries
        .iter()
        .filter(|e| e.method == Method::Post)
        .filter_map(|e| {
            let full_url = e.full_url.as_ref().filter(|u| u.starts_with("urn:uuid:"))?;
            let kind = ResourceKind::from_name(e.url.split(['/', '?']).next()?)?;
            Some((
                full_url.clone(),
                format!("{}/{}", kind.name(), Uuid::new_v4()),
            ))
        })
        .collect()
}

type EntryResult = Result<(EntryResponse, Vec<(String, Stored)>), ApiError>;

fn run_entry(
    conn: &mut diesel::PgConnection,
    ctx: &Ctx,
    wctx: &WriteContext,
    entry: &InEntry,
    resolved: &HashMap<String, String>,
    known: &mut records::Known,
) -> EntryResult {
    let (path, query) = entry.url.split_once('?').unwrap_or((&entry.url, ""));
    let mut parts = path.trim_matches('/').split('/');
    let kind = kind_of(parts.next().unwrap_or_default())?;
    let id = parts.next().map(|id| id_of(kind, id)).transpose()?;
    let resource = entry.resource.clone().map(|mut r| {
        bundle::resolve_references(&mut r, resolved);
        r
    });
    match (entry.method, id) {
        (Method::Post, None) => {
            let parsed =
                parse_value(kind, resource.unwrap_or_default()).map_err(ApiError::invalid)?;
            let condition = entry
                .if_none_exist
                .as_deref()
                .map(|q| condition_of(kind, q))
                .transpose()?;
            let created = records::create_in(
                conn,
                ctx,
                parsed,
                condition,
                wctx,
                assigned_id(entry, resolved),
                known,
            )?;
            let status = if created.created {
                "201 Created"
            } else {
                "200 OK"
            };
            Ok((
                written_response(status, &created.stored),
                vec![("create".into(), created.stored)],
            ))
        }
        (Method::Put, Some(id)) => {
            let parsed =
                parse_value(kind, resource.unwrap_or_default()).map_err(ApiError::invalid)?;
            let version = entry.if_match.as_deref().map(parse_if_match).transpose()?;
            let stored = records::update_in(conn, ctx, id, parsed, version, wctx, known)?;
            Ok((
                written_response("200 OK", &stored),
                vec![("update".into(), stored)],
            ))
        }
        (Method::Delete, Some(id)) => {
            let version = entry.if_match.as_deref().map(parse_if_match).transpose()?;
            let deleted = records::delete_in(conn, ctx, kind, id, version, wctx)?;
            if let Some(stored) = &deleted {
                known.wrote(stored);
            }
            let response = EntryResponse {
                status: "204 No Content".into(),
                location: None,
                etag: None,
                last_modified: None,
                resource: None,
                outcome: None,
            };
            Ok((
                response,
                deleted.into_iter().map(|s| ("delete".into(), s)).collect(),
            ))
        }
        (Method::Get, Some(id)) if query.is_empty() => {
            let stored = resources::read(conn, kind.name(), id)
                .map_err(|_| ApiError::not_found(format!("{}/{id}", kind.name())))?;
            if stored.deleted
                || !ctx.principal.may(
                    Permission::new(kind.guarded_by(), Action::Read),
                    stored.facility_id,
                )
            {
                return Err(ApiError::not_found(format!("{}/{id}", kind.name())));
            }
            let mut response = written_response("200 OK", &stored);
            response.resource = Some(stored.content.clone());
            response.location = None;
            Ok((response, vec![("read".into(), stored)]))
        }
        _ => Err(ApiError::not_supported(format!(
            "{:?} {} is not supported inside a Bundle",
            entry.method, entry.url
        ))),
    }
}

fn written_response(status: &str, stored: &Stored) -> EntryResponse {
    EntryResponse {
        status: status.into(),
        location: Some(format!(
            "{}/{}/_history/{}",
            stored.resource_type, stored.id, stored.version_id
        )),
        etag: Some(etag(stored.version_id)),
        last_modified: Some(
            stored
                .last_updated
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        ),
        resource: None,
        outcome: None,
    }
}
