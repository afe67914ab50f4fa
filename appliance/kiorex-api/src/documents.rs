//! The document service: clinical documents (referrals, consent forms, letters, photos) stored in
//! the object store, encrypted with a data key per object, scanned before they are accepted, and
//! described by rows in PostgreSQL written only after the object is stored and scanned.
//!
//! Every read and write checks that the caller may act on the patient ([`may_act_on_patient`],
//! the one place that decision is made) and is audited before anything is released.

pub mod fhir;
pub mod holds;
pub mod purge;
pub mod range;
pub mod routes;

use crate::audit::Event;
use crate::error::ApiError;
use crate::records::Ctx;
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use kiorex_domain::permission::{Action, Permission, Resource};
use kiorex_fhir::{Issue, IssueCode};
use kiorex_objects::store::ByteStream;
use kiorex_objects::{
    DataKey, Objects, ScanError, Shelf, SpoolError, Spooled, Verdict, WrappedKey, object_key,
};
use kiorex_store::documents::{self as rows, Document, Filter, NewDocument, Version};
use kiorex_store::resources::{self, Stored};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Seconds a client should wait before retrying when the scanner or the object store is down.
pub const RETRY_AFTER_SECONDS: u32 = 30;

/// May this caller act (`Read` or `Write`) on this patient's documents, as far as roles go?
///
/// The caller's patient permission at the patient's facility; [`patient_for`] adds the
/// care-relationship rule (documents are clinical records).
pub fn may_act_on_patient(ctx: &Ctx, patient: &Stored, action: Action) -> bool {
    ctx.principal.may(
        Permission::new(Resource::Patient, action),
        patient.facility_id,
    )
}

/// A document as the API shows it: its current version's details and, when asked, its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    pub category: String,
    pub title: String,
    pub version: i32,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub file_name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: i32,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub file_name: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

fn view(doc: &Document, current: &Version) -> DocumentView {
    DocumentView {
        id: doc.id,
        patient_id: doc.patient_id,
        facility_id: doc.facility_id,
        category: doc.category.clone(),
        title: doc.title.clone(),
        version: current.version,
        content_type: current.content_type.clone(),
        size: current.size_bytes,
        sha256: current.sha256.clone(),
        file_name: current.file_name.clone(),
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        deleted_at: doc.deleted_at,
        versions: Vec::new(),
    }
}

fn version_view(v: &Version) -> VersionView {
    VersionView {
        version: v.version,
        content_type: v.content_type.clone(),
        size: v.size_bytes,
        sha256: v.sha256.clone(),
        file_name: v.file_name.clone(),
        author: v.author.clone(),
        created_at: v.created_at,
    }
}

/// What the uploader says about a document; the content speaks for itself.
#[derive(Debug, Clone)]
pub struct Described {
    pub category: String,
    pub title: String,
    pub file_name: String,
}

/// The configured document services, or 501 on an appliance without an object store.
pub fn objects(state: &AppState) -> Result<&Objects, ApiError> {
    state.documents.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "KX-DOC-501",
            "Documents are not configured on this appliance (see the [objects] configuration)",
        )
    })
}

pub(crate) fn document_event(
    action: &'static str,
    outcome: &'static str,
    facility: Uuid,
    patient: Uuid,
    document: Option<Uuid>,
    detail: String,
) -> Event<'static> {
    Event {
        action,
        outcome,
        resource_type: if document.is_some() {
            "DocumentReference"
        } else {
            "Patient"
        },
        resource_id: document.unwrap_or(patient).to_string(),
        patient_id: Some(patient),
        facility_id: Some(facility),
        detail,
    }
}

/// The patient, once the caller is known to be allowed to act on them; a refusal is audited.
pub async fn patient_for(
    state: &AppState,
    ctx: &Ctx,
    patient_id: Uuid,
    action: Action,
    audit_action: &'static str,
) -> Result<Stored, ApiError> {
    let patient = state
        .store
        .run(move |conn| resources::read(conn, "Patient", patient_id))
        .await
        .map_err(|_| ApiError::not_found(format!("Patient/{patient_id}")))?;
    if !may_act_on_patient(ctx, &patient, action) {
        let event = document_event(
            audit_action,
            "denied",
            patient.facility_id,
            patient.id,
            None,
            String::new(),
        );
        state
            .audit
            .by(&ctx.principal, &ctx.request_id, vec![event])
            .await?;
        return Err(ApiError::forbidden(
            "you may not see or change this patient's documents",
        ));
    }
    if let Err(refusal) = crate::records::ensure_clinical_access(state, ctx, &patient, action).await
    {
        let event = document_event(
            audit_action,
            "denied",
            patient.facility_id,
            patient.id,
            None,
            "no care relationship".into(),
        );
        state
            .audit
            .by(&ctx.principal, &ctx.request_id, vec![event])
            .await?;
        return Err(refusal);
    }
    if patient.deleted {
        return Err(ApiError::gone(format!("Patient/{patient_id}")));
    }
    Ok(patient)
}

/// The error for an upload refused while it was received.
pub fn spool_error(e: SpoolError) -> ApiError {
    match e {
        SpoolError::TooLarge { limit } => {
            let message = format!("the file is larger than this appliance accepts ({limit} bytes)");
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "KX-DOC-413", message.clone())
                .with_issues(vec![Issue::new(IssueCode::TooCostly, message)])
        }
        SpoolError::NotAllowed(not_allowed) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "KX-DOC-415",
            not_allowed.0.clone(),
        )
        .with_issues(vec![Issue::new(IssueCode::NotSupported, not_allowed.0)]),
        SpoolError::Body(detail) => ApiError::bad_request(
            "KX-DOC-400",
            format!("the upload could not be read: {detail}"),
        ),
        SpoolError::Disk(e) => ApiError::unavailable(format!("spool directory: {e}")),
    }
}

fn scanner_down(detail: String) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "KX-DOC-503",
        "The virus scanner is unavailable, so the document was not accepted; nothing was saved. Try again shortly",
    );
    e.internal = Some(detail);
    e
}

fn store_down(detail: String) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "KX-OBJ-503",
        "The document store is unavailable, so the document was not saved. Try again shortly",
    );
    e.internal = Some(detail);
    e
}

/// What became of an accepted upload: in the record now, or held unscanned for a rescan.
pub enum Accepted {
    Stored(DocumentView),
    Held(holds::HoldView),
}

/// Who uploads what for whom: everything [`store_clean`] needs besides the file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub facility_id: Uuid,
    pub patient_id: Uuid,
    /// The document this adds a version to; `None` for a new document.
    pub replacing: Option<Uuid>,
    pub described: Described,
    pub author: String,
    pub request_id: String,
}

/// Accepts a spooled upload for `patient`: scan, store encrypted, then write the row (a new
/// document, or a new version of `replacing`). Nothing is recorded unless every step succeeds.
/// With clamd unreachable and `hold_unscanned` on, the upload is held for a rescan instead.
pub async fn accept(
    state: &AppState,
    ctx: &Ctx,
    patient: &Stored,
    described: Described,
    spooled: Spooled,
    replacing: Option<Uuid>,
) -> Result<Accepted, ApiError> {
    let objects = objects(state)?;
    let upload = Upload {
        facility_id: patient.facility_id,
        patient_id: patient.id,
        replacing,
        described,
        author: ctx.principal.username.clone(),
        request_id: ctx.request_id.clone(),
    };
    match objects.clamd.scan_file(&spooled.path).await {
        Ok(Verdict::Clean) => {}
        Ok(Verdict::Infected(signature)) => {
            return Err(quarantine(state, ctx, patient, &spooled, &signature).await);
        }
        Err(ScanError::Unavailable(detail)) if objects.hold_unscanned => {
            tracing::warn!(request_id = %ctx.request_id, error = %detail,
                "clamd unreachable: the upload is held unscanned for a rescan");
            return holds::hold(state, ctx, upload, &spooled)
                .await
                .map(Accepted::Held);
        }
        Err(ScanError::Unavailable(detail)) => return Err(scanner_down(detail)),
        Err(ScanError::Failed(detail)) => {
            tracing::warn!(request_id = %ctx.request_id, error = %detail, "scan failed");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "KX-DOC-423",
                "The virus scanner could not scan this file, so it was not accepted",
            ));
        }
    }
    let (doc, version) =
        store_clean(&state.store, objects, &upload, &spooled, |_, _, _| Ok(())).await?;
    let action = if replacing.is_some() {
        "document.version"
    } else {
        "document.upload"
    };
    let event = document_event(
        action,
        "success",
        doc.facility_id,
        doc.patient_id,
        Some(doc.id),
        format!("version {}", version.version),
    );
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, vec![event])
        .await?;
    Ok(Accepted::Stored(view(&doc, &version)))
}

/// Stores a file that clamd found clean: sealed into the documents bucket, then the rows (and
/// whatever `also` writes in the same transaction: a rescan's audit entry and decision). When
/// the rows cannot be written, the object is removed again.
pub async fn store_clean<F>(
    store: &kiorex_store::Store,
    objects: &Objects,
    upload: &Upload,
    spooled: &Spooled,
    also: F,
) -> Result<(Document, Version), ApiError>
where
    F: FnOnce(&mut diesel::PgConnection, &Document, &Version) -> kiorex_store::StoreResult<()>
        + Send
        + 'static,
{
    let path = spooled.path.to_path_buf();
    let doc_type = spooled.doc_type;
    let size = spooled.size;
    let extracted = tokio::task::spawn_blocking(move || {
        kiorex_objects::extract::extract_text(&path, doc_type, size)
    })
    .await
    .unwrap_or(None);

    let replacing = upload.replacing;
    let document_id = replacing.unwrap_or_else(Uuid::new_v4);
    let key_name = object_key(
        upload.facility_id,
        upload.patient_id,
        &upload.described.category,
        Uuid::new_v4(),
    );
    let data_key = DataKey::generate();
    let wrapped = objects.keyring.wrap(&data_key, &key_name);
    objects
        .put_sealed(Shelf::Documents, &key_name, spooled, &data_key, &[])
        .await
        .map_err(|e| store_down(e.to_string()))?;

    let version = Version {
        document_id,
        version: 1,
        object_key: key_name.clone(),
        key_id: wrapped.key_id,
        wrapped_key: wrapped.bytes,
        sha256: spooled.sha256.clone(),
        size_bytes: spooled.size as i64,
        content_type: spooled.doc_type.mime().to_owned(),
        file_name: upload.described.file_name.clone(),
        extracted_text: extracted,
        author: upload.author.clone(),
        request_id: upload.request_id.clone(),
        created_at: Utc::now(),
    };
    let new = NewDocument {
        id: document_id,
        facility_id: upload.facility_id,
        patient_id: upload.patient_id,
        category: upload.described.category.clone(),
        title: upload.described.title.clone(),
    };
    let patient_id = upload.patient_id;
    let written = store
        .transaction(move |conn| {
            let (doc, version) = match replacing {
                None => (rows::create(conn, &new, &version)?, version),
                Some(id) => {
                    let doc = rows::lock(conn, id)?;
                    if doc.patient_id != patient_id {
                        return Err(kiorex_store::StoreError::NotFound);
                    }
                    let version = Version {
                        version: doc.current_version + 1,
                        ..version
                    };
                    (rows::add_version(conn, &doc, &version)?, version)
                }
            };
            also(conn, &doc, &version)?;
            Ok((doc, version))
        })
        .await;
    match written {
        Ok(written) => Ok(written),
        Err(e) => {
            // The row was not written: the object must not outlive it (gc would find it too).
            let _ = objects.store.delete(Shelf::Documents, &key_name).await;
            Err(e.into())
        }
    }
}

/// Keeps an infected upload in the quarantine bucket (encrypted, its wrapped key in the object's
/// metadata for the security team), raises the alert, audits, and returns the refusal.
async fn quarantine(
    state: &AppState,
    ctx: &Ctx,
    patient: &Stored,
    spooled: &Spooled,
    signature: &str,
) -> ApiError {
    let Ok(objects) = objects(state) else {
        return ApiError::internal("documents not configured");
    };
    let quarantine_id = Uuid::new_v4();
    let day = Utc::now().format("%Y-%m-%d").to_string();
    let key_name = kiorex_objects::quarantine_key(patient.facility_id, &day, quarantine_id);
    let data_key = DataKey::generate();
    let wrapped = objects.keyring.wrap(&data_key, &key_name);
    let metadata = quarantine_metadata(&wrapped, signature, patient.id, &ctx.request_id);
    let kept = objects
        .put_sealed(Shelf::Quarantine, &key_name, spooled, &data_key, &metadata)
        .await;
    // The alert: error level, opaque ids only (the audit entry ties it to the patient).
    tracing::error!(target: "kiorex::alert", request_id = %ctx.request_id, signature,
        quarantine_key = %key_name, kept = kept.is_ok(), "infected upload refused and quarantined");
    let event = document_event(
        "document.quarantine",
        "refused",
        patient.facility_id,
        patient.id,
        None,
        format!("signature {signature}; quarantine object {key_name}"),
    );
    if let Err(e) = state
        .audit
        .by(&ctx.principal, &ctx.request_id, vec![event])
        .await
    {
        return e;
    }
    let message = format!(
        "the file contains malware ({signature}); it was not added to the record and the security team was alerted"
    );
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "KX-DOC-422",
        message.clone(),
    )
    .with_issues(vec![Issue::new(IssueCode::Processing, message)])
}

pub(crate) fn quarantine_metadata(
    wrapped: &WrappedKey,
    signature: &str,
    patient: Uuid,
    request_id: &str,
) -> Vec<(&'static str, String)> {
    use base64::Engine;
    vec![
        ("kiorex-key-id", wrapped.key_id.clone()),
        (
            "kiorex-wrapped-key",
            base64::engine::general_purpose::STANDARD.encode(&wrapped.bytes),
        ),
        (
            "kiorex-signature",
            signature.chars().filter(char::is_ascii_graphic).collect(),
        ),
        ("kiorex-patient", patient.to_string()),
        (
            "kiorex-request",
            request_id.chars().filter(char::is_ascii_graphic).collect(),
        ),
    ]
}

/// A patient's live documents, newest first; the listing is audited as a read.
pub async fn list(
    state: &AppState,
    ctx: &Ctx,
    patient_id: Uuid,
    filter: Filter,
) -> Result<Vec<DocumentView>, ApiError> {
    let patient = patient_for(state, ctx, patient_id, Action::Read, "document.list").await?;
    let found = state
        .store
        .run(move |conn| rows::list(conn, patient_id, &filter))
        .await?;
    let event = document_event(
        "document.list",
        "success",
        patient.facility_id,
        patient.id,
        None,
        format!("{} documents", found.len()),
    );
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, vec![event])
        .await?;
    Ok(found.iter().map(|(d, v)| view(d, v)).collect())
}

/// The document row and its patient, after the access check (audited when denied).
async fn document_for(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    action: Action,
    audit_action: &'static str,
) -> Result<(Document, Stored), ApiError> {
    let doc = state
        .store
        .run(move |conn| rows::read(conn, id))
        .await
        .map_err(|_| ApiError::not_found(format!("DocumentReference/{id}")))?;
    let patient = patient_for(state, ctx, doc.patient_id, action, audit_action).await?;
    Ok((doc, patient))
}

/// A document with its whole version history.
pub async fn describe(state: &AppState, ctx: &Ctx, id: Uuid) -> Result<DocumentView, ApiError> {
    let (doc, _) = document_for(state, ctx, id, Action::Read, "document.read").await?;
    let versions = state
        .store
        .run(move |conn| rows::versions(conn, id))
        .await?;
    let current = versions
        .iter()
        .find(|v| v.version == doc.current_version)
        .ok_or_else(|| ApiError::internal(format!("document {id} has no current version")))?;
    audit_read(state, ctx, &doc, "document.read", "metadata").await?;
    let mut shown = view(&doc, current);
    shown.versions = versions.iter().map(version_view).collect();
    Ok(shown)
}

async fn audit_read(
    state: &AppState,
    ctx: &Ctx,
    doc: &Document,
    action: &'static str,
    detail: &str,
) -> Result<(), ApiError> {
    let event = document_event(
        action,
        "success",
        doc.facility_id,
        doc.patient_id,
        Some(doc.id),
        detail.to_owned(),
    );
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, vec![event])
        .await
}

/// What a download sends: the version's details and the (possibly partial) content.
pub struct Content {
    pub version: Version,
    pub range: range::Wanted,
    pub body: ByteStream,
}

/// Opens a version (the current one by default) for download, audited before any byte leaves.
pub async fn open(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    version: Option<i32>,
    range_header: Option<&str>,
) -> Result<Content, ApiError> {
    let objects = objects(state)?;
    let (doc, _) = document_for(state, ctx, id, Action::Read, "document.download").await?;
    if doc.deleted_at.is_some() {
        return Err(ApiError::gone(format!("DocumentReference/{id}")));
    }
    let number = version.unwrap_or(doc.current_version);
    let found = state
        .store
        .run(move |conn| rows::version(conn, id, number))
        .await
        .map_err(|_| ApiError::not_found(format!("version {number} of DocumentReference/{id}")))?;
    let wanted = range::wanted(range_header, found.size_bytes as u64);
    if wanted == range::Wanted::Unsatisfiable {
        let mut e = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "KX-DOC-416",
            format!(
                "the range is outside the document ({} bytes)",
                found.size_bytes
            ),
        );
        e.extra = Some(serde_json::json!({"size": found.size_bytes}));
        return Err(e);
    }
    let wrapped = WrappedKey {
        key_id: found.key_id.clone(),
        bytes: found.wrapped_key.clone(),
    };
    let data_key = objects
        .keyring
        .unwrap(&wrapped, &found.object_key)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    audit_read(
        state,
        ctx,
        &doc,
        "document.download",
        &format!("version {number}"),
    )
    .await?;
    let part = match wanted {
        range::Wanted::Part(first, last) => Some((first, last)),
        _ => None,
    };
    let body = objects
        .open(&found.object_key, &data_key, found.size_bytes as u64, part)
        .await
        .map_err(|e| match e {
            kiorex_objects::ObjectError::NotFound => {
                ApiError::internal(format!("object {} is missing", found.object_key))
            }
            other => store_down(other.to_string()),
        })?;
    Ok(Content {
        version: found,
        range: wanted,
        body,
    })
}

/// Soft-deletes a document; it stays restorable for the configured retention period.
pub async fn delete(state: &AppState, ctx: &Ctx, id: Uuid) -> Result<DocumentView, ApiError> {
    let retention = i64::from(objects(state)?.retention_days);
    let (doc, _) = document_for(state, ctx, id, Action::Write, "document.delete").await?;
    let now = Utc::now();
    let (deleted, current) = state
        .store
        .transaction(move |conn| {
            let locked = rows::lock(conn, doc.id)?;
            let deleted = rows::soft_delete(conn, &locked, now, now + Duration::days(retention))?;
            let current = rows::version(conn, deleted.id, deleted.current_version)?;
            Ok((deleted, current))
        })
        .await?;
    audit_read(state, ctx, &deleted, "document.delete", "soft delete").await?;
    Ok(view(&deleted, &current))
}

/// Loads a live document for a new version, checking write access to its patient.
pub async fn for_new_version(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
) -> Result<(Document, Stored), ApiError> {
    let (doc, patient) = document_for(state, ctx, id, Action::Write, "document.version").await?;
    if doc.deleted_at.is_some() {
        return Err(ApiError::gone(format!("DocumentReference/{id}")));
    }
    Ok((doc, patient))
}

/// Turns `from`/`to` dates (`2026-11-01` or RFC 3339) into a filter.
pub fn filter(
    category: Option<String>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Filter, ApiError> {
    let date = |name: &str, value: Option<&str>| -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(value) = value else { return Ok(None) };
        if let Ok(at) = DateTime::parse_from_rfc3339(value) {
            return Ok(Some(at.to_utc()));
        }
        chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|d| Some(d.and_time(chrono::NaiveTime::MIN).and_utc()))
            .map_err(|_| {
                ApiError::bad_request(
                    "KX-DOC-400",
                    format!("{name} must be a date such as 2026-11-01, got {value:?}"),
                )
            })
    };
    if let Some(c) = &category
        && !kiorex_objects::valid_category(c)
    {
        return Err(bad_category(c));
    }
    Ok(Filter {
        category,
        from: date("from", from)?,
        to: date("to", to)?,
    })
}

pub fn bad_category(category: &str) -> ApiError {
    ApiError::bad_request(
        "KX-DOC-400",
        format!(
            "category {category:?} must be lower-case letters, digits and '-', such as referral or discharge-letter"
        ),
    )
}

/// What an orphan sweep found and did.
#[derive(Debug, Serialize)]
pub struct Sweep {
    pub listed: usize,
    pub orphans: Vec<String>,
    pub removed: usize,
    pub dry_run: bool,
}

/// Finds objects in the documents bucket that no row names and that are older than `cutoff`,
/// and removes them unless `dry_run`. Rows are read after the listing, so an upload that
/// finishes in between is seen as known.
pub async fn sweep_orphans(
    store: &kiorex_store::Store,
    objects: &Objects,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<Sweep, String> {
    let listed = objects
        .store
        .list(Shelf::Documents, "")
        .await
        .map_err(|e| e.to_string())?;
    let known: std::collections::HashSet<String> = store
        .run(rows::all_object_keys)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let orphans = kiorex_objects::gc::orphans(&listed, &known, cutoff);
    let mut removed = 0;
    if !dry_run {
        for key in &orphans {
            objects
                .store
                .delete(Shelf::Documents, key)
                .await
                .map_err(|e| format!("removing {key}: {e}"))?;
            removed += 1;
        }
    }
    Ok(Sweep {
        listed: listed.len(),
        orphans,
        removed,
        dry_run,
    })
}
