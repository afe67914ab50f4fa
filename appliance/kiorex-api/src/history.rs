//! Version history through the records service: FHIR `_history` and the portal's "who changed
//! what, when" page read it the same way. Permission at the record's facility, clinical versions
//! only of patients open to the caller (care relationship or break-the-glass), and every
//! version released is audited as a `history` read.

use crate::error::ApiError;
use crate::records::{self, Ctx};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use kiorex_domain::permission::{Action, Permission, Resource};
use kiorex_fhir::ResourceKind;
use kiorex_store::resources::{self, HistoryEntry, HistoryQuery};
use uuid::Uuid;

/// Which versions to read: all of one record, of one type, or of everything.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub kind: Option<ResourceKind>,
    pub id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub count: i64,
    pub offset: i64,
}

/// The versions (newest first) and whether there are more after them.
pub async fn versions(
    state: &AppState,
    ctx: &Ctx,
    wanted: Wanted,
) -> Result<(Vec<HistoryEntry>, bool), ApiError> {
    let scope = Permission::new(
        wanted
            .kind
            .map_or(Resource::Patient, ResourceKind::guarded_by),
        Action::Read,
    );
    let mut facilities = ctx.principal.facilities_with(scope);
    if let (Some(k), Some(id)) = (wanted.kind, wanted.id) {
        // The history of a deleted record stays readable, so read it whatever its state.
        let current = state
            .store
            .run(move |conn| resources::read(conn, k.name(), id))
            .await?;
        if !ctx.principal.may(scope, current.facility_id) {
            return Err(ApiError::forbidden(
                "you may not read records at this facility",
            ));
        }
        facilities = vec![current.facility_id];
    }
    let query = HistoryQuery {
        resource_type: wanted.kind.map(ResourceKind::name),
        id: wanted.id,
        facilities,
        since: wanted.since,
        count: wanted.count + 1,
        offset: wanted.offset,
    };
    let mut entries = state
        .store
        .run(move |conn| resources::history(conn, &query))
        .await?;
    let has_more = entries.len() as i64 > wanted.count;
    entries.truncate(wanted.count as usize);
    // Clinical versions of patients outside the caller's care are left out, as in search.
    let clinical = |e: &HistoryEntry| {
        ResourceKind::from_name(&e.resource_type)
            .is_some_and(|k| kiorex_domain::identity::is_clinical(k.guarded_by()))
    };
    let guarded: Vec<(Uuid, Uuid)> = entries
        .iter()
        .filter(|e| clinical(e))
        .filter_map(|e| {
            records::patient_of(&e.resource_type, e.id, &e.content).map(|p| (p, e.facility_id))
        })
        .collect();
    if !guarded.is_empty() {
        let open = records::patients_open_to(state, ctx, guarded).await?;
        entries.retain(|e| {
            !clinical(e)
                || records::patient_of(&e.resource_type, e.id, &e.content)
                    .is_none_or(|p| open.contains(&p))
        });
    }
    let events = entries
        .iter()
        .map(|e| crate::audit::Event {
            action: "history",
            outcome: "success",
            resource_type: wanted.kind.map_or("Unknown", ResourceKind::name),
            resource_id: e.id.to_string(),
            patient_id: records::patient_of(&e.resource_type, e.id, &e.content),
            facility_id: Some(e.facility_id),
            detail: format!("version {}", e.version_id),
        })
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await?;
    Ok((entries, has_more))
}
