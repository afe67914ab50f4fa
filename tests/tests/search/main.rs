//! Search through the worker path, against real PostgreSQL, and against Meilisearch when the
//! test kit has one (`KIOREX_TEST_MEILISEARCH_URL` or `KIOREX_TEST_MEILISEARCH_BIN`; see
//! docs/ops/search.md). The shared suite ([`suite`]) is written once and run for each engine;
//! the outbox's delivery guarantees ([`outbox`]) and the worker and reindex processes
//! ([`process`]) do not depend on the engine.

mod outbox;
mod process;
mod rig;
mod suite;
