//! The `kiorex` binary as a separate process, for tests that kill it or drive its CLI.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A database with facility A and an administrator, and the environment that points the
/// `kiorex` binary at it.
pub struct Site {
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pub key_file: PathBuf,
}

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "site-chief-Secret-81";

impl Site {
    /// A migrated database with facility `GEN` and a local administrator.
    pub fn with_admin() -> Site {
        let site = Site::unmigrated(crate::fresh_database());
        site.kiorex(&[
            "facility",
            "create",
            "--code",
            "GEN",
            "--name",
            "General Hospital",
        ])
        .success();
        let password = site.dir.path().join("admin-password");
        std::fs::write(&password, ADMIN_PASSWORD).expect("password file");
        site.kiorex(&[
            "user",
            "create",
            "--username",
            ADMIN,
            "--password-file",
            password.to_str().unwrap(),
            "--grant",
            "administrator@GEN",
        ])
        .success();
        site
    }

    /// A site whose database is `database_url` as it is (migrated or not).
    pub fn unmigrated(database_url: String) -> Site {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("token.pem");
        std::fs::write(
            &key_file,
            kiorex_api::auth::generate_signing_key_pem().expect("key"),
        )
        .expect("key file");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Site {
            database_url,
            dir,
            key_file,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::kiorex_binary());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KIOREX_DATABASE__URL", &self.database_url)
            .env("KIOREX_AUTH__TOKEN_SIGNING_KEY_FILE", &self.key_file)
            .env("KIOREX_LOG__FORMAT", "json")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a CLI command to completion.
    pub fn kiorex(&self, args: &[&str]) -> Finished {
        Finished(self.command(args).output().expect("run kiorex"))
    }

    /// Starts `kiorex serve core` on a free port and waits until it is ready.
    pub fn serve(&self) -> Core {
        self.serve_with(&[])
    }

    /// The same, with more environment (e.g. `KIOREX_CORE__INTERNAL__LISTEN`).
    pub fn serve_with(&self, env: &[(String, String)]) -> Core {
        let port = crate::free_port();
        let log_path = self.dir.path().join(format!("core-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log");
        let child = self
            .command(&["serve", "core"])
            .env("KIOREX_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kiorex");
        let core = Core {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log_path,
        };
        let ready = crate::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "kiorex serve core did not start listening on {port}");
        core
    }
}

impl Site {
    /// Starts `kiorex serve worker` with its health and metrics on a free port, with more
    /// environment (e.g. `KIOREX_WORKER__BATCH_SIZE`), and waits until it listens.
    pub fn serve_worker(&self, env: &[(&str, &str)]) -> Core {
        let port = crate::free_port();
        let log_path = self.dir.path().join(format!("worker-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log");
        let child = self
            .command(&["serve", "worker"])
            .env("KIOREX_WORKER__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kiorex");
        let worker = Core {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log_path,
        };
        let ready = crate::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            ready,
            "kiorex serve worker did not start listening on {port}"
        );
        worker
    }
}

/// A finished CLI run.
pub struct Finished(pub Output);

impl Finished {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    /// Asserts success and returns stdout.
    pub fn success(&self) -> String {
        assert!(
            self.0.status.success(),
            "kiorex failed ({:?}):\n{}\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
}

/// A running `kiorex serve core`; killed when dropped.
pub struct Core {
    child: Child,
    pub base: String,
    /// Where its standard output and error go.
    pub log: std::path::PathBuf,
}

impl Core {
    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd and Kubernetes stop a service: it should finish and exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.exit_status(timeout)
    }

    /// Waits for the process to exit by itself (it should not).
    pub fn exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::park_timeout(Duration::from_millis(25));
        }
        None
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
