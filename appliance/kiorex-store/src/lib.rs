//! The Kiorex store: PostgreSQL through diesel and r2d2. Every write of a clinical resource
//! appends a version, updates the search index and queues an outbox event in one transaction.

pub mod accounts;
pub mod audit;
pub mod care;
pub mod chart;
pub mod directory;
pub mod document_holds;
pub mod document_purge;
pub mod documents;
pub mod drafts;
pub mod facilities;
pub mod identity_schema;
pub mod merge;
pub mod resources;
pub mod review;
pub mod schema;
pub mod search;
pub mod sessions;
pub mod system_health;
pub mod terminology;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

pub use diesel::Connection;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Everything the store can fail with. Callers map these to HTTP once, at the edge of the API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("gone: the resource was deleted")]
    Gone,
    #[error("version conflict: the resource is at version {current}")]
    VersionConflict { current: i32 },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("migration error: {0}")]
    Migration(String),
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The connection pool and the one way in: [`Store::run`].
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Opens a pool of `size` connections. Fails fast when PostgreSQL is not reachable.
    pub fn connect(url: &str, size: u32) -> StoreResult<Store> {
        let manager = ConnectionManager::<PgConnection>::new(url);
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(Some(size.min(4)))
            .connection_timeout(Duration::from_secs(5))
            // Check each connection as it is taken (one round trip): after a PostgreSQL restart
            // or failover, a dead pooled connection is replaced instead of failing a clinician's
            // request.
            .test_on_check_out(true)
            .build(manager)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Store { pool })
    }

    /// Runs blocking diesel work on the blocking thread pool, keeping the caller's tracing span.
    pub async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// Like [`Store::run`], inside one transaction.
    pub async fn transaction<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> StoreResult<T> + Send + 'static,
    {
        self.run(|conn| conn.transaction(work)).await
    }

    /// Runs `work` in one transaction that commits only when it returns `Ok`; any error, the
    /// caller's own included, rolls everything back.
    pub async fn transaction_with<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut pooled = pool.get().map_err(StoreError::from)?;
            let conn: &mut PgConnection = &mut pooled;
            conn.transaction(work)
        })
        .await
        .map_err(|e| E::from(StoreError::Unavailable(format!("store task failed: {e}"))))?
    }

    /// A connection for synchronous callers (the CLI).
    pub fn get(&self) -> StoreResult<Conn> {
        Ok(self.pool.get()?)
    }

    /// Whether the database answers a trivial query (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        self.run(|conn| {
            diesel::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), conn)?;
            Ok(())
        })
        .await
    }

    /// How many connections the pool holds now, how many of them are idle, and its ceiling
    /// (for the `kiorex_db_pool_*` metrics; the pool is exhausted when idle stays at 0).
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            open: state.connections,
            idle: state.idle_connections,
            max: self.pool.max_size(),
        }
    }
}

/// A snapshot of the connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// One connection without a pool, for command-line tools.
pub fn connect_once(url: &str) -> StoreResult<PgConnection> {
    Ok(PgConnection::establish(url)?)
}

/// Applies every pending migration; returns the names of those applied.
pub fn run_migrations(conn: &mut PgConnection) -> StoreResult<Vec<String>> {
    let applied: Vec<String> = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Migration(e.to_string()))?
        .iter()
        .map(ToString::to_string)
        .collect();
    // The bundled code lists travel with the schema (terminology.rs says why). Quietly: the
    // migrate command's output is read by scripts; the health page shows the loaded release.
    terminology::load_bundled(conn, chrono::Utc::now())?;
    Ok(applied)
}

/// The migrations this binary knows of that the database has not applied.
pub fn pending_migrations(conn: &mut PgConnection) -> StoreResult<Vec<String>> {
    let pending = conn
        .pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(pending.iter().map(|m| m.name().to_string()).collect())
}

impl From<diesel::result::ConnectionError> for StoreError {
    fn from(e: diesel::result::ConnectionError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
