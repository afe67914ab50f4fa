//! Meilisearch for the shared search suite, when one is available: `KIOREX_TEST_MEILISEARCH_URL`
//! (a running server; `KIOREX_TEST_MEILISEARCH_KEY` its master key, if any) or
//! `KIOREX_TEST_MEILISEARCH_BIN` (a `meilisearch` binary, started here on a free port of
//! 127.0.0.1 in a temporary directory, stopped when the test process exits). Every caller gets
//! its own index prefix, so tests never see each other's documents.

use kiorex_search::meili::MeiliSettings;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const MASTER_KEY: &str = "kiorex-test-master-key-0123456789";

struct Server {
    url: String,
    api_key: Option<String>,
    child: Mutex<Option<Child>>,
    dir: Option<std::path::PathBuf>,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();

/// Settings for a Meilisearch the tests may use, with a fresh index prefix; `Err` says why
/// there is none (the suite then prints that the Meilisearch run was skipped).
pub fn meilisearch() -> Result<MeiliSettings, String> {
    let server = SERVER.get_or_init(|| {
        let server = start();
        if server.is_some() {
            // SAFETY: registering a plain `extern "C" fn` with no captured state.
            unsafe { libc::atexit(stop_server) };
        }
        server
    });
    let server = server.as_ref().ok_or_else(|| {
        "neither KIOREX_TEST_MEILISEARCH_URL nor KIOREX_TEST_MEILISEARCH_BIN is set".to_owned()
    })?;
    Ok(MeiliSettings {
        url: server.url.clone(),
        api_key: server.api_key.clone(),
        index_prefix: format!("t{}", uuid::Uuid::new_v4().simple()),
    })
}

fn start() -> Option<Server> {
    if let Ok(url) = std::env::var("KIOREX_TEST_MEILISEARCH_URL") {
        return Some(Server {
            url,
            api_key: std::env::var("KIOREX_TEST_MEILISEARCH_KEY").ok(),
            child: Mutex::new(None),
            dir: None,
        });
    }
    let binary = std::env::var_os("KIOREX_TEST_MEILISEARCH_BIN")?;
    let dir = std::env::temp_dir().join(format!("kiorex-meili-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("meilisearch dir");
    let port = crate::free_port();
    let log = std::fs::File::create(dir.join("meilisearch.log")).expect("log");
    let child = Command::new(binary)
        .current_dir(&dir)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .arg("--db-path")
        .arg(dir.join("data.ms"))
        .arg("--dump-dir")
        .arg(dir.join("dumps"))
        .args([
            "--master-key",
            MASTER_KEY,
            "--no-analytics",
            "--env",
            "development",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("KIOREX_TEST_MEILISEARCH_BIN is set but does not start: {e}"));
    let ready = crate::wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        ready,
        "meilisearch did not listen on {port}; see {}",
        dir.display()
    );
    Some(Server {
        url: format!("http://127.0.0.1:{port}"),
        api_key: Some(MASTER_KEY.to_owned()),
        child: Mutex::new(Some(child)),
        dir: Some(dir),
    })
}

extern "C" fn stop_server() {
    if let Some(Some(server)) = SERVER.get() {
        if let Ok(mut child) = server.child.lock()
            && let Some(mut child) = child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &server.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
