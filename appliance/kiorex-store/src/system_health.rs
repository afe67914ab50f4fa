//! Figures for the system health page: migrations, the outbox queue, the audit log's tail.

use crate::StoreResult;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz};

/// Changes written but not yet delivered by a worker, and the oldest of them.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct OutboxBacklog {
    #[diesel(sql_type = BigInt)]
    pub undelivered: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest: Option<DateTime<Utc>>,
}

pub fn outbox_backlog(conn: &mut PgConnection) -> StoreResult<OutboxBacklog> {
    Ok(diesel::sql_query(
        "SELECT count(*) AS undelivered, min(created_at) AS oldest \
         FROM outbox WHERE delivered_at IS NULL",
    )
    .get_result(conn)?)
}
