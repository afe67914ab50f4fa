//! The core API running in-process against its own database.

use kiorex_api::audit::AuditSink;
use kiorex_api::auth::{TokenService, generate_signing_key_pem, hash_password};
use kiorex_api::identity::{Identity, IdentitySettings};
use kiorex_api::{ApiSettings, AppState};
use kiorex_domain::permission::{Grant, Principal, Role};
use kiorex_store::Store;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// The staff accounts every test app has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// Administrator at facility A.
    Admin,
    /// Nurse at facility A.
    NurseA,
    /// Front desk at facility A (registers and merges patients).
    FrontDeskA,
    /// Physician at facility B.
    DoctorB,
    /// Auditor at facility A: no clinical permissions.
    AuditorA,
}

impl User {
    pub fn username(self) -> &'static str {
        match self {
            User::Admin => "admin.a",
            User::NurseA => "nurse.a",
            User::FrontDeskA => "frontdesk.a",
            User::DoctorB => "doctor.b",
            User::AuditorA => "auditor.a",
        }
    }
}

pub const PASSWORD: &str = "test-password-123";

pub struct TestApp {
    pub base: String,
    pub database_url: String,
    pub store: Store,
    pub facility_a: Uuid,
    pub facility_b: Uuid,
    pub tokens: Arc<TokenService>,
    http: reqwest::Client,
    users: Vec<(User, Principal)>,
}

/// A response: status, headers, and the body as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(PASSWORD).expect("hash"))
}

fn signing_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| generate_signing_key_pem().expect("key"))
}

impl TestApp {
    /// Starts the API on 127.0.0.1:0 with a fresh database, facilities A and B, and the staff.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(IdentitySettings::default()).await
    }

    /// Like [`TestApp::spawn`], with these sign-in settings (a directory, an IdP, timeouts).
    pub async fn spawn_with(identity: IdentitySettings) -> TestApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        TestApp::spawn_full(identity, None, listener).await
    }

    /// Like [`TestApp::spawn_with`], on a listener bound beforehand (when a peer, such as the
    /// OpenID provider, must know Kiorex's address before Kiorex starts).
    pub async fn spawn_on(identity: IdentitySettings, listener: std::net::TcpListener) -> TestApp {
        TestApp::spawn_full(identity, None, listener).await
    }

    /// Like [`TestApp::spawn`], with documents on the given object store and scanner.
    pub async fn spawn_with_documents(documents: Option<kiorex_objects::Objects>) -> TestApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        TestApp::spawn_full(IdentitySettings::default(), documents, listener).await
    }

    /// The app with every part chosen.
    pub async fn spawn_full(
        identity: IdentitySettings,
        documents: Option<kiorex_objects::Objects>,
        listener: std::net::TcpListener,
    ) -> TestApp {
        TestApp::spawn_searching(identity, documents, listener, None).await
    }

    /// The app with every part chosen, searching with Meilisearch when `meilisearch` is given
    /// (the PostgreSQL engine otherwise).
    pub async fn spawn_searching(
        identity: IdentitySettings,
        documents: Option<kiorex_objects::Objects>,
        listener: std::net::TcpListener,
        meilisearch: Option<kiorex_search::meili::MeiliSettings>,
    ) -> TestApp {
        let database_url = tokio::task::spawn_blocking(crate::fresh_database)
            .await
            .expect("database");
        let store = Store::connect(&database_url, 8).expect("pool");
        let url = database_url.clone();
        let (facility_a, facility_b, users) = tokio::task::spawn_blocking(move || seed(&url))
            .await
            .expect("seed");
        let tokens = Arc::new(TokenService::from_pem(signing_key(), 900).expect("token service"));
        let state = AppState {
            audit: AuditSink::start(store.clone()),
            store: store.clone(),
            tokens: tokens.clone(),
            settings: Arc::new(ApiSettings {
                base_url: String::new(),
                max_body_bytes: 1024 * 1024,
                token_ttl_seconds: 900,
            }),
            identity: Identity::new(identity).expect("identity settings"),
            documents: documents.map(Arc::new),
            search: match meilisearch {
                Some(settings) => kiorex_search::Engine::Meilisearch(Arc::new(
                    kiorex_search::meili::MeiliSearch::new(&settings).expect("meilisearch"),
                )),
                None => kiorex_search::Engine::postgres(store.clone()),
            },
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let address = listener.local_addr().expect("address");
        let base = format!("http://{address}");
        let state = AppState {
            settings: Arc::new(ApiSettings {
                base_url: base.clone(),
                ..(*state.settings).clone()
            }),
            ..state
        };
        tokio::spawn(async move {
            axum::serve(
                listener,
                kiorex_api::router_with(state, kiorex_portal::router())
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .expect("serve")
        });
        TestApp {
            base,
            database_url,
            store,
            facility_a,
            facility_b,
            tokens,
            http: reqwest::Client::new(),
            users,
        }
    }

    /// A bearer token for one of the staff (issued directly; sign-in itself has its own tests).
    pub fn token(&self, user: User) -> String {
        let principal = self
            .users
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| p)
            .expect("user");
        self.tokens.issue(principal).expect("token")
    }

    pub async fn get(&self, user: User, path: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(self.token(user)))
            .await
    }

    /// A GET without any credentials.
    pub async fn get_anonymous(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, user: User, path: &str, body: &Value) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(self.token(user))
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, user: User, path: &str, body: &Value, if_match: Option<&str>) -> Reply {
        let mut request = self
            .http
            .put(self.url(path))
            .bearer_auth(self.token(user))
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        self.send(request).await
    }

    pub async fn delete(&self, user: User, path: &str) -> Reply {
        self.send(
            self.http
                .delete(self.url(path))
                .bearer_auth(self.token(user)),
        )
        .await
    }

    /// Any request, built by the caller (headers, raw bodies, no token …).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a patient at facility A through FHIR and returns its id.
    pub async fn patient(&self, family: &str, given: &str, birth_date: &str) -> String {
        let reply = self
            .post(User::Admin, "/fhir/Patient", &serde_json::json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
                "gender": "female", "birthDate": birth_date}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }

    /// The account id of one of the staff.
    pub fn user_id(&self, user: User) -> Uuid {
        self.users
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| p.user_id)
            .expect("user")
    }

    /// Puts a patient on a clinician's list (a care relationship), as a ward list feed would.
    pub fn care_for(&self, user: User, patient_id: &str) {
        let mut conn = kiorex_store::connect_once(&self.database_url).expect("connect");
        let patient = Uuid::parse_str(patient_id).expect("patient id");
        let facility = if user == User::DoctorB {
            self.facility_b
        } else {
            self.facility_a
        };
        kiorex_store::care::assign(
            &mut conn,
            &kiorex_store::care::Assignment {
                user_id: self.user_id(user),
                patient_id: patient,
                facility_id: facility,
                reason: "ward list",
                from: chrono::Utc::now() - chrono::Duration::minutes(1),
                until: None,
                created_by: "testkit",
            },
        )
        .expect("assign");
    }

    /// Runs SQL against this app's database as the superuser (for tampering tests).
    pub fn sql(&self, sql: &str) {
        self.try_sql(sql).expect("sql");
    }

    /// Like [`TestApp::sql`], returning the database's refusal instead of panicking.
    pub fn try_sql(&self, sql: &str) -> Result<(), String> {
        use diesel::{Connection, RunQueryDsl};
        let mut conn =
            diesel::PgConnection::establish(&self.database_url).map_err(|e| e.to_string())?;
        diesel::sql_query(sql)
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Counts rows with a query of the form `SELECT count(*) AS n FROM …`.
    pub fn count(&self, sql: &str) -> i64 {
        use diesel::{Connection, QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            n: i64,
        }
        let mut conn = diesel::PgConnection::establish(&self.database_url).expect("connect");
        diesel::sql_query(sql)
            .get_result::<N>(&mut conn)
            .expect("count")
            .n
    }
}

fn seed(url: &str) -> (Uuid, Uuid, Vec<(User, Principal)>) {
    let mut conn = kiorex_store::connect_once(url).expect("connect");
    let (a, _) = kiorex_api::admin::ensure_facility(&mut conn, "testkit", "FACA", "Facility A")
        .expect("facility A");
    let (b, _) = kiorex_api::admin::ensure_facility(&mut conn, "testkit", "FACB", "Facility B")
        .expect("facility B");
    let staff = [
        (User::Admin, a.id, Role::Administrator),
        (User::NurseA, a.id, Role::Nurse),
        (User::FrontDeskA, a.id, Role::FrontDesk),
        (User::DoctorB, b.id, Role::Physician),
        (User::AuditorA, a.id, Role::Auditor),
    ];
    let users = staff
        .into_iter()
        .map(|(user, facility_id, role)| {
            let grants = vec![Grant { facility_id, role }];
            let id = kiorex_store::accounts::upsert(
                &mut conn,
                user.username(),
                user.username(),
                password_hash(),
                &grants,
            )
            .expect("user");
            (user, Principal::person(id, user.username(), grants))
        })
        .collect();
    (a.id, b.id, users)
}
