//! A real OpenID Connect provider for tests: npm `oidc-provider` run by a small Node script
//! (`oidc/provider.mjs`) on 127.0.0.1, with one public client that must use PKCE, a `groups`
//! claim in the ID token, and a login step that checks passwords. Its npm packages are
//! installed once under the target directory.

use crate::free_port;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "kiorex-portal";

/// A running provider; stopped on drop.
pub struct OidcProvider {
    pub issuer: String,
    config_path: PathBuf,
    config: Value,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// `target/testkit-oidc` with `node_modules` installed (once; `npm install` is skipped when the
/// installed version matches).
fn node_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("testkit-oidc");
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        std::fs::create_dir_all(&dir).expect("node dir");
        let wanted = std::fs::read_to_string(kit_dir().join("package.json")).expect("package.json");
        let installed = std::fs::read_to_string(dir.join("package.json")).unwrap_or_default();
        if wanted != installed || !dir.join("node_modules/oidc-provider").exists() {
            std::fs::write(dir.join("package.json"), &wanted).expect("package.json");
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm (install nodejs and npm)");
            assert!(status.success(), "npm install of oidc-provider failed");
        }
        std::fs::copy(kit_dir().join("provider.mjs"), dir.join("provider.mjs")).expect("script");
    });
    dir
}

impl OidcProvider {
    /// Starts the provider for a Kiorex whose callback is `redirect_uri`, with `users`
    /// (`{"name": {"password", "name", "email", "groups": [..]}}`).
    pub fn start(redirect_uri: &str, users: Value) -> OidcProvider {
        let node = node_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let config = json!({
            "issuer": issuer,
            "clients": [{"client_id": CLIENT_ID, "redirect_uris": [redirect_uri],
                         "post_logout_redirect_uris": ["http://127.0.0.1/signed-out"]}],
            "users": users,
        });
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("config");
        let child = spawn(&node, &port.to_string(), &config_path);
        wait_for(port);
        OidcProvider {
            issuer,
            config_path,
            config,
            child,
            _dir: dir,
        }
    }

    /// Replaces a user's groups (read again at their next sign-in).
    pub fn set_groups(&mut self, user: &str, groups: &[&str]) {
        self.config["users"][user]["groups"] = json!(groups);
        std::fs::write(&self.config_path, self.config.to_string()).expect("config");
    }

    /// Restarts the provider on the same address with a new signing key (key rotation).
    pub fn restart(&mut self) {
        self.stop();
        let port = self.issuer.rsplit(':').next().expect("port").to_owned();
        self.child = spawn(&node_dir(), &port, &self.config_path);
        wait_for(port.parse().expect("port"));
    }

    /// Stops the provider (to test "IdP down").
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(node: &Path, port: &str, config: &Path) -> Child {
    Command::new("node")
        .arg(node.join("provider.mjs"))
        .arg(port)
        .arg(config)
        .current_dir(node)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node")
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "oidc-provider did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
}
