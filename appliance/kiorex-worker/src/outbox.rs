//! Claiming and settling outbox events.
//!
//! A claim takes the oldest claimable events (`FOR UPDATE SKIP LOCKED`, in id order, so several
//! workers never take the same one) and leases them: `attempts` goes up and `next_attempt_at`
//! moves past the lease, in the claim's own short transaction. A worker that dies mid-batch
//! therefore loses nothing: its events become claimable again when the lease runs out.
//!
//! Only a resource's oldest undelivered event is claimable. Writers of one resource queue on its
//! row lock before they insert their event, so ids of one resource follow commit order, and an
//! event that failed (waiting out its back-off) or is leased holds back the later ones: delivery
//! is in order per resource, and nothing is ever dropped.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Double, Int4, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use kiorex_store::StoreResult;
use std::time::Duration;
use uuid::Uuid;

/// One claimed event.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Event {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = SqlUuid)]
    pub facility_id: Uuid,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Text)]
    pub resource_type: String,
    #[diesel(sql_type = SqlUuid)]
    pub resource_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub version_id: i32,
    /// Including this one.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
}

const CLAIM: &str = "\
    UPDATE outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2) \
    WHERE id IN ( \
      SELECT o.id FROM outbox o \
      WHERE o.delivered_at IS NULL AND o.next_attempt_at <= now() \
        AND NOT EXISTS (SELECT 1 FROM outbox e \
                        WHERE e.resource_id = o.resource_id AND e.delivered_at IS NULL AND e.id < o.id) \
      ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED) \
    RETURNING id, facility_id, topic, resource_type, resource_id, version_id, attempts";

/// Claims up to `batch` events for `lease`, oldest first.
pub fn claim(conn: &mut PgConnection, batch: usize, lease: Duration) -> StoreResult<Vec<Event>> {
    let mut events: Vec<Event> = diesel::sql_query(CLAIM)
        .bind::<Int8, _>(batch as i64)
        .bind::<Double, _>(lease.as_secs_f64())
        .load(conn)?;
    // RETURNING gives no order.
    events.sort_by_key(|e| e.id);
    Ok(events)
}

/// Marks events delivered.
pub fn delivered(conn: &mut PgConnection, ids: &[i64]) -> StoreResult<()> {
    diesel::sql_query(
        "UPDATE outbox SET delivered_at = now(), last_error = NULL WHERE id = ANY($1)",
    )
    .bind::<Array<Int8>, _>(ids.to_vec())
    .execute(conn)?;
    Ok(())
}

/// Puts a failed event back after its back-off, with the reason.
pub fn failed(
    conn: &mut PgConnection,
    id: i64,
    retry_in: Duration,
    error: &str,
) -> StoreResult<()> {
    diesel::sql_query(
        "UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3 \
         WHERE id = $1 AND delivered_at IS NULL",
    )
    .bind::<Int8, _>(id)
    .bind::<Double, _>(retry_in.as_secs_f64())
    .bind::<Text, _>(error)
    .execute(conn)?;
    Ok(())
}

/// How long to wait before the next attempt: doubling from one second, at most `max`.
pub fn backoff(attempts: i32, max: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 20) as u32;
    Duration::from_secs(1u64 << exponent).min(max)
}

/// The undelivered events: how many, and how old the oldest is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    pub pending: i64,
    pub oldest_seconds: f64,
    /// Events whose last attempt failed and that wait for their next one.
    pub failing: i64,
}

#[derive(QueryableByName)]
struct LagRow {
    #[diesel(sql_type = Int8)]
    pending: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest: Option<DateTime<Utc>>,
    #[diesel(sql_type = Int8)]
    failing: i64,
}

pub fn lag(conn: &mut PgConnection) -> StoreResult<Lag> {
    let row: LagRow = diesel::sql_query(
        "SELECT count(*) AS pending, min(created_at) AS oldest, \
                count(*) FILTER (WHERE last_error IS NOT NULL) AS failing \
         FROM outbox WHERE delivered_at IS NULL",
    )
    .get_result(conn)?;
    let oldest_seconds = row
        .oldest
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok(Lag {
        pending: row.pending,
        oldest_seconds,
        failing: row.failing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_ceiling() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(2, max), Duration::from_secs(2));
        assert_eq!(backoff(5, max), Duration::from_secs(16));
        assert_eq!(backoff(12, max), max);
        assert_eq!(backoff(i32::MAX, max), max, "never overflows");
        assert_eq!(backoff(0, max), Duration::from_secs(1));
    }
}
