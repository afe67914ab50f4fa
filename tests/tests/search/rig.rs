//! One test app with an engine and an in-process worker feeding it from the outbox (for the
//! PostgreSQL engine the worker has nothing to do: its index is written with each record).

use kiorex_search::Engine;
use kiorex_search::meili::{IndexKind, MeiliSearch, MeiliSettings};
use kiorex_testkit::{TestApp, User};
use kiorex_worker::{SearchDelivery, Worker, WorkerSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Rig {
    pub app: TestApp,
    pub engine: Engine,
    pub meili: Option<MeiliSettings>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Rig {
    pub async fn postgres() -> Rig {
        Rig::start(None).await
    }

    /// `Err` says why there is no Meilisearch to run against.
    pub async fn meilisearch() -> Result<Rig, String> {
        Ok(Rig::start(Some(kiorex_testkit::meilisearch()?)).await)
    }

    async fn start(meili: Option<MeiliSettings>) -> Rig {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let app = TestApp::spawn_searching(Default::default(), None, listener, meili.clone()).await;
        let engine = match &meili {
            Some(settings) => {
                let m = MeiliSearch::new(settings).expect("meilisearch client");
                for kind in IndexKind::ALL {
                    m.prepare(kind).await.expect("prepare the indexes");
                }
                Engine::Meilisearch(Arc::new(m))
            }
            None => Engine::postgres(app.store.clone()),
        };
        let worker = Worker::new(
            app.store.clone(),
            SearchDelivery::new(app.store.clone(), engine.clone()),
            WorkerSettings {
                poll_interval: Duration::from_millis(50),
                ..WorkerSettings::default()
            },
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move { worker.run(stopped).await });
        Rig {
            app,
            engine,
            meili,
            stop,
        }
    }

    /// Waits until the worker has delivered every outbox event (the indexes are current).
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .app
            .count("SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL")
            > 0
        {
            assert!(
                Instant::now() < deadline,
                "the worker did not drain the outbox"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn register(
        &self,
        given: &str,
        family: &str,
        birth_date: &str,
        phone: Option<&str>,
    ) -> (String, String) {
        let reply = self
            .app
            .post(
                User::Admin,
                "/api/v1/patients",
                &json!({"family": family, "given": [given], "gender": "female", "birth_date": birth_date, "phone": phone}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        (
            reply.body["patient"]["id"].as_str().unwrap().to_owned(),
            reply.body["mrn"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// `GET path?q=…` as `user`; the hits.
    pub async fn search(&self, user: User, path: &str, q: &str) -> Vec<Value> {
        let reply = self
            .app
            .send(
                self.app
                    .client()
                    .get(self.app.url(path))
                    .query(&[("q", q)])
                    .bearer_auth(self.app.token(user)),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path} {q}: {}", reply.body);
        reply.body.as_array().expect("a list").clone()
    }

    pub async fn patients(&self, user: User, q: &str) -> Vec<Value> {
        self.search(user, "/api/v1/search/patients", q).await
    }
}

/// Runs a suite function against each engine: PostgreSQL always; Meilisearch when the test kit
/// has one, and otherwise says on stderr that (and why) that run was skipped.
#[macro_export]
macro_rules! on_each_engine {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(&$crate::rig::Rig::postgres().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn meilisearch() {
                match $crate::rig::Rig::meilisearch().await {
                    Ok(rig) => super::$name(&rig).await,
                    Err(why) => eprintln!(
                        "SKIPPED the Meilisearch run of {}: {why} (see docs/ops/search.md)",
                        stringify!($name)
                    ),
                }
            }
        }
    };
}
