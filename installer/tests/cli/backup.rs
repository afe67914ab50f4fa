//! Backup and restore in single-node mode on a real PostgreSQL, laid out as `kiorexctl up`
//! lays it out (without the Kiorex server: the records here are rows in a table of the same
//! database, which is what a restore has to bring back).

use super::kiorexctl;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("PostgreSQL server installed")
}

fn as_postgres(cmd: &mut Command) -> &mut Command {
    // SAFETY: getuid/getpwnam have no preconditions; the result is read at once.
    unsafe {
        if libc::getuid() == 0 {
            let pw = libc::getpwnam(c"postgres".as_ptr());
            assert!(!pw.is_null(), "the postgres account exists");
            cmd.uid((*pw).pw_uid).gid((*pw).pw_gid);
        }
    }
    cmd
}

fn chown_postgres(p: &Path) {
    Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(p)
        .status()
        .unwrap();
}

/// A single-node data directory with PostgreSQL running; stops it when dropped.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("data");
        for d in ["postgres/run", "logs", "secrets"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("postgres/.pw"), "s3cret-pw").unwrap();
        let uid0 = unsafe { libc::getuid() } == 0;
        if uid0 {
            chown_postgres(&root.join("postgres"));
            chown_postgres(&root.join("logs"));
        }
        let bin = pg_bin();
        let init = as_postgres(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(root.join("postgres/data"))
                .args(["-U", "kiorex", "-A", "scram-sha-256", "--pwfile"])
                .arg(root.join("postgres/.pw"))
                .args(["-E", "UTF8", "--locale=C.UTF-8"]),
        )
        .output()
        .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let run = root.join("postgres/run");
        std::fs::write(
            root.join("secrets/database-url"),
            format!(
                "postgres://kiorex:s3cret-pw@localhost/kiorex?host={}",
                run.display()
            ),
        )
        .unwrap();
        std::fs::write(root.join("secrets/admin-password"), "admin-pw").unwrap();
        let start = as_postgres(
            Command::new(bin.join("pg_ctl"))
                .args(["start", "-w", "-D"])
                .arg(root.join("postgres/data"))
                .arg("-l")
                .arg(root.join("logs/postgres.log"))
                .args([
                    "-o",
                    &format!(
                        "-c listen_addresses='' -c unix_socket_directories='{}'",
                        run.display()
                    ),
                ]),
        )
        .output()
        .unwrap();
        assert!(
            start.status.success(),
            "{}",
            String::from_utf8_lossy(&start.stderr)
        );
        let node = Node { dir };
        node.sql("postgres", "CREATE DATABASE kiorex");
        node
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn sql(&self, db: &str, statement: &str) -> String {
        let out = Command::new(pg_bin().join("psql"))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.root().join("postgres/run"))
            .args(["-U", "kiorex", "-d", db, "-tAc", statement])
            .env("PGPASSWORD", "s3cret-pw")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{statement}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn records(&self) -> String {
        self.sql(
            "kiorex",
            "SELECT id || '|' || name || '|' || md5(body) FROM record ORDER BY id",
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = as_postgres(
            Command::new(pg_bin().join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D"])
                .arg(self.root().join("postgres/data")),
        )
        .output();
    }
}

#[test]
fn backup_then_restore_gives_back_identical_records_at_a_point_in_time() {
    let node = Node::start();
    let data = node.root();
    let data = data.to_str().unwrap();
    let target = node.dir.path().join("backups");
    let target_s = target.to_str().unwrap();
    node.sql(
        "kiorex",
        "CREATE TABLE record (id int PRIMARY KEY, name text NOT NULL, body text NOT NULL)",
    );
    node.sql("kiorex", "INSERT INTO record SELECT g, 'patient ' || g, repeat(md5(g::text), 20) FROM generate_series(1, 500) g");

    let init = kiorexctl(
        node.dir.path(),
        &[
            "init",
            "--dir",
            "site",
            "--non-interactive",
            "--site-name",
            "north",
            "--facility",
            "NRT=North",
            "--lan-portal",
            "kiorex.north.lan",
            "--dmz-portal",
            "patients.north.org",
        ],
    );
    assert_eq!(init.status, 0, "{}", init.stderr);
    let ca_key = std::fs::read(node.dir.path().join("site/pki/ca.key")).unwrap();
    let run = kiorexctl(
        node.dir.path(),
        &[
            "backup",
            "--data-dir",
            data,
            "--target",
            target_s,
            "--site-dir",
            "site",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["archiving_enabled_now"], true);
    let dir = PathBuf::from(report["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(dir.join("config.tar"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Work after the backup, then the moment to return to, then an accident.
    node.sql(
        "kiorex",
        "INSERT INTO record SELECT g, 'late ' || g, md5(g::text) FROM generate_series(501, 600) g",
    );
    node.sql("kiorex", "UPDATE record SET name = 'renamed' WHERE id = 7");
    let wanted = node.records();
    assert_eq!(wanted.lines().count(), 600);
    let moment = node.sql(
        "kiorex",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    node.sql("kiorex", "DELETE FROM record WHERE id > 10");
    node.sql("kiorex", "SELECT pg_switch_wal()");
    // The segment with the accident is archived before restore reads the archive.
    let wal = target.join("wal");
    let segment = node.sql("postgres", "SELECT last_archived_wal FROM pg_stat_archiver");
    assert!(wal.join(&segment).exists(), "{segment} archived");

    // Losing the secrets too (disaster): restore brings them back from the backup.
    std::fs::remove_file(node.root().join("secrets/admin-password")).unwrap();
    std::fs::remove_dir_all(node.dir.path().join("site")).unwrap();
    let run = kiorexctl(
        node.dir.path(),
        &[
            "restore",
            "--data-dir",
            data,
            "--from",
            target_s,
            "--to-time",
            &moment,
            "--site-dir",
            "site",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let site_key = node.dir.path().join("site/pki/ca.key");
    assert_eq!(
        std::fs::read(&site_key).unwrap(),
        ca_key,
        "the site's CA comes back from the backup"
    );
    assert_eq!(
        std::fs::metadata(&site_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(node.dir.path().join("site/kiorex-site.toml").exists());
    assert_eq!(
        node.records(),
        wanted,
        "the records are those of the chosen moment"
    );
    assert_eq!(
        std::fs::read_to_string(node.root().join("secrets/admin-password")).unwrap(),
        "admin-pw"
    );
    assert!(
        PathBuf::from(run.json()["previous_data_kept_in"].as_str().unwrap())
            .join("PG_VERSION")
            .exists()
    );
    // The restored server accepts writes (it was promoted) and the recovery settings are gone.
    node.sql(
        "kiorex",
        "INSERT INTO record VALUES (1000, 'after restore', 'x')",
    );
    // (recovery settings take effect only at start, so the file is what a later restart reads)
    let auto =
        std::fs::read_to_string(node.root().join("postgres/data/postgresql.auto.conf")).unwrap();
    assert!(
        !auto.contains("recovery_target_time") && auto.contains("archive_mode"),
        "{auto}"
    );

    // status sees the running database and the fresh backup.
    let status = kiorexctl(
        node.dir.path(),
        &[
            "status",
            "--data-dir",
            data,
            "--backups",
            target_s,
            "--url",
            "http://127.0.0.1:9",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(status["components"][0]["name"], "postgres");
    assert_eq!(status["components"][0]["ready"], true, "{status}");
    assert_eq!(status["backup"]["status"], "ok", "{status}");

    // A damaged backup file is refused before anything is touched.
    let base = dir.join("base.tar.gz");
    let mut bytes = std::fs::read(&base).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&base, bytes).unwrap();
    let refused = kiorexctl(
        node.dir.path(),
        &["restore", "--data-dir", data, "--from", target_s],
    );
    assert_eq!(refused.status, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("base.tar.gz") && refused.stderr.contains("KX-CTL-054"),
        "{}",
        refused.stderr
    );
    assert_eq!(node.sql("kiorex", "SELECT count(*) FROM record"), "601");
}
