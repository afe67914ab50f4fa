//! The delivery loop: claim a batch, deliver it, settle each event; when the outbox is empty,
//! wait a poll interval. Stops between batches when asked, so a batch in flight is settled.

use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::outbox;
use kiorex_store::{Store, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Events claimed at once.
    pub batch_size: usize,
    /// Wait when the outbox is empty; bounds how long a new patient takes to be indexed.
    pub poll_interval: Duration,
    /// How long a claim lasts: a worker that dies leaves its batch to others after this.
    pub lease: Duration,
    /// Longest wait between attempts of a failing event.
    pub max_backoff: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(200),
            lease: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
        }
    }
}

pub struct Worker<D: Delivery> {
    pub store: Store,
    pub delivery: D,
    pub settings: WorkerSettings,
    pub metrics: Arc<Metrics>,
}

impl<D: Delivery> Worker<D> {
    pub fn new(store: Store, delivery: D, settings: WorkerSettings) -> Worker<D> {
        Worker {
            store,
            delivery,
            settings,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Claims, delivers and settles one batch; returns how many events it claimed.
    pub async fn run_once(&self) -> StoreResult<usize> {
        let (batch, lease) = (self.settings.batch_size, self.settings.lease);
        let events = self
            .store
            .run(move |conn| outbox::claim(conn, batch, lease))
            .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let results = self.delivery.deliver(&events).await;
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for (event, result) in events.iter().zip(results) {
            match result {
                Ok(()) => done.push(event.id),
                Err(error) => {
                    let wait = outbox::backoff(event.attempts, self.settings.max_backoff);
                    tracing::warn!(event = event.id, resource_type = %event.resource_type,
                        attempts = event.attempts, retry_in_seconds = wait.as_secs(), %error,
                        "outbox delivery failed; it will be retried");
                    failures.push((event.id, wait, error));
                }
            }
        }
        self.metrics.batch(done.len(), failures.len());
        self.store
            .run(move |conn| {
                outbox::delivered(conn, &done)?;
                for (id, wait, error) in failures {
                    outbox::failed(conn, id, wait, &error)?;
                }
                Ok(())
            })
            .await?;
        Ok(events.len())
    }

    /// Delivers until `stop` turns true.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let idle = match self.run_once().await {
                Ok(claimed) => claimed == 0,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the outbox; retrying");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        tracing::info!("the worker stopped between batches");
    }
}
