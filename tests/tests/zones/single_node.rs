//! `kiorexctl up` as root in a network namespace made for the test: the roles run as their own
//! users, the zone firewall is loaded into that namespace only, and it holds, proved by trying
//! as each role's user. The host's users are left alone: the roles run as the existing
//! unprivileged accounts `nobody` (edge) and `daemon` (core) instead of new ones.

use super::Netns;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const EDGE_USER: (&str, u32) = ("nobody", 65534);
const CORE_USER: (&str, u32) = ("daemon", 1);

fn in_ns(ns: &Netns, program: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(program)
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// Whether `user` (uid) in `ns` can open a TCP connection to 127.0.0.1:`port` within 2 s.
fn tcp_as(ns: &Netns, uid: u32, port: u16) -> bool {
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let uid = uid.to_string();
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "timeout", "2", "setpriv"])
        .args([
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            "bash",
            "-c",
            &probe,
        ])
        .output()
        .expect("setpriv")
        .status
        .success()
}

/// Whether `uid` can connect to the Unix socket at `path`.
fn unix_socket_as(uid: u32, path: &Path) -> bool {
    let uid = uid.to_string();
    Command::new("setpriv")
        .args([
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg("import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])")
        .arg(path)
        .output()
        .expect("setpriv python3")
        .status
        .success()
}

fn owner_of(pid_file: &Path) -> u32 {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Uid line")
}

fn table_loaded(ns: &Netns) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "list", "table", "inet"])
        .arg(kiorex_zones::TABLE)
        .output()
        .unwrap()
        .status
        .success()
}

/// Stops the appliance in the namespace when the test ends, passed or not.
struct Appliance<'a> {
    ns: &'a Netns,
    kiorexctl: std::path::PathBuf,
    data: &'a Path,
}

impl Drop for Appliance<'_> {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap();
        let _ = in_ns(
            self.ns,
            &self.kiorexctl,
            &["up", "--stop", "--data-dir", data],
        );
    }
}

#[test]
fn kiorexctl_up_runs_each_role_as_its_own_user_behind_the_loaded_zone_firewall() {
    use std::os::unix::fs::PermissionsExt;
    let ns = Netns::new(format!("kxz{}u", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("kiorex");
    let appliance = Appliance {
        ns: &ns,
        kiorexctl: kiorex_testkit::kiorex_binary().with_file_name("kiorexctl"),
        data: &data,
    };
    // The namespace is the test's own: the standard ports are free there.
    let started = in_ns(
        &ns,
        &appliance.kiorexctl,
        &[
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--detach",
            "--demo-patients",
            "0",
            "--edge-user",
            EDGE_USER.0,
            "--core-user",
            CORE_USER.0,
            "--firewall",
            "load",
            "--output",
            "json",
        ],
    );
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let report: Value = serde_json::from_slice(&started.stdout).unwrap();
    assert_eq!(report["firewall_loaded"], true, "{report}");
    assert!(table_loaded(&ns));
    assert_eq!(owner_of(&data.join("edge.pid")), EDGE_USER.1);
    assert_eq!(owner_of(&data.join("core.pid")), CORE_USER.1);
    assert_eq!(
        owner_of(&data.join("worker.pid")),
        CORE_USER.1,
        "the worker runs as core's user"
    );

    // The edge's user reaches core's internal mutual-TLS port and nothing else of Kiorex's.
    let (edge, core) = (EDGE_USER.1, CORE_USER.1);
    assert!(tcp_as(&ns, edge, 9443), "edge -> core internal");
    assert!(!tcp_as(&ns, edge, 8080), "edge -> core LAN must be dropped");
    assert!(
        !tcp_as(&ns, edge, 9464),
        "edge -> its own metrics port is no way out either"
    );
    // Core is not limited by port on one host (it reaches what the hospital configures).
    assert!(
        tcp_as(&ns, core, 8080),
        "core's own user reaches the LAN port"
    );
    assert!(tcp_as(&ns, core, 9443));
    // PostgreSQL listens on a Unix socket only; its directory opens to core's group alone.
    let socket = data.join("postgres/run/.s.PGSQL.5432");
    assert!(unix_socket_as(core, &socket), "core reaches PostgreSQL");
    assert!(
        !unix_socket_as(edge, &socket),
        "the edge cannot reach PostgreSQL"
    );
    // Keys are the role's own: the edge cannot read core's token-signing key.
    let key = data.join("secrets/token-signing-key.pem");
    let read_as_edge = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "cat",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!read_as_edge.status.success());

    // Stopping removes the table from the namespace.
    drop(appliance);
    assert!(!table_loaded(&ns), "the zone table is removed on stop");
}
