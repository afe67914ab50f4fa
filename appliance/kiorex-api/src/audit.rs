//! The audit sink: handlers hand it entries and wait until they are stored. One writer task
//! groups the entries of concurrent requests into one chained insert, so auditing every read
//! costs one transaction per batch rather than one per request.

use crate::error::ApiError;
use chrono::Utc;
use kiorex_domain::permission::Principal;
use kiorex_store::Store;
use kiorex_store::audit::{AuditRecord, append};
use tokio::sync::{mpsc, oneshot};

type Ack = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<(Vec<AuditRecord>, Ack)>,
}

/// What happened to which record, as the audit log says it.
pub struct Event<'a> {
    pub action: &'a str,
    pub outcome: &'a str,
    pub resource_type: &'a str,
    pub resource_id: String,
    pub patient_id: Option<uuid::Uuid>,
    pub facility_id: Option<uuid::Uuid>,
    pub detail: String,
}

impl AuditSink {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> AuditSink {
        let (sender, receiver) = mpsc::channel(4_096);
        tokio::spawn(write_batches(store, receiver));
        AuditSink { sender }
    }

    /// Records events and waits until they are durable. Patient data is not released to the
    /// caller unless its access was recorded.
    pub async fn record(
        &self,
        actor: &str,
        request_id: &str,
        events: Vec<Event<'_>>,
    ) -> Result<(), ApiError> {
        if events.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let records: Vec<AuditRecord> = events
            .into_iter()
            .map(|e| AuditRecord {
                recorded_at: now,
                actor: actor.to_owned(),
                action: e.action.to_owned(),
                outcome: e.outcome.to_owned(),
                resource_type: e.resource_type.to_owned(),
                resource_id: e.resource_id,
                patient_id: e.patient_id.map(|p| p.to_string()).unwrap_or_default(),
                facility_id: e.facility_id.map(|f| f.to_string()).unwrap_or_default(),
                request_id: request_id.to_owned(),
                detail: e.detail,
            })
            .collect();
        for r in &records {
            // Mirrors the trail to the journal under systemd: opaque ids only, never patient data.
            tracing::info!(target: "kiorex::audit", actor = %r.actor, action = %r.action, outcome = %r.outcome,
                resource_type = %r.resource_type, resource_id = %r.resource_id, request_id = %r.request_id, "audit");
        }
        let (ack, done) = oneshot::channel();
        self.sender
            .send((records, ack))
            .await
            .map_err(|_| ApiError::unavailable("audit writer stopped"))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::unavailable(format!("audit write failed: {e}"))),
            Err(_) => Err(ApiError::unavailable("audit writer stopped")),
        }
    }

    /// Shorthand for a principal's events.
    pub async fn by(
        &self,
        principal: &Principal,
        request_id: &str,
        events: Vec<Event<'_>>,
    ) -> Result<(), ApiError> {
        self.record(&principal.username, request_id, events).await
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<(Vec<AuditRecord>, Ack)>) {
    const MAX_BATCH: usize = 2_000;
    while let Some(first) = receiver.recv().await {
        let mut records = first.0;
        let mut acks = vec![first.1];
        while records.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok((more, ack)) => {
                    records.extend(more);
                    acks.push(ack);
                }
                Err(_) => break,
            }
        }
        let result = store
            .run(move |conn| append(conn, &records))
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "audit batch could not be written");
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}
