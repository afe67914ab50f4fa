//! The `worker` role: delivers the transactional outbox that every write fills in its own
//! transaction. Delivery is at least once and in order per resource ([`outbox`]); today it keeps
//! the search indexes ([`delivery`]); `kiorex reindex` rebuilds them from PostgreSQL
//! ([`reindex`]). The role serves `/health/*` and `/metrics` on its own port ([`server`]).

pub mod delivery;
pub mod metrics;
pub mod outbox;
pub mod reindex;
pub mod run;
pub mod server;

pub use delivery::{Delivery, SearchDelivery};
pub use run::{Worker, WorkerSettings};
