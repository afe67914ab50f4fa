//! `kiorex serve worker` as a process: health and metrics on its own port, the outbox drained,
//! a SIGKILL in the middle losing nothing, a graceful stop on SIGTERM.

use kiorex_testkit::Site;
use std::time::Duration;

fn pending(site: &Site) -> i64 {
    let mut conn = kiorex_store::connect_once(&site.database_url).unwrap();
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL")
        .get_result::<N>(&mut conn)
        .unwrap()
        .n
}

fn queue(site: &Site, events: usize) {
    let mut conn = kiorex_store::connect_once(&site.database_url).unwrap();
    use diesel::prelude::*;
    diesel::sql_query(format!(
        "INSERT INTO outbox (facility_id, topic, resource_type, resource_id, version_id) \
         SELECT gen_random_uuid(), 'resource.update', 'Observation', gen_random_uuid(), 1 \
         FROM generate_series(1, {events})"
    ))
    .execute(&mut conn)
    .unwrap();
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the worker answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_process_drains_the_outbox_survives_a_kill_and_stops_gracefully() {
    let site = Site::with_admin();
    queue(&site, 3000);
    let env = [
        ("KIOREX_WORKER__BATCH_SIZE", "50"),
        ("KIOREX_WORKER__LEASE_SECONDS", "1"),
        ("KIOREX_WORKER__POLL_INTERVAL_MS", "50"),
    ];
    let mut worker = site.serve_worker(&env);
    let (status, body) = get(&format!("{}/health/live", worker.base)).await;
    assert_eq!(status, 200, "{body}");
    worker.kill_hard();
    let left = pending(&site);
    assert!(left > 0, "killed before it could finish");

    let mut worker = site.serve_worker(&env);
    let (status, body) = get(&format!("{}/health/ready", worker.base)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"database\":\"pass\""), "{body}");
    let drained = kiorex_testkit::wait_until(Duration::from_secs(30), || pending(&site) == 0);
    assert!(drained, "{} events left", pending(&site));
    let (status, metrics) = get(&format!("{}/metrics", worker.base)).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("kiorex_outbox_pending 0\n"), "{metrics}");
    assert!(
        metrics.contains("kiorex_outbox_lag_seconds 0.000\n"),
        "{metrics}"
    );
    let delivered: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kiorex_worker_events_delivered_total "))
        .and_then(|v| v.parse().ok())
        .expect("the delivered counter");
    assert!(
        delivered >= left,
        "{delivered} delivered by the second worker, {left} were left"
    );

    // A new event is picked up promptly by the idle worker.
    queue(&site, 1);
    let picked = kiorex_testkit::wait_until(Duration::from_secs(5), || pending(&site) == 0);
    assert!(picked);
    let status = worker.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "stops cleanly on SIGTERM: {status:?}"
    );
}

#[test]
fn the_worker_refuses_to_start_with_migrations_pending_and_explains_its_commands() {
    let site = Site::unmigrated(kiorex_testkit::empty_database());
    let run = site.kiorex(&["serve", "worker"]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("KX-DB-002"), "{}", run.stderr());
    let help = site.kiorex(&["reindex", "--help"]).success();
    assert!(
        help.contains("patients") && help.contains("--output"),
        "{help}"
    );
    let refused = site.kiorex(&["reindex", "everything"]);
    assert_eq!(refused.code(), Some(2), "clap refuses an unknown index");
}

#[test]
fn configtest_checks_the_search_engine_from_this_node() {
    let site = Site::with_admin();
    let run = site.kiorex(&["configtest", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    let search = |report: &serde_json::Value| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "search")
            .cloned()
            .expect("a search check")
    };
    assert_eq!(search(&report)["status"], "pass", "{report}");
    let closed = format!("http://127.0.0.1:{}", kiorex_testkit::free_port());
    let run = site
        .command(&["configtest", "--output", "json"])
        .env("KIOREX_SEARCH__ENGINE", "meilisearch")
        .env("KIOREX_SEARCH__MEILISEARCH_URL", &closed)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&run.stdout).trim()).unwrap();
    let check = search(&report);
    assert_eq!(check["status"], "fail", "{report}");
    assert!(
        check["message"].as_str().unwrap().contains("KX-SRCH-503"),
        "{check}"
    );
    let run = site
        .command(&["configtest"])
        .env("KIOREX_SEARCH__ENGINE", "meilisearch")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("search.meilisearch_url"),
        "a missing URL is named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_formulary_is_imported_from_a_csv_file_and_found_by_name() {
    let rig = crate::rig::Rig::postgres().await;
    let site = Site::unmigrated(rig.app.database_url.clone());
    let file = site.dir.path().join("formulary.csv");
    std::fs::write(
        &file,
        "code,name,form,ingredients\n\
         AMX500,Amoxicillin 500 mg capsule,capsule,amoxicillin trihydrate\n\
         COAMOX,\"Co-amoxiclav 500/125 mg, tablet\",tablet,amoxicillin; clavulanic acid\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let import = |facility: &'static str| {
        site.kiorex(&[
            "formulary",
            "import",
            path,
            "--facility",
            facility,
            "--output",
            "json",
        ])
    };
    let first: serde_json::Value = serde_json::from_str(import("FACA").success().trim()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"created": 2, "updated": 0, "unchanged": 0})
    );
    let again: serde_json::Value = serde_json::from_str(import("FACA").success().trim()).unwrap();
    assert_eq!(
        again["unchanged"], 2,
        "importing the same file changes nothing"
    );
    rig.settled().await;
    let hits = rig
        .search(
            kiorex_testkit::User::NurseA,
            "/api/v1/search/medicines",
            "clavulanic",
        )
        .await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["name"], "Co-amoxiclav 500/125 mg, tablet");
    let unknown = import("NOPE");
    assert_eq!(unknown.code(), Some(1));
    assert!(
        unknown.stderr().contains("no facility with code NOPE"),
        "{}",
        unknown.stderr()
    );
    std::fs::write(&file, "code,name\nX1,\n").unwrap();
    let refused = import("FACA");
    assert_eq!(refused.code(), Some(1));
    assert!(refused.stderr().contains("line 2") && refused.stderr().contains("KX-MED-001"));
}
