//! Real parts for tests, started on loopback in temporary directories and stopped afterwards.
//!
//! - [`postgres()`]: one PostgreSQL cluster per test process (initdb + postgres on a free port;
//!   as root, run as the `postgres` system user because initdb refuses root). A template
//!   database is migrated once; every test gets its own copy ([`fresh_database`]).
//! - [`Site`]: the `kiorex` binary as a process against its own database.
//! - [`TestApp::spawn`]: the core API in-process on port 0 with its own database, two facilities
//!   and a few staff accounts, plus typed helpers to call it as one of them.
//! - [`ceph()`] and [`clamav()`]: one Ceph cluster (mon, memstore OSD, RGW) and one clamd per
//!   test process; [`documents_on`] wires them into a [`TestApp`] with buckets of its own.

mod app;
pub mod browser;
mod ceph;
mod clamav;
mod documents;
pub mod edge;
pub mod ldap;
mod meilisearch;
pub mod oidc;
pub mod pki;
mod postgres;
mod process;

pub use app::{PASSWORD as STAFF_PASSWORD, Reply, TestApp, User};
pub use ceph::{ACCESS_KEY, Ceph, Gateway, SECRET_KEY, ceph};
pub use clamav::{ClamAv, EICAR, clamav};
pub use documents::{DocumentSite, documents_on, s3_settings, sample_pdf};
pub use meilisearch::meilisearch;
pub use postgres::{Postgres, empty_database, fresh_database, postgres};
pub use process::{ADMIN, ADMIN_PASSWORD, Core, Finished, Site};

/// The `kiorex` binary built alongside the tests (`KIOREX_BIN` overrides).
pub fn kiorex_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("KIOREX_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/kiorex
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("kiorex"))
        .expect("target directory")
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `check` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(25));
    }
    check()
}
