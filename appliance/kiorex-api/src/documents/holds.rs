//! Uploads held unscanned while clamd is unreachable (`scan.hold_when_unavailable = true`).
//!
//! The file is sealed like any document and kept in the quarantine bucket (never served), with a
//! `document_hold` row written after the object is stored; the caller gets `202 Accepted` and a
//! status to poll. Nothing appears in the patient's record. [`rescan`] (`kiorex objects rescan`,
//! or a worker) scans held files once clamd is back: clean ones are stored in the documents
//! bucket and their rows written then, exactly as a scanned upload; infected ones stay
//! quarantined, audited, with an alert. A file is never accepted unscanned.

use super::{Upload, document_event, objects, quarantine_metadata, store_clean, store_down};
use crate::error::ApiError;
use crate::records::Ctx;
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use kiorex_domain::permission::Action;
use kiorex_objects::{DataKey, Objects, ScanError, Shelf, Spooled, Verdict, WrappedKey};
use kiorex_store::audit::{AuditRecord, append};
use kiorex_store::document_holds::{self as holds, Decision, HeldUpload, Hold, HoldStatus};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// How long a rescan may work on one held file before another rescan may take it over.
const LEASE_MINUTES: i64 = 15;

/// A held upload as its uploader sees it: a status, never an error (nothing went wrong yet).
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    /// The hold's id, for `GET /api/v1/document-holds/{id}`.
    pub id: Uuid,
    /// `pending-scan`, `accepted` (in the record: see `document_id`), `infected` (refused, kept
    /// in quarantine) or `rejected` (see `message`).
    pub status: String,
    pub message: String,
    pub patient_id: Uuid,
    /// The document, once accepted (or the one this upload adds a version to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    pub file_name: String,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// Where to ask for the status again.
    pub status_url: String,
}

fn status_url(id: Uuid) -> String {
    format!("/api/v1/document-holds/{id}")
}

pub fn view(hold: &Hold) -> HoldView {
    let (status, message) = match hold.status {
        HoldStatus::Pending => (
            "pending-scan",
            "The virus scanner is unavailable. The file was received and is held, sealed, until it has been scanned; it is not part of the patient's record yet.".to_owned(),
        ),
        HoldStatus::Accepted => (
            "accepted",
            "The file was scanned, found clean and added to the patient's record.".to_owned(),
        ),
        HoldStatus::Infected => (
            "infected",
            "The file contains malware; it was not added to the record and the security team was alerted.".to_owned(),
        ),
        HoldStatus::Rejected => (
            "rejected",
            format!("The file was not added to the record: {}", hold.detail),
        ),
    };
    HoldView {
        id: hold.id,
        status: status.to_owned(),
        message,
        patient_id: hold.patient_id,
        document_id: hold.accepted_document.or(hold.document_id),
        version: hold.accepted_version,
        file_name: hold.upload.file_name.clone(),
        received_at: hold.created_at,
        decided_at: hold.decided_at,
        status_url: status_url(hold.id),
    }
}

/// Keeps an upload that could not be scanned: sealed into the quarantine bucket, then its row.
pub async fn hold(
    state: &AppState,
    ctx: &Ctx,
    upload: Upload,
    spooled: &Spooled,
) -> Result<HoldView, ApiError> {
    let objects = objects(state)?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let key_name =
        kiorex_objects::held_key(upload.facility_id, &now.format("%Y-%m-%d").to_string(), id);
    let data_key = DataKey::generate();
    let wrapped = objects.keyring.wrap(&data_key, &key_name);
    let metadata = quarantine_metadata(&wrapped, "unscanned", upload.patient_id, &ctx.request_id);
    objects
        .put_sealed(Shelf::Quarantine, &key_name, spooled, &data_key, &metadata)
        .await
        .map_err(|e| store_down(e.to_string()))?;
    let row = Hold::pending(
        id,
        upload.facility_id,
        upload.patient_id,
        upload.replacing,
        key_name.clone(),
        wrapped.key_id,
        wrapped.bytes,
        HeldUpload {
            category: upload.described.category,
            title: upload.described.title,
            file_name: upload.described.file_name,
            content_type: spooled.doc_type.mime().to_owned(),
            size_bytes: spooled.size as i64,
            sha256: spooled.sha256.clone(),
            author: upload.author,
            request_id: upload.request_id,
        },
        now,
    );
    let stored = row.clone();
    if let Err(e) = state
        .store
        .run(move |conn| holds::insert(conn, &stored))
        .await
    {
        let _ = objects.store.delete(Shelf::Quarantine, &key_name).await;
        return Err(e.into());
    }
    let event = document_event(
        "document.hold",
        "pending",
        row.facility_id,
        row.patient_id,
        None,
        format!("held unscanned (scanner unavailable); hold {id}"),
    );
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, vec![event])
        .await?;
    Ok(view(&row))
}

/// A hold's status, for someone who may see the patient's documents (audited as a read).
pub async fn status(state: &AppState, ctx: &Ctx, id: Uuid) -> Result<HoldView, ApiError> {
    let not_found = || ApiError::not_found(format!("document hold {id}"));
    let hold = state
        .store
        .run(move |conn| holds::read(conn, id))
        .await
        .map_err(|_| not_found())?;
    let patient =
        super::patient_for(state, ctx, hold.patient_id, Action::Read, "document.hold").await?;
    let event = document_event(
        "document.hold",
        "success",
        patient.facility_id,
        patient.id,
        None,
        format!("status of hold {id}"),
    );
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, vec![event])
        .await?;
    Ok(view(&hold))
}

/// What a rescan did with one held file.
#[derive(Debug, Serialize)]
pub struct Rescanned {
    pub hold: Uuid,
    /// `accepted`, `infected` or `rejected`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<Uuid>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A held file the rescan could not decide this time (object store down, unknown key): it
/// stays held, and is tried again by a rescan after its lease runs out.
#[derive(Debug, Serialize)]
pub struct NotDecided {
    pub hold: Uuid,
    pub error: String,
}

/// What a rescan did in all.
#[derive(Debug, Serialize)]
pub struct Rescan {
    pub decided: Vec<Rescanned>,
    pub failed: Vec<NotDecided>,
    /// Holds still waiting (the scanner went away again, they failed, or arrived meanwhile).
    pub pending: i64,
    /// The scanner did not answer: the remaining holds were left for the next rescan.
    pub scanner_unavailable: bool,
}

/// Scans every pending held upload, oldest first, until none is left or clamd stops answering.
/// `actor` names who runs it in the audit log (`cli:alice`, `worker`); `progress` sees each
/// decision as it is made. Safe to run concurrently and to rerun after a crash: each hold is
/// leased while it is worked on, and decided once. One file that cannot be handled does not
/// hold up the others.
pub async fn rescan(
    store: &kiorex_store::Store,
    objects: &Objects,
    actor: &str,
    mut progress: impl FnMut(&Rescanned),
) -> Result<Rescan, String> {
    let mut decided = Vec::new();
    let mut failed = Vec::new();
    // Nothing is taken or downloaded while the scanner is still away.
    let mut scanner_unavailable = objects.clamd.ping().await.is_err();
    while !scanner_unavailable {
        let now = Utc::now();
        let lease = now + Duration::minutes(LEASE_MINUTES);
        let claimed = store
            .run(move |conn| holds::claim_next(conn, now, lease))
            .await
            .map_err(|e| format!("reading held uploads: {e}"))?;
        let Some(hold) = claimed else { break };
        match rescan_one(store, objects, actor, &hold).await {
            Ok(Some(done)) => {
                progress(&done);
                decided.push(done);
            }
            Ok(None) => {
                scanner_unavailable = true;
                release(store, hold.id).await;
            }
            // Kept leased, so that this run moves on to the next file.
            Err(error) => {
                tracing::warn!(hold = %hold.id, %error, "a held upload could not be rescanned");
                failed.push(NotDecided {
                    hold: hold.id,
                    error,
                });
            }
        }
    }
    let pending = store
        .run(holds::pending_count)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Rescan {
        decided,
        failed,
        pending,
        scanner_unavailable,
    })
}

async fn release(store: &kiorex_store::Store, id: Uuid) {
    let _ = store.run(move |conn| holds::release(conn, id)).await;
}

/// Scans one claimed hold and records the outcome; `None` when clamd is unreachable.
async fn rescan_one(
    store: &kiorex_store::Store,
    objects: &Objects,
    actor: &str,
    hold: &Hold,
) -> Result<Option<Rescanned>, String> {
    let wrapped = WrappedKey {
        key_id: hold.key_id.clone(),
        bytes: hold.wrapped_key.clone(),
    };
    let data_key = objects
        .keyring
        .unwrap(&wrapped, &hold.quarantine_key)
        .map_err(|e| format!("the held file's key: {e}"))?;
    let size = hold.upload.size_bytes as u64;
    let spooled = match objects
        .unseal_to_spool(Shelf::Quarantine, &hold.quarantine_key, &data_key, size)
        .await
    {
        Ok(spooled) => spooled,
        Err(kiorex_objects::UnsealError::Store(kiorex_objects::ObjectError::NotFound)) => {
            let why = "the held file is no longer in the quarantine bucket (expired by its lifecycle rule?)";
            return decide(store, actor, hold, HoldStatus::Rejected, why).await;
        }
        // Past a size limit lowered since, or otherwise not acceptable any more.
        Err(kiorex_objects::UnsealError::Spool(refused)) => {
            let why = refused.to_string();
            return decide(store, actor, hold, HoldStatus::Rejected, &why).await;
        }
        Err(e) => return Err(format!("reading the held file: {e}")),
    };
    if spooled.sha256 != hold.upload.sha256 {
        return decide(
            store,
            actor,
            hold,
            HoldStatus::Rejected,
            "the held file does not match the upload's checksum",
        )
        .await;
    }
    match objects.clamd.scan_file(&spooled.path).await {
        Err(ScanError::Unavailable(_)) => Ok(None),
        Err(ScanError::Failed(why)) => {
            let why = format!("the virus scanner could not scan it: {why}");
            decide(store, actor, hold, HoldStatus::Rejected, &why).await
        }
        Ok(Verdict::Infected(signature)) => {
            tracing::error!(target: "kiorex::alert", request_id = %hold.upload.request_id, signature,
                quarantine_key = %hold.quarantine_key, "held upload found infected on rescan; kept in quarantine");
            let detail = format!("signature {signature}");
            decide(store, actor, hold, HoldStatus::Infected, &detail).await
        }
        Ok(Verdict::Clean) => accept_clean(store, objects, actor, hold, &spooled).await,
    }
}

/// Stores a held file found clean, writing its rows, the hold's decision and the audit entry in
/// one transaction; then removes the held copy.
async fn accept_clean(
    store: &kiorex_store::Store,
    objects: &Objects,
    actor: &str,
    hold: &Hold,
    spooled: &Spooled,
) -> Result<Option<Rescanned>, String> {
    let upload = Upload {
        facility_id: hold.facility_id,
        patient_id: hold.patient_id,
        replacing: hold.document_id,
        described: super::Described {
            category: hold.upload.category.clone(),
            title: hold.upload.title.clone(),
            file_name: hold.upload.file_name.clone(),
        },
        author: hold.upload.author.clone(),
        request_id: hold.upload.request_id.clone(),
    };
    let (id, actor_name) = (hold.id, actor.to_owned());
    let (author, request_id) = (hold.upload.author.clone(), hold.upload.request_id.clone());
    let written = store_clean(store, objects, &upload, spooled, move |conn, doc, version| {
        let decision = Decision {
            status: HoldStatus::Accepted,
            detail: "",
            document: Some((doc.id, version.version)),
            at: Utc::now(),
        };
        if !holds::decide(conn, id, &decision)? {
            return Err(kiorex_store::StoreError::Conflict(format!(
                "hold {id} was decided by another rescan"
            )));
        }
        let action = if version.version == 1 {
            "document.upload"
        } else {
            "document.version"
        };
        let detail = format!(
            "version {} uploaded by {author}, held unscanned (hold {id}) and accepted on rescan",
            version.version
        );
        append(
            conn,
            &[record(&actor_name, &request_id, action, "success", doc.patient_id, doc.facility_id, Some(doc.id), detail)],
        )
    })
    .await;
    match written {
        Ok((doc, _)) => {
            // The held copy has served its purpose; if this fails, the lifecycle rule expires it.
            let _ = objects
                .store
                .delete(Shelf::Quarantine, &hold.quarantine_key)
                .await;
            Ok(Some(Rescanned {
                hold: hold.id,
                outcome: "accepted",
                document: Some(doc.id),
                detail: String::new(),
            }))
        }
        Err(e) if e.status == http::StatusCode::GONE || e.status == http::StatusCode::NOT_FOUND => {
            let why = "the document it would add a version to was deleted meanwhile";
            decide(store, actor, hold, HoldStatus::Rejected, why).await
        }
        Err(e) => Err(e.internal.clone().unwrap_or_else(|| e.title.clone())),
    }
}

/// Records a hold's outcome other than acceptance, with its audit entry.
async fn decide(
    store: &kiorex_store::Store,
    actor: &str,
    hold: &Hold,
    status: HoldStatus,
    detail: &str,
) -> Result<Option<Rescanned>, String> {
    let (id, detail_owned) = (hold.id, detail.to_owned());
    let (action, outcome) = match status {
        HoldStatus::Infected => ("document.quarantine", "refused"),
        _ => ("document.hold", "rejected"),
    };
    let entry = record(
        actor,
        &hold.upload.request_id,
        action,
        outcome,
        hold.patient_id,
        hold.facility_id,
        None,
        format!(
            "hold {id}: {detail}; quarantine object {}",
            hold.quarantine_key
        ),
    );
    store
        .transaction(move |conn| {
            let decision = Decision {
                status,
                detail: &detail_owned,
                document: None,
                at: Utc::now(),
            };
            if holds::decide(conn, id, &decision)? {
                append(conn, &[entry])?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(Rescanned {
        hold: hold.id,
        outcome: status.as_str(),
        document: None,
        detail: detail.to_owned(),
    }))
}

#[allow(clippy::too_many_arguments)]
fn record(
    actor: &str,
    request_id: &str,
    action: &str,
    outcome: &str,
    patient: Uuid,
    facility: Uuid,
    document: Option<Uuid>,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        recorded_at: Utc::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        outcome: outcome.to_owned(),
        resource_type: if document.is_some() {
            "DocumentReference".into()
        } else {
            "Patient".into()
        },
        resource_id: document.unwrap_or(patient).to_string(),
        patient_id: patient.to_string(),
        facility_id: facility.to_string(),
        request_id: request_id.to_owned(),
        detail,
    }
}
