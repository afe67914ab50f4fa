//! The single-node data directory that `kiorexctl up` creates, as the operations commands
//! (backup, restore, status, support-bundle) read it. The layout is `up`'s:
//!
//! ```text
//! <data-dir>/postgres/data        PostgreSQL cluster (owned by `postgres` when run as root)
//! <data-dir>/postgres/run         its Unix socket (it listens on no TCP port)
//! <data-dir>/secrets/             database-url, token-signing-key.pem, admin-password (0600)
//! <data-dir>/logs/                postgres.log, core.log
//! <data-dir>/core.pid             the core started with --detach
//! ```

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Result<Layout> {
        let root = root
            .canonicalize()
            .with_context(|| format!("no single-node data directory at {}", root.display()))?;
        Ok(Layout { root })
    }
    pub fn pg_data(&self) -> PathBuf {
        self.root.join("postgres/data")
    }
    pub fn pg_run(&self) -> PathBuf {
        self.root.join("postgres/run")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn core_pid(&self) -> PathBuf {
        self.root.join("core.pid")
    }
    pub fn database_url(&self) -> Result<String> {
        let p = self.secrets().join("database-url");
        Ok(std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .trim()
            .to_owned())
    }
    /// The password in the database URL (`postgres://kiorex:PASSWORD@localhost/...`).
    pub fn database_password(&self) -> Result<String> {
        let url = self.database_url()?;
        url.split("://")
            .nth(1)
            .and_then(|rest| rest.split('@').next())
            .and_then(|auth| auth.split_once(':'))
            .map(|(_, p)| p.to_owned())
            .context("the database URL has no password")
    }
}

/// The PostgreSQL server binaries of this machine (same search as `up`).
pub fn postgres_bin() -> Result<PathBuf> {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_config.filter(|d| d.join("initdb").exists()) {
        return Ok(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|e| {
            e.filter_map(|x| x.ok().map(|x| x.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .context("the PostgreSQL server programs are not installed")
}

/// The account PostgreSQL runs as when we are root (it refuses to run as root).
pub fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam returns static storage or null; it is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    // SAFETY: checked for null before reading.
    (!pw.is_null()).then(|| unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A PostgreSQL server program, run as the postgres account when we are root.
pub fn pg_command(bin: &Path, program: &str) -> Command {
    let mut cmd = Command::new(bin.join(program));
    if let Some((uid, gid)) = postgres_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Gives `path` (recursively) to the postgres account when we are root.
pub fn give_to_postgres(path: &Path) -> Result<()> {
    let Some((uid, gid)) = postgres_user() else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            give_to_postgres(&e?.path())?;
        }
    }
    Ok(())
}

pub fn run_ok(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Layout {
    /// One SQL statement through psql on the Unix socket; returns the unaligned output.
    pub fn sql(&self, bin: &Path, database: &str, statement: &str) -> Result<String> {
        let mut cmd = Command::new(bin.join("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.pg_run())
            .args(["-U", "kiorex", "-d", database, "-tAc", statement])
            .env("PGPASSWORD", self.database_password()?)
            .stdin(Stdio::null());
        Ok(run_ok(&mut cmd, "psql")?.trim().to_owned())
    }

    pub fn postgres_running(&self, bin: &Path) -> bool {
        pg_command(bin, "pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.pg_data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts PostgreSQL the way `up` does: no TCP listener, the socket in postgres/run.
    pub fn start_postgres(&self, bin: &Path) -> Result<()> {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}'",
            self.pg_run().display()
        );
        let log = self.logs().join("postgres.log");
        run_ok(
            pg_command(bin, "pg_ctl")
                .args(["start", "-w", "-t", "120", "-D"])
                .arg(self.pg_data())
                .arg("-l")
                .arg(&log)
                .args(["-o", &options])
                .stdout(Stdio::null()),
            "pg_ctl start",
        )
        .with_context(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "PostgreSQL did not start; the end of {}:\n{}",
                log.display(),
                tail.join("\n")
            )
        })?;
        Ok(())
    }

    pub fn stop_postgres(&self, bin: &Path) -> Result<()> {
        if self.postgres_running(bin) {
            run_ok(
                pg_command(bin, "pg_ctl")
                    .args(["stop", "-w", "-m", "fast", "-D"])
                    .arg(self.pg_data()),
                "pg_ctl stop",
            )?;
        }
        Ok(())
    }

    /// Stops a core started with `up --detach`, if any; returns whether one was running.
    /// Stops every role `up --detach` started (edge first, then the worker, then core) and
    /// returns whether core was running. The roles' pid files are removed.
    pub fn stop_roles(&self) -> bool {
        stop_role(&self.root.join("edge.pid"));
        stop_role(&self.root.join("worker.pid"));
        stop_role(&self.core_pid())
    }
}

/// Stops the process whose pid is in `pid_file` (SIGTERM, then up to 10 s for it to go) and
/// removes the file; returns whether a signal was delivered.
pub fn stop_role(pid_file: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: signalling a role `up` started; a stale pid gets ESRCH.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) } == 0;
    for _ in 0..100 {
        // SAFETY: signal 0 only probes whether the process exists.
        if !sent || unsafe { libc::kill(pid, 0) } != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(pid_file);
    sent
}
