//! kiorexctl as an admin runs it: the real binary, real files, this machine's kernel and sockets.

mod backup;
mod bundle;
mod init;
mod plan;
mod preflight;
mod render;
mod status;
mod support;
mod systemd;

use std::path::Path;
use std::process::Command;

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

pub fn kiorexctl(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kiorexctl"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kiorexctl runs");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn every_command_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["preflight", "--help"],
        &["init", "--help"],
        &["bundle", "create", "--help"],
        &["bundle", "verify", "--help"],
        &["bundle", "inspect", "--help"],
        &["bundle", "keygen", "--help"],
        &["render", "--help"],
        &["secrets", "--help"],
        &["install", "--help"],
        &["upgrade", "--help"],
        &["uninstall", "--help"],
        &["status", "--help"],
        &["rotate-certs", "--help"],
        &["backup", "--help"],
        &["restore", "--help"],
        &["support-bundle", "--help"],
        &["up", "--help"],
        &["zones", "--help"],
    ] {
        let run = kiorexctl(dir.path(), args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        assert!(run.stdout.contains("Usage:"), "{args:?}: {}", run.stdout);
    }
    assert!(
        kiorexctl(dir.path(), &["--help"])
            .stdout
            .contains("Exit status")
    );
}
