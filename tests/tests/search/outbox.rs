//! The outbox's delivery guarantees, with a recording delivery in place of the search engine:
//! at least once, in order per resource, nothing lost when a worker dies mid-batch, and a failed
//! event retried after a back-off while it holds back the later events of its resource.

use kiorex_testkit::TestApp;
use kiorex_worker::outbox::Event;
use kiorex_worker::{Delivery, Worker, WorkerSettings};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Records every delivery (event id, resource, version); can hang on a batch, as a worker whose
/// process is about to be killed does, and can fail chosen events once.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(i64, Uuid, i32)>>>,
    hang_on_batch: Option<usize>,
    batches: Arc<Mutex<usize>>,
    fail_once: Arc<Mutex<Vec<Uuid>>>,
}

impl Delivery for Recorder {
    async fn deliver(&self, events: &[Event]) -> Vec<Result<(), String>> {
        let batch = {
            let mut batches = self.batches.lock().unwrap();
            *batches += 1;
            *batches
        };
        let mut results = Vec::new();
        for e in events {
            self.seen
                .lock()
                .unwrap()
                .push((e.id, e.resource_id, e.version_id));
            let mut fail = self.fail_once.lock().unwrap();
            if let Some(i) = fail.iter().position(|r| *r == e.resource_id) {
                fail.remove(i);
                results.push(Err("the index refused it".to_owned()));
            } else {
                results.push(Ok(()));
            }
        }
        if self.hang_on_batch == Some(batch) {
            std::future::pending::<()>().await;
        }
        results
    }
}

/// `versions` events for each of `resources`, interleaved as concurrent writers make them, in
/// an outbox where the app's own seed events are already delivered.
fn events(app: &TestApp, resources: &[Uuid], versions: i32) {
    app.sql("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL");
    for v in 1..=versions {
        for r in resources {
            app.sql(&format!(
                "INSERT INTO outbox (facility_id, topic, resource_type, resource_id, version_id) \
                 VALUES ('{}', 'resource.update', 'Patient', '{r}', {v})",
                app.facility_a
            ));
        }
    }
}

fn undelivered(app: &TestApp) -> i64 {
    app.count("SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL")
}

/// Each resource's versions in delivery order never go back.
fn assert_in_order(seen: &[(i64, Uuid, i32)], resources: &[Uuid]) {
    for r in resources {
        let versions: Vec<i32> = seen
            .iter()
            .filter(|(_, id, _)| id == r)
            .map(|(_, _, v)| *v)
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "{r}: delivered out of order: {versions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_order_is_kept() {
    let app = TestApp::spawn().await;
    let resources: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    events(&app, &resources, 4);
    let settings = WorkerSettings {
        batch_size: 4,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(1),
        max_backoff: Duration::from_secs(1),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dying = Recorder {
        seen: seen.clone(),
        hang_on_batch: Some(2),
        ..Recorder::default()
    };
    let first = Worker::new(app.store.clone(), dying.clone(), settings.clone());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { first.run(stopped).await });
    let hung = kiorex_testkit::wait_until(Duration::from_secs(10), || {
        *dying.batches.lock().unwrap() == 2
    });
    assert!(hung, "the first worker reached its second batch");
    task.abort();
    let claimed_by_the_dead = seen.lock().unwrap().len();
    assert_eq!(claimed_by_the_dead, 8, "two batches of four");
    assert_eq!(
        undelivered(&app),
        24 - 4,
        "only the first batch was settled"
    );

    let second = Worker::new(
        app.store.clone(),
        Recorder {
            seen: seen.clone(),
            ..Recorder::default()
        },
        settings,
    );
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { second.run(stopped).await });
    let drained = kiorex_testkit::wait_until(Duration::from_secs(20), || undelivered(&app) == 0);
    task.abort();
    assert!(drained, "the second worker delivered everything");
    let seen = seen.lock().unwrap().clone();
    let ids: std::collections::BTreeSet<i64> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), 24, "every event delivered at least once");
    assert!(
        seen.len() > 24,
        "the dead worker's batch was delivered again"
    );
    assert_in_order(&seen, &resources);
    let attempts = app.count("SELECT count(*) AS n FROM outbox WHERE attempts = 2");
    assert_eq!(attempts, 4, "the dead worker's batch was attempted twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_is_retried_after_a_back_off_and_holds_back_its_resource() {
    let app = TestApp::spawn().await;
    let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
    events(&app, &[x, y], 2);
    let recorder = Recorder {
        fail_once: Arc::new(Mutex::new(vec![x])),
        ..Recorder::default()
    };
    let worker = Worker::new(
        app.store.clone(),
        recorder.clone(),
        WorkerSettings {
            batch_size: 10,
            max_backoff: Duration::from_millis(300),
            ..WorkerSettings::default()
        },
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        2,
        "x1 and y1; x2 waits behind x1"
    );
    assert_eq!(worker.metrics.failed(), 1);
    let failed = app.count(&format!(
        "SELECT count(*) AS n FROM outbox WHERE resource_id = '{x}' AND version_id = 1 \
         AND attempts = 1 AND last_error = 'the index refused it' AND next_attempt_at > now()"
    ));
    assert_eq!(
        failed, 1,
        "attempt counted, reason kept, next attempt later"
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        1,
        "y2 only: x1 waits out its back-off and x2 waits behind it"
    );
    // The back-off runs out (moved to now instead of waiting for the clock).
    app.sql(&format!(
        "UPDATE outbox SET next_attempt_at = now() WHERE resource_id = '{x}' AND delivered_at IS NULL"
    ));
    assert_eq!(worker.run_once().await.unwrap(), 1, "x1 again");
    assert_eq!(worker.run_once().await.unwrap(), 1, "then x2");
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(undelivered(&app), 0);
    let seen: Vec<(Uuid, i32)> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r, v)| (*r, *v))
        .collect();
    assert_eq!(seen, vec![(x, 1), (y, 1), (y, 2), (x, 1), (x, 2)]);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM outbox WHERE last_error IS NOT NULL"),
        0,
        "a delivered event keeps no error"
    );
}
