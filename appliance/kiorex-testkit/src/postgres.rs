//! A throwaway PostgreSQL cluster.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

static CLUSTER: OnceLock<Postgres> = OnceLock::new();
const TEMPLATE: &str = "kiorex_template";

/// The process's cluster, started on first use.
pub fn postgres() -> &'static Postgres {
    CLUSTER.get_or_init(|| {
        let pg = Postgres::start()
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL for the tests: {e}"));
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(stop_cluster) };
        pg
    })
}

extern "C" fn stop_cluster() {
    if let Some(pg) = CLUSTER.get() {
        pg.stop();
    }
}

/// A new database with the schema already migrated; returns its URL.
pub fn fresh_database() -> String {
    let pg = postgres();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    // CREATE DATABASE from a template is refused while another copy is being made; retry briefly.
    for attempt in 0..50 {
        match pg.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"),
        ) {
            Ok(()) => return pg.url(&name),
            Err(e) if attempt < 49 && e.contains("being accessed") => {
                std::thread::park_timeout(Duration::from_millis(50))
            }
            Err(e) => panic!("cannot create a test database: {e}"),
        }
    }
    unreachable!()
}

/// A new, empty database (no schema): for migration tests.
pub fn empty_database() -> String {
    let pg = postgres();
    let name = format!("e_{}", uuid::Uuid::new_v4().simple());
    pg.psql("postgres", &format!("CREATE DATABASE {name}"))
        .expect("create database");
    pg.url(&name)
}

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("KIOREX_TEST_PG_BIN") {
        return dir.into();
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(out) = out {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect(
        "PostgreSQL server binaries (apt-get install postgresql), or set KIOREX_TEST_PG_BIN",
    )
}

/// uid/gid of the `postgres` user when we run as root (initdb refuses root).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read it immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points at a valid passwd entry.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").stdin(Stdio::null());
    cmd
}

impl Postgres {
    fn start() -> Result<Postgres, String> {
        Postgres::start_on(crate::free_port(), "127.0.0.1")
    }

    /// A separate cluster on `port`, listening on `listen_addresses` (a PostgreSQL list, e.g.
    /// `127.0.0.1,10.77.4.2`), migrated like the shared one and stopped when dropped. It starts
    /// in the calling thread's network namespace, which the zone tests use to put it in the
    /// data zone.
    pub fn start_on(port: u16, listen_addresses: &str) -> Result<Postgres, String> {
        let bin = pg_bin();
        let user = run_as();
        let dir = std::env::temp_dir().join(format!("kiorex-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let data = dir.join("data");
        let init = command(&bin.join("initdb"), user)
            .args([
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "kiorex",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            let _ = std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid));
        }
        // fsync off: these clusters hold throwaway data; crash tests kill the kiorex process, not
        // PostgreSQL, so durability against power loss is not what they measure.
        let child = command(&bin.join("postgres"), user)
            .args([
                "-D",
                path(&data),
                "-p",
                &port.to_string(),
                "-k",
                path(&dir),
                "-c",
                &format!("listen_addresses={listen_addresses}"),
            ])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let pg = Postgres {
            port,
            dir,
            child: Mutex::new(Some(child)),
        };
        if !crate::wait_until(Duration::from_secs(30), || {
            pg.psql("postgres", "SELECT 1").is_ok()
        }) {
            let log = std::fs::read_to_string(pg.dir.join("postgres.log")).unwrap_or_default();
            pg.stop();
            return Err(format!("PostgreSQL did not become ready:\n{log}"));
        }
        pg.psql("postgres", &format!("CREATE DATABASE {TEMPLATE}"))?;
        let mut conn = kiorex_store::connect_once(&pg.url(TEMPLATE)).map_err(|e| e.to_string())?;
        kiorex_store::run_migrations(&mut conn).map_err(|e| e.to_string())?;
        drop(conn);
        Ok(pg)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://kiorex@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL statements as the superuser.
    pub fn psql(&self, database: &str, sql: &str) -> Result<(), String> {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let mut conn =
            diesel::PgConnection::establish(&self.url(database)).map_err(|e| e.to_string())?;
        conn.batch_execute(sql).map_err(|e| e.to_string())
    }

    fn stop(&self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            // SIGQUIT: immediate shutdown; the data is thrown away anyway.
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}
