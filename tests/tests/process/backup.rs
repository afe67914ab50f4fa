//! `kiorexctl backup` and `restore` on the real single-node appliance (`kiorexctl up`): records
//! written through the API come back identical after a point-in-time restore.

use super::sign_in;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

/// Stops the appliance when the test ends, passed or not.
struct Appliance<'a> {
    kiorexctl: std::path::PathBuf,
    data: &'a Path,
    port: String,
}

impl Appliance<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.kiorexctl).args(args).output().unwrap()
    }

    fn up(&self) -> Value {
        let out = self.run(&[
            "up",
            "--detach",
            "--demo-patients",
            "0",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--port",
            &self.port,
            // Free ports for the edge too: other tests run appliances at the same time.
            "--edge-port",
            &kiorex_testkit::free_port().to_string(),
            "--internal-port",
            &kiorex_testkit::free_port().to_string(),
            "--edge-admin-port",
            &kiorex_testkit::free_port().to_string(),
            "--worker-port",
            &kiorex_testkit::free_port().to_string(),
            // Existing unprivileged accounts for the roles; the firewall stays out of the host.
            "--edge-user",
            "nobody",
            "--core-user",
            "daemon",
            "--firewall",
            "write",
            "--output",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Appliance<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["up", "--stop", "--data-dir", self.data.to_str().unwrap()]);
    }
}

/// Every patient the API returns, whole (ids, versions, timestamps, content), sorted by id.
async fn patients(client: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let bundle: Value = client
        .get(format!("{base}/fhir/Patient?_count=200"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut all: Vec<Value> = bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect();
    all.sort_by_key(|p| p["id"].as_str().unwrap_or_default().to_owned());
    all
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    family: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = json!({"resourceType": "Patient", "name": [{"family": family, "given": [format!("G{i}")]}], "birthDate": "1980-01-01", "gender": "female"});
        let r = client
            .post(format!("{base}/fhir/Patient"))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

fn now_rfc3339() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn backup_then_point_in_time_restore_gives_back_identical_records() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL runs as its own user when we are root: it must be able to enter the directories.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let target = dir.path().join("backups");
    let appliance = Appliance {
        kiorexctl: kiorex_testkit::kiorex_binary().with_file_name("kiorexctl"),
        data: &data,
        port: kiorex_testkit::free_port().to_string(),
    };
    let report = appliance.up();
    let (d, t) = (data.to_str().unwrap(), target.to_str().unwrap());
    // The first backup turns on WAL archiving, which restarts PostgreSQL under the running core:
    // the core must carry on (its pool replaces the dead connections).
    let first = appliance.run(&["backup", "--data-dir", d, "--target", t, "--output", "json"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["archiving_enabled_now"], true);
    let base = report["url"].as_str().unwrap().to_owned();
    let password = std::fs::read_to_string(report["password_file"].as_str().unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();

    let (wanted, moment) = runtime.block_on(async {
        let token = sign_in(&client, &base, "admin", password.trim()).await;
        let before = create(&client, &base, &token, "Before", 8).await;
        let backup = appliance.run(&["backup", "--data-dir", d, "--target", t, "--output", "json"]);
        assert!(
            backup.status.success(),
            "{}",
            String::from_utf8_lossy(&backup.stderr)
        );
        let backup: Value = serde_json::from_slice(&backup.stdout).unwrap();
        assert_eq!(
            backup["archiving_enabled_now"], false,
            "archiving stays on: no restart this time"
        );
        let later = create(&client, &base, &token, "After", 5).await;
        let wanted = patients(&client, &base, &token).await;
        assert_eq!(wanted.len(), 13);
        let moment = now_rfc3339();
        // The accident to undo: records deleted after the moment.
        for id in before.into_iter().take(6).chain(later) {
            let r = client
                .delete(format!("{base}/fhir/Patient/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
        assert!(patients(&client, &base, &token).await.len() < 13);
        (wanted, moment)
    });

    let restored = appliance.run(&[
        "restore",
        "--data-dir",
        d,
        "--from",
        t,
        "--to-time",
        &moment,
        "--output",
        "json",
    ]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    appliance.up();
    let got = runtime.block_on(async {
        let token = sign_in(&client, &base, "admin", password.trim()).await;
        patients(&client, &base, &token).await
    });
    assert_eq!(
        got, wanted,
        "the records are exactly those of the chosen moment"
    );
}
