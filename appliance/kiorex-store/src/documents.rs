//! Document metadata: one `document` row per document, one `document_version` row per upload.
//! The objects themselves are in the object store; callers write these rows only after the
//! object is stored and scanned, and queue an outbox event in the same transaction.

use crate::schema::outbox;
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

diesel::table! {
    document (id) {
        id -> Uuid,
        facility_id -> Uuid,
        patient_id -> Uuid,
        category -> Text,
        title -> Text,
        current_version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        purge_after -> Nullable<Timestamptz>,
        purged_at -> Nullable<Timestamptz>,
        purged_by -> Nullable<Text>,
    }
}

diesel::table! {
    document_version (document_id, version) {
        document_id -> Uuid,
        version -> Int4,
        object_key -> Text,
        key_id -> Text,
        wrapped_key -> Bytea,
        sha256 -> Text,
        size_bytes -> Int8,
        content_type -> Text,
        file_name -> Text,
        extracted_text -> Nullable<Text>,
        author -> Text,
        request_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(document_version -> document (document_id));
diesel::allow_tables_to_appear_in_same_query!(document, document_version);

#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = document)]
pub struct Document {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub patient_id: Uuid,
    pub category: String,
    pub title: String,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub purge_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = document_version)]
pub struct Version {
    pub document_id: Uuid,
    pub version: i32,
    pub object_key: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub sha256: String,
    pub size_bytes: i64,
    pub content_type: String,
    pub file_name: String,
    pub extracted_text: Option<String>,
    pub author: String,
    pub request_id: String,
    pub created_at: DateTime<Utc>,
}

/// A new document: its first version is `version` (with `version.version == 1`).
pub struct NewDocument {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub patient_id: Uuid,
    pub category: String,
    pub title: String,
}

/// Inserts a document and its first version, and queues `document.create`.
pub fn create(
    conn: &mut PgConnection,
    new: &NewDocument,
    first: &Version,
) -> StoreResult<Document> {
    let stored = diesel::insert_into(document::table)
        .values((
            document::id.eq(new.id),
            document::facility_id.eq(new.facility_id),
            document::patient_id.eq(new.patient_id),
            document::category.eq(&new.category),
            document::title.eq(&new.title),
            document::current_version.eq(1),
            document::created_at.eq(first.created_at),
            document::updated_at.eq(first.created_at),
        ))
        .returning(Document::as_returning())
        .get_result(conn)?;
    diesel::insert_into(document_version::table)
        .values(first)
        .execute(conn)?;
    enqueue(conn, &stored, "document.create")?;
    Ok(stored)
}

/// Locks a document for a change (new version, delete).
pub fn lock(conn: &mut PgConnection, id: Uuid) -> StoreResult<Document> {
    document::table
        .find(id)
        .for_update()
        .select(Document::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

pub fn read(conn: &mut PgConnection, id: Uuid) -> StoreResult<Document> {
    document::table
        .find(id)
        .select(Document::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// Appends a version to a locked, live document and makes it current.
pub fn add_version(
    conn: &mut PgConnection,
    doc: &Document,
    next: &Version,
) -> StoreResult<Document> {
    if doc.deleted_at.is_some() {
        return Err(StoreError::Gone);
    }
    diesel::insert_into(document_version::table)
        .values(next)
        .execute(conn)?;
    let stored = diesel::update(document::table.find(doc.id))
        .set((
            document::current_version.eq(next.version),
            document::updated_at.eq(next.created_at),
        ))
        .returning(Document::as_returning())
        .get_result(conn)?;
    enqueue(conn, &stored, "document.update")?;
    Ok(stored)
}

/// Marks a locked document deleted; its objects stay until `purge_after`.
pub fn soft_delete(
    conn: &mut PgConnection,
    doc: &Document,
    at: DateTime<Utc>,
    purge_after: DateTime<Utc>,
) -> StoreResult<Document> {
    if doc.deleted_at.is_some() {
        return Err(StoreError::Gone);
    }
    let stored = diesel::update(document::table.find(doc.id))
        .set((
            document::deleted_at.eq(Some(at)),
            document::purge_after.eq(Some(purge_after)),
            document::updated_at.eq(at),
        ))
        .returning(Document::as_returning())
        .get_result(conn)?;
    enqueue(conn, &stored, "document.delete")?;
    Ok(stored)
}

pub fn version(conn: &mut PgConnection, id: Uuid, version: i32) -> StoreResult<Version> {
    document_version::table
        .find((id, version))
        .select(Version::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

pub fn versions(conn: &mut PgConnection, id: Uuid) -> StoreResult<Vec<Version>> {
    Ok(document_version::table
        .filter(document_version::document_id.eq(id))
        .order(document_version::version.desc())
        .select(Version::as_select())
        .load(conn)?)
}

/// What a patient's document list is filtered by.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub category: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A patient's live documents with their current version, newest first.
pub fn list(
    conn: &mut PgConnection,
    patient: Uuid,
    filter: &Filter,
) -> StoreResult<Vec<(Document, Version)>> {
    let mut query = document::table
        .inner_join(
            document_version::table.on(document_version::document_id
                .eq(document::id)
                .and(document_version::version.eq(document::current_version))),
        )
        .filter(document::patient_id.eq(patient))
        .filter(document::deleted_at.is_null())
        .into_boxed();
    if let Some(category) = &filter.category {
        query = query.filter(document::category.eq(category.clone()));
    }
    if let Some(from) = filter.from {
        query = query.filter(document::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(document::created_at.lt(to));
    }
    Ok(query
        .order(document::created_at.desc())
        .limit(500)
        .select((Document::as_select(), Version::as_select()))
        .load(conn)?)
}

/// Every object key a row names (live or deleted): what the orphan sweep must keep.
pub fn all_object_keys(conn: &mut PgConnection) -> StoreResult<Vec<String>> {
    Ok(document_version::table
        .select(document_version::object_key)
        .load(conn)?)
}

pub(crate) fn enqueue(conn: &mut PgConnection, doc: &Document, topic: &str) -> StoreResult<()> {
    diesel::insert_into(outbox::table)
        .values((
            outbox::facility_id.eq(doc.facility_id),
            outbox::topic.eq(topic),
            outbox::resource_type.eq("DocumentReference"),
            outbox::resource_id.eq(doc.id),
            outbox::version_id.eq(doc.current_version),
        ))
        .execute(conn)?;
    Ok(())
}
