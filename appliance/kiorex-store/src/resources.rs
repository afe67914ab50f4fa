//! Versioned clinical resources. A write locks the current row, appends a version, replaces the
//! search index entries and queues an outbox event, all in the caller's transaction.

use crate::schema::{
    chart_result, outbox, resource, resource_version, search_date, search_reference, search_string,
    search_token,
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

/// The index entries of one record, written in the same transaction as the record.
#[derive(Debug, Clone)]
pub struct RecordIndex<'a> {
    pub id: Uuid,
    pub resource_type: &'a str,
    pub facility_id: Uuid,
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
pub fn create(conn: &mut PgConnection, ctx: &WriteContext, draft: Draft) -> StoreResult<Stored> {
    let mut created = create_many(conn, ctx, vec![draft])?;
    created
        .pop()
        .ok_or_else(|| StoreError::Conflict("nothing was created".into()))
}

/// Writes the first versions of several new resources with one statement per table: what a
/// Bundle of twenty observations costs is then close to what one costs.
pub fn create_many(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    drafts: Vec<Draft>,
) -> StoreResult<Vec<Stored>> {
    let mut stored = Vec::with_capacity(drafts.len());
    let mut indexes = Vec::with_capacity(drafts.len());
    for mut draft in drafts {
        stamp(&mut draft.content, draft.id, 1, ctx.at);
        indexes.push(RecordIndex {
            id: draft.id,
            resource_type: draft.resource_type,
            facility_id: draft.facility_id,
            index: draft.index,
        });
        stored.push(Stored {
            id: draft.id,
            resource_type: draft.resource_type.to_owned(),
            facility_id: draft.facility_id,
            version_id: 1,
            last_updated: ctx.at,
            deleted: false,
            content: draft.content,
        });
    }
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|s| {
                (
                    resource::id.eq(s.id),
                    resource::resource_type.eq(&s.resource_type),
                    resource::facility_id.eq(s.facility_id),
                    resource::version_id.eq(1),
                    resource::last_updated.eq(s.last_updated),
                    resource::deleted.eq(false),
                    resource::content.eq(&s.content),
                )
            })
            .collect();
        diesel::insert_into(resource::table)
            .values(rows)
            .execute(conn)?;
    }
    write_index(conn, &indexes)?;
    append_versions(conn, ctx, &stored, Change::Create)?;
    enqueue(conn, &stored, Change::Create)?;
    Ok(stored)
}

/// Rows per multi-row INSERT: PostgreSQL takes at most 65,535 bound values per statement.
const ROWS_PER_STATEMENT: usize = 2_000;

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
    append_versions(conn, ctx, std::slice::from_ref(&stored), Change::Delete)?;
    enqueue(conn, std::slice::from_ref(&stored), Change::Delete)?;
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
    clear_index(conn, draft.id)?;
    write_index(
        conn,
        &[RecordIndex {
            id: draft.id,
            resource_type: draft.resource_type,
            facility_id: draft.facility_id,
            index: draft.index,
        }],
    )?;
    let stored = Stored {
        id: draft.id,
        resource_type: draft.resource_type.to_owned(),
        facility_id: draft.facility_id,
        version_id: version,
        last_updated: ctx.at,
        deleted: false,
        content: draft.content,
    };
    append_versions(conn, ctx, std::slice::from_ref(&stored), change)?;
    enqueue(conn, std::slice::from_ref(&stored), change)?;
    Ok(stored)
}

fn append_versions(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    stored: &[Stored],
    change: Change,
) -> StoreResult<()> {
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|s| {
                (
                    resource_version::id.eq(s.id),
                    resource_version::version_id.eq(s.version_id),
                    resource_version::resource_type.eq(&s.resource_type),
                    resource_version::facility_id.eq(s.facility_id),
                    resource_version::last_updated.eq(s.last_updated),
                    resource_version::deleted.eq(s.deleted),
                    resource_version::content.eq(&s.content),
                    resource_version::change.eq(change.as_str()),
                    resource_version::author.eq(&ctx.author),
                    resource_version::request_id.eq(&ctx.request_id),
                )
            })
            .collect();
        diesel::insert_into(resource_version::table)
            .values(rows)
            .execute(conn)?;
    }
    Ok(())
}

fn enqueue(conn: &mut PgConnection, stored: &[Stored], change: Change) -> StoreResult<()> {
    let topic = format!("resource.{}", change.as_str());
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|s| {
                (
                    outbox::facility_id.eq(s.facility_id),
                    outbox::topic.eq(&topic),
                    outbox::resource_type.eq(&s.resource_type),
                    outbox::resource_id.eq(s.id),
                    outbox::version_id.eq(s.version_id),
                )
            })
            .collect();
        diesel::insert_into(outbox::table)
            .values(rows)
            .execute(conn)?;
    }
    Ok(())
}

/// Replaces the index entries of existing resources (`kiorex reindex`), in the caller's
/// transaction: searches see the old entries until it commits, then the new ones.
pub fn replace_index(conn: &mut PgConnection, indexes: &[RecordIndex<'_>]) -> StoreResult<()> {
    for record in indexes {
        clear_index(conn, record.id)?;
    }
    write_index(conn, indexes)
}

fn clear_index(conn: &mut PgConnection, id: Uuid) -> StoreResult<()> {
    diesel::delete(search_string::table.filter(search_string::resource_id.eq(id))).execute(conn)?;
    diesel::delete(search_token::table.filter(search_token::resource_id.eq(id))).execute(conn)?;
    diesel::delete(search_date::table.filter(search_date::resource_id.eq(id))).execute(conn)?;
    diesel::delete(search_reference::table.filter(search_reference::resource_id.eq(id)))
        .execute(conn)?;
    diesel::delete(chart_result::table.find(id)).execute(conn)?;
    Ok(())
}

/// One row per entry of one kind (`entries`) of every record's index.
fn index_rows<'a, E: 'a, R>(
    indexes: &'a [RecordIndex<'a>],
    entries: impl Fn(&'a SearchIndex) -> &'a [E],
    row: impl Fn(&'a RecordIndex<'a>, &'a E) -> R,
) -> Vec<R> {
    let row = &row;
    indexes
        .iter()
        .flat_map(|record| entries(&record.index).iter().map(move |e| row(record, e)))
        .collect()
}

/// Inserts the index entries of several resources, one statement per index table.
fn write_index(conn: &mut PgConnection, indexes: &[RecordIndex<'_>]) -> StoreResult<()> {
    let strings = index_rows(
        indexes,
        |ix| &ix.strings,
        |r, e| {
            (
                search_string::resource_id.eq(r.id),
                search_string::resource_type.eq(r.resource_type),
                search_string::param.eq(e.param),
                search_string::value.eq(&e.value),
            )
        },
    );
    for chunk in strings.chunks(ROWS_PER_STATEMENT) {
        diesel::insert_into(search_string::table)
            .values(chunk)
            .execute(conn)?;
    }
    let tokens = index_rows(
        indexes,
        |ix| &ix.tokens,
        |r, e| {
            (
                search_token::resource_id.eq(r.id),
                search_token::resource_type.eq(r.resource_type),
                search_token::param.eq(e.param),
                search_token::system.eq(&e.system),
                search_token::code.eq(&e.code),
            )
        },
    );
    for chunk in tokens.chunks(ROWS_PER_STATEMENT) {
        diesel::insert_into(search_token::table)
            .values(chunk)
            .execute(conn)?;
    }
    let dates = index_rows(
        indexes,
        |ix| &ix.dates,
        |r, e| {
            (
                search_date::resource_id.eq(r.id),
                search_date::resource_type.eq(r.resource_type),
                search_date::param.eq(e.param),
                search_date::low.eq(e.low),
                search_date::high.eq(e.high),
            )
        },
    );
    for chunk in dates.chunks(ROWS_PER_STATEMENT) {
        diesel::insert_into(search_date::table)
            .values(chunk)
            .execute(conn)?;
    }
    let references = index_rows(
        indexes,
        |ix| &ix.references,
        |r, e| {
            (
                search_reference::resource_id.eq(r.id),
                search_reference::resource_type.eq(r.resource_type),
                search_reference::param.eq(e.param),
                search_reference::target_type.eq(&e.target_type),
                search_reference::target_id.eq(e.target_id),
            )
        },
    );
    for chunk in references.chunks(ROWS_PER_STATEMENT) {
        diesel::insert_into(search_reference::table)
            .values(chunk)
            .execute(conn)?;
    }
    write_chart_results(conn, indexes)
}

fn write_chart_results(conn: &mut PgConnection, indexes: &[RecordIndex<'_>]) -> StoreResult<()> {
    let rows: Vec<_> = indexes
        .iter()
        .filter_map(|record| {
            let c = record.index.chart_result.as_ref()?;
            Some((
                chart_result::resource_id.eq(record.id),
                chart_result::patient_id.eq(c.patient_id),
                chart_result::facility_id.eq(record.facility_id),
                chart_result::code.eq(&c.code),
                chart_result::display.eq(&c.display),
                chart_result::value.eq(c.value),
                chart_result::unit.eq(&c.unit),
                chart_result::effective_at.eq(c.effective),
                chart_result::flag.eq(&c.flag),
                chart_result::vital.eq(c.vital),
            ))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        diesel::insert_into(chart_result::table)
            .values(chunk)
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
