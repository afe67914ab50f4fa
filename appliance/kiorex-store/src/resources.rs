//! Versioned clinical resources. A write locks the current row, appends a version, replaces the
//! search index entries and queues an outbox event, all in the caller's transaction.

use crate::schema::{
    outbox, resource, resource_version, search_date, search_reference, search_string, search_token,
};
use crate::{StoreError, StoreResult};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use kiorex_domain::index::SearchIndex;
use serde_json::{Value, json};
use uuid::Uuid;

/// Who writes, when, and under which request: recorded with every version.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub author: String,
    pub request_id: String,
    pub at: DateTime<Utc>,
}

/// A resource as it will be written: its content and what it is found by.
#[derive(Debug, Clone)]
pub struct Draft {
    pub resource_type: &'static str,
    pub id: Uuid,
    pub facility_id: Uuid,
    pub content: Value,
    pub index: SearchIndex,
}

/// A stored version of a resource.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = resource)]
pub struct Stored {
    pub id: Uuid,
    pub resource_type: String,
    pub facility_id: Uuid,
    pub version_id: i32,
    pub last_updated: DateTime<Utc>,
    pub deleted: bool,
    pub content: Value,
}

/// One entry of a history: the version and how it came to be.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub resource_type: String,
    pub facility_id: Uuid,
    pub version_id: i32,
    pub last_updated: DateTime<Utc>,
    pub deleted: bool,
    pub content: Value,
    pub change: String,
    pub author: String,
}

/// What a change is, in the version history and on the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Update,
    Delete,
    Merge,
    Unmerge,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Delete => "delete",
            Change::Merge => "merge",
            Change::Unmerge => "unmerge",
        }
    }
}

/// Writes the first version of a new resource.
pub fn create(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    mut draft: Draft,
) -> StoreResult<Stored> {
    stamp(&mut draft.content, draft.id, 1, ctx.at);
    diesel::insert_into(resource::table)
        .values((
            resource::id.eq(draft.id),
            resource::resource_type.eq(draft.resource_type),
            resource::facility_id.eq(draft.facility_id),
            resource::version_id.eq(1),
            resource::last_updated.eq(ctx.at),
            resource::deleted.eq(false),
            resource::content.eq(&draft.content),
        ))
        .execute(conn)?;
    finish_write(conn, ctx, draft, 1, Change::Create)
}

/// Writes a new version of an existing resource. With `expected_version`, refuses to overwrite a
/// version the writer has not seen (optimistic locking, FHIR `If-Match`).
pub fn update(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    mut draft: Draft,
    expected_version: Option<i32>,
    change: Change,
) -> StoreResult<Stored> {
    let current = lock_current(conn, draft.resource_type, draft.id)?;
    if let Some(expected) = expected_version
        && expected != current.version_id
    {
        return Err(StoreError::VersionConflict {
            current: current.version_id,
        });
    }
    let version = current.version_id + 1;
    stamp(&mut draft.content, draft.id, version, ctx.at);
    diesel::update(resource::table.find(draft.id))
        .set((
            resource::facility_id.eq(draft.facility_id),
            resource::version_id.eq(version),
            resource::last_updated.eq(ctx.at),
            resource::deleted.eq(false),
            resource::content.eq(&draft.content),
        ))
        .execute(conn)?;
    finish_write(conn, ctx, draft, version, change)
}

/// Marks a resource deleted with a new version. Deleting a deleted resource changes nothing and
/// returns `None` (FHIR delete is idempotent).
pub fn delete(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    resource_type: &'static str,
    id: Uuid,
    expected_version: Option<i32>,
) -> StoreResult<Option<Stored>> {
    let current = lock_current(conn, resource_type, id)?;
    if current.deleted {
        return Ok(None);
    }
    if let Some(expected) = expected_version
        && expected != current.version_id
    {
        return Err(StoreError::VersionConflict {
            current: current.version_id,
        });
    }
    let version = current.version_id + 1;
    let mut content = current.content.clone();
    stamp(&mut content, id, version, ctx.at);
    diesel::update(resource::table.find(id))
        .set((
            resource::version_id.eq(version),
            resource::last_updated.eq(ctx.at),
            resource::deleted.eq(true),
            resource::content.eq(&content),
        ))
        .execute(conn)?;
    clear_index(conn, id)?;
    let stored = Stored {
        version_id: version,
        last_updated: ctx.at,
        deleted: true,
        content,
        ..current
    };
    append_version(conn, ctx, &stored, Change::Delete)?;
    enqueue(conn, &stored, Change::Delete)?;
    Ok(Some(stored))
}

/// The current version of a resource, deleted or not.
pub fn read(conn: &mut PgConnection, resource_type: &str, id: Uuid) -> StoreResult<Stored> {
    resource::table
        .find(id)
        .filter(resource::resource_type.eq(resource_type))
        .select(Stored::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// Current versions of several resources, in no particular order; missing ones are left out.
pub fn read_many(conn: &mut PgConnection, ids: &[Uuid]) -> StoreResult<Vec<Stored>> {
    Ok(resource::table
        .filter(resource::id.eq_any(ids))
        .select(Stored::as_select())
        .load(conn)?)
}

/// One version of a resource.
pub fn vread(
    conn: &mut PgConnection,
    resource_type: &str,
    id: Uuid,
    version: i32,
) -> StoreResult<Stored> {
    resource_version::table
        .find((id, version))
        .filter(resource_version::resource_type.eq(resource_type))
        .select((
            resource_version::id,
            resource_version::resource_type,
            resource_version::facility_id,
            resource_version::version_id,
            resource_version::last_updated,
            resource_version::deleted,
            resource_version::content,
        ))
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// Which history to read.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub resource_type: Option<&'static str>,
    pub id: Option<Uuid>,
    pub facilities: Vec<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub count: i64,
    pub offset: i64,
}

/// Versions newest first.
pub fn history(conn: &mut PgConnection, q: &HistoryQuery) -> StoreResult<Vec<HistoryEntry>> {
    let mut query = resource_version::table
        .filter(resource_version::facility_id.eq_any(&q.facilities))
        .select((
            resource_version::id,
            resource_version::resource_type,
            resource_version::facility_id,
            resource_version::version_id,
            resource_version::last_updated,
            resource_version::deleted,
            resource_version::content,
            resource_version::change,
            resource_version::author,
        ))
        .order((
            resource_version::last_updated.desc(),
            resource_version::version_id.desc(),
        ))
        .limit(q.count)
        .offset(q.offset)
        .into_boxed();
    if let Some(t) = q.resource_type {
        query = query.filter(resource_version::resource_type.eq(t));
    }
    if let Some(id) = q.id {
        query = query.filter(resource_version::id.eq(id));
    }
    if let Some(since) = q.since {
        query = query.filter(resource_version::last_updated.ge(since));
    }
    Ok(query.load(conn)?)
}

/// Locks the current row for the rest of the transaction, so that concurrent writers of the same
/// resource queue up and the second one sees the first one's version.
fn lock_current(conn: &mut PgConnection, resource_type: &str, id: Uuid) -> StoreResult<Stored> {
    resource::table
        .find(id)
        .filter(resource::resource_type.eq(resource_type))
        .select(Stored::as_select())
        .for_update()
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// Sets the server-owned parts of the content: id and meta.versionId/lastUpdated.
fn stamp(content: &mut Value, id: Uuid, version: i32, at: DateTime<Utc>) {
    let Some(object) = content.as_object_mut() else {
        return;
    };
    object.insert("id".into(), Value::String(id.to_string()));
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
    }
}

fn finish_write(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    draft: Draft,
    version: i32,
    change: Change,
) -> StoreResult<Stored> {
    if change != Change::Create {
        clear_index(conn, draft.id)?;
    }
    write_index(conn, draft.id, draft.resource_type, &draft.index)?;
    let stored = Stored {
        id: draft.id,
        resource_type: draft.resource_type.to_owned(),
        facility_id: draft.facility_id,
        version_id: version,
        last_updated: ctx.at,
        deleted: false,
        content: draft.content,
    };
    append_version(conn, ctx, &stored, change)?;
    enqueue(conn, &stored, change)?;
    Ok(stored)
}

fn append_version(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    stored: &Stored,
    change: Change,
) -> StoreResult<()> {
    diesel::insert_into(resource_version::table)
        .values((
            resource_version::id.eq(stored.id),
            resource_version::version_id.eq(stored.version_id),
            resource_version::resource_type.eq(&stored.resource_type),
            resource_version::facility_id.eq(stored.facility_id),
            resource_version::last_updated.eq(stored.last_updated),
            resource_version::deleted.eq(stored.deleted),
            resource_version::content.eq(&stored.content),
            resource_version::change.eq(change.as_str()),
            resource_version::author.eq(&ctx.author),
            resource_version::request_id.eq(&ctx.request_id),
        ))
        .execute(conn)?;
    Ok(())
}

fn enqueue(conn: &mut PgConnection, stored: &Stored, change: Change) -> StoreResult<()> {
    diesel::insert_into(outbox::table)
        .values((
            outbox::facility_id.eq(stored.facility_id),
            outbox::topic.eq(format!("resource.{}", change.as_str())),
            outbox::resource_type.eq(&stored.resource_type),
            outbox::resource_id.eq(stored.id),
            outbox::version_id.eq(stored.version_id),
        ))
        .execute(conn)?;
    Ok(())
}

fn clear_index(conn: &mut PgConnection, id: Uuid) -> StoreResult<()> {
    diesel::delete(search_string::table.filter(search_string::resource_id.eq(id))).execute(conn)?;
    diesel::delete(search_token::table.filter(search_token::resource_id.eq(id))).execute(conn)?;
    diesel::delete(search_date::table.filter(search_date::resource_id.eq(id))).execute(conn)?;
    diesel::delete(search_reference::table.filter(search_reference::resource_id.eq(id)))
        .execute(conn)?;
    Ok(())
}

fn write_index(
    conn: &mut PgConnection,
    id: Uuid,
    resource_type: &str,
    index: &SearchIndex,
) -> StoreResult<()> {
    if !index.strings.is_empty() {
        let rows: Vec<_> = index
            .strings
            .iter()
            .map(|s| {
                (
                    search_string::resource_id.eq(id),
                    search_string::resource_type.eq(resource_type),
                    search_string::param.eq(s.param),
                    search_string::value.eq(&s.value),
                )
            })
            .collect();
        diesel::insert_into(search_string::table)
            .values(rows)
            .execute(conn)?;
    }
    if !index.tokens.is_empty() {
        let rows: Vec<_> = index
            .tokens
            .iter()
            .map(|t| {
                (
                    search_token::resource_id.eq(id),
                    search_token::resource_type.eq(resource_type),
                    search_token::param.eq(t.param),
                    search_token::system.eq(&t.system),
                    search_token::code.eq(&t.code),
                )
            })
            .collect();
        diesel::insert_into(search_token::table)
            .values(rows)
            .execute(conn)?;
    }
    if !index.dates.is_empty() {
        let rows: Vec<_> = index
            .dates
            .iter()
            .map(|d| {
                (
                    search_date::resource_id.eq(id),
                    search_date::resource_type.eq(resource_type),
                    search_date::param.eq(d.param),
                    search_date::low.eq(d.low),
                    search_date::high.eq(d.high),
                )
            })
            .collect();
        diesel::insert_into(search_date::table)
            .values(rows)
            .execute(conn)?;
    }
    if !index.references.is_empty() {
        let rows: Vec<_> = index
            .references
            .iter()
            .map(|r| {
                (
                    search_reference::resource_id.eq(id),
                    search_reference::resource_type.eq(resource_type),
                    search_reference::param.eq(r.param),
                    search_reference::target_type.eq(&r.target_type),
                    search_reference::target_id.eq(r.target_id),
                )
            })
            .collect();
        diesel::insert_into(search_reference::table)
            .values(rows)
            .execute(conn)?;
    }
    Ok(())
}

/// Ids of current, non-deleted resources that reference `target` (used by merge and $everything).
pub fn referencing(conn: &mut PgConnection, target: Uuid) -> StoreResult<Vec<Uuid>> {
    let mut ids: Vec<Uuid> = search_reference::table
        .filter(search_reference::target_id.eq(target))
        .select(search_reference::resource_id)
        .load(conn)?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}
