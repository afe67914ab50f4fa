//! The systemd units in `appliance/systemd`: one per role, each role under the user the zone
//! firewall expects, the edge alone with its own configuration file, and every unit accepted by
//! `systemd-analyze verify` (with the binary path pointed at the built kiorex).

use std::path::{Path, PathBuf};

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliance/systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(units_dir().join(name)).unwrap()
}

fn value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn each_role_runs_as_the_user_the_zone_firewall_expects() {
    for (role, user) in [
        ("core", "kiorex"),
        ("worker", "kiorex"),
        ("edge", "kiorex-edge"),
    ] {
        let text = unit(&format!("kiorex-{role}.service"));
        assert_eq!(value(&text, "User"), Some(user), "{role}");
        let exec = value(&text, "ExecStart").unwrap();
        assert!(exec.ends_with(&format!("serve {role}")), "{exec}");
        let config = if role == "edge" {
            "edge.toml"
        } else {
            "kiorex.toml"
        };
        assert!(exec.contains(&format!("/etc/kiorex/{config}")), "{exec}");
        assert_eq!(value(&text, "NoNewPrivileges"), Some("yes"));
        assert_eq!(value(&text, "ProtectSystem"), Some("strict"));
    }
    let sysusers = unit("kiorex.sysusers");
    assert!(sysusers.contains("u kiorex ") && sysusers.contains("u kiorex-edge "));
    // The firewall is up before the edge is.
    let edge = unit("kiorex-edge.service");
    assert_eq!(value(&edge, "Requires"), Some("kiorex-zones.service"));
    assert!(
        value(&unit("kiorex-zones.service"), "ExecStart")
            .unwrap()
            .contains("nft -f /etc/kiorex/kiorex-zones.nft")
    );
}

#[test]
fn systemd_accepts_every_unit() {
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        panic!("systemd-analyze is needed (Debian package systemd)");
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let kiorex = Path::new(env!("CARGO_BIN_EXE_kiorexctl")).with_file_name("kiorex");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(units_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !(name.ends_with(".service") || name.ends_with(".target") || name.ends_with(".timer")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/kiorex", kiorex.to_str().unwrap());
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(dir.path().join(&name));
    }
    assert_eq!(names.len(), 10, "{names:?}");
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    // Only the host's own units may be missing here (postgresql.service on a machine without it);
    // anything else (an unknown key, a bad value, a missing unit of ours) fails the test.
    let ours: Vec<&str> = complaints
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("postgresql.service"))
        .collect();
    assert!(ours.is_empty(), "{complaints}");
}

#[test]
fn the_zones_command_limits_the_edge_user_to_cores_internal_port() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiorexctl"))
        .args([
            "zones",
            "--edge-user",
            "nobody",
            "--internal-port",
            "9443",
            "--lan",
            "10.20.0.0/16",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ruleset = String::from_utf8_lossy(&out.stdout);
    assert!(
        ruleset.contains("meta skuid 65534 tcp dport 9443 accept"),
        "{ruleset}"
    );
    assert!(ruleset.contains("meta skuid 65534 drop"));
    assert!(ruleset.contains("ip saddr 10.20.0.0/16 tcp dport 8080 accept"));
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_kiorexctl"))
        .args(["zones", "--edge-user", "no-such-kiorex-user"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("KX-UP-006"));
}
