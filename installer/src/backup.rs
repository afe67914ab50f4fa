//! `kiorexctl backup` / `restore` in single-node mode: a PostgreSQL base backup plus continuous
//! WAL archiving, so a restore can stop at any moment after the oldest kept base backup (the
//! RPO is `archive_timeout`, 60 s), and the configuration, secrets and PKI next to it.
//!
//! ```text
//! <target>/wal/                      WAL segments, written by PostgreSQL's archive_command
//! <target>/base/<id>/base.tar.gz     pg_basebackup (tar, compressed, WAL included)
//! <target>/base/<id>/config.tar      secrets/, and with --site the site config and pki/ (0600)
//! <target>/base/<id>/backup.json     when, which LSNs, SHA-256 of every file
//! ```

use crate::Output;
use crate::failure::{exit, fail};
use crate::single_node::{Layout, give_to_postgres, pg_command, postgres_bin, run_ok};
use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The single-node data directory (`kiorexctl up --data-dir`). The first backup turns on
    /// WAL archiving, which restarts PostgreSQL once: restart the core afterwards
    /// (`kiorexctl up --stop`, then `up --detach`), best right after installing.
    #[arg(long, default_value = ".kiorex")]
    data_dir: PathBuf,
    /// Where backups go (a directory, ideally another disk or an NFS mount).
    #[arg(long)]
    target: PathBuf,
    /// The site directory from `kiorexctl init` (its config and pki/ are saved too).
    #[arg(long)]
    site_dir: Option<PathBuf>,
    /// Delete base backups older than this many days once a newer one exists (WAL older than
    /// the oldest kept base backup goes with them).
    #[arg(long, default_value_t = 30)]
    retention_days: u32,
    /// The document objects too (with --objects-endpoint), or only them (objects), or only the
    /// database, secrets and config (database).
    #[arg(long, value_enum, default_value = "all")]
    parts: Parts,
    #[command(flatten)]
    pub objects: crate::objects_backup::ObjectsArgs,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

/// Which parts of Kiorex a backup or restore covers.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
pub enum Parts {
    /// The database, secrets and config, and the document objects when --objects-endpoint is set.
    All,
    /// The database (with WAL), secrets, site config and PKI.
    Database,
    /// The document objects only (needs --objects-endpoint).
    Objects,
}

impl Parts {
    fn database(self) -> bool {
        self != Parts::Objects
    }
}

/// The objects settings, completed from the site config. A site config that cannot be read
/// stops an objects-only run, but not the database backup of a full one (a warning instead).
fn objects_settings(
    parts: Parts,
    objects: &crate::objects_backup::ObjectsArgs,
    site_dir: Option<&Path>,
) -> Result<crate::objects_backup::ObjectsArgs> {
    match parts {
        Parts::Database => Ok(objects.clone()),
        Parts::Objects => objects.with_site(site_dir),
        Parts::All => Ok(objects.with_site(site_dir).unwrap_or_else(|e| {
            eprintln!("warning: document objects settings not read from the site config: {e:#}");
            objects.clone()
        })),
    }
}

/// The objects endpoint when the objects are part of this run; an error when only the objects
/// were asked for and no endpoint was given.
fn objects_endpoint(
    parts: Parts,
    objects: &crate::objects_backup::ObjectsArgs,
) -> Result<Option<String>> {
    match (parts, &objects.objects_endpoint) {
        (Parts::Database, _) => Ok(None),
        (Parts::Objects, None) => Err(fail(
            "KX-CTL-056",
            exit::FAILED,
            "--parts objects needs --objects-endpoint (or KIOREX_OBJECTS__ENDPOINT, or a site config with [ceph])",
        )),
        (_, endpoint) => Ok(endpoint.clone()),
    }
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The single-node data directory to restore into. Its current database is kept aside in
    /// postgres/data.before-restore-<time>, never deleted.
    #[arg(long, default_value = ".kiorex")]
    data_dir: PathBuf,
    /// The backup target given to `kiorexctl backup`.
    #[arg(long)]
    from: PathBuf,
    /// Restore the state as of this moment (RFC 3339, e.g. 2026-11-22T14:05:00Z); default: the
    /// latest archived state.
    #[arg(long)]
    to_time: Option<String>,
    /// Also put back the site directory's files (kiorex-site.toml, pki/, secrets/) that are
    /// missing there, e.g. after losing the management host. Existing files are left alone.
    #[arg(long)]
    site_dir: Option<PathBuf>,
    /// The document objects too (with --objects-endpoint), or only them (objects), or only the
    /// database, secrets and config (database).
    #[arg(long, value_enum, default_value = "all")]
    parts: Parts,
    #[command(flatten)]
    pub objects: crate::objects_backup::ObjectsArgs,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

const ARCHIVE_TIMEOUT_S: u32 = 60;

fn wal_dir(target: &Path) -> PathBuf {
    target.join("wal")
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let objects = objects_settings(args.parts, &args.objects, args.site_dir.as_deref())?;
    let endpoint = objects_endpoint(args.parts, &objects)?;
    let mut report = serde_json::Map::new();
    if args.parts.database() {
        report = backup_database(&args)?;
    }
    if let Some(endpoint) = endpoint {
        std::fs::create_dir_all(&args.target)?;
        let counts = crate::objects_backup::backup(&objects, &endpoint, &args.target, args.output)?;
        report_objects("backed up", &counts, args.output, &mut report)?;
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Prints the objects' counts (text) or adds them to the JSON report under `objects`.
fn report_objects(
    verb: &str,
    counts: &crate::objects_backup::Counts,
    output: Output,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    match output {
        Output::Json => {
            report.insert("objects".into(), serde_json::to_value(counts)?);
        }
        Output::Text => println!(
            "document objects {verb}: {} ({} copied, {} bytes; {} unchanged)",
            counts.objects, counts.copied, counts.bytes_copied, counts.unchanged
        ),
    }
    Ok(())
}

/// The database part; returns its JSON report (printed by the caller with the objects').
fn backup_database(args: &BackupArgs) -> Result<serde_json::Map<String, serde_json::Value>> {
    let layout = Layout::new(&args.data_dir)?;
    let bin = postgres_bin()?;
    if !layout.postgres_running(&bin) {
        return Err(fail(
            "KX-CTL-050",
            exit::FAILED,
            "PostgreSQL is not running; start it with `kiorexctl up --detach` and back up again",
        ));
    }
    let bar = crate::progress::spinner(args.output == Output::Text, "checking WAL archiving");
    std::fs::create_dir_all(wal_dir(&args.target))?;
    let target = args.target.canonicalize()?;
    give_to_postgres(&wal_dir(&target))?;
    let restarted = ensure_archiving(&layout, &bin, &wal_dir(&target))?;

    std::fs::create_dir_all(target.join("base"))?;
    // Backup ids are UTC seconds: a second backup within the same second waits for the next.
    let (started, id, dir) = loop {
        let started = OffsetDateTime::now_utc();
        let id = backup_id(started);
        let dir = target.join("base").join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => break (started, id, dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::thread::sleep(Duration::from_millis(250))
            }
            Err(e) => return Err(e.into()),
        }
    };
    // The base backup needs WAL from this segment on; older WAL can go once no kept backup needs it.
    let first_wal = layout.sql(
        &bin,
        "postgres",
        "SELECT pg_walfile_name(pg_current_wal_lsn())",
    )?;
    bar.set_message("copying the database (pg_basebackup)");
    run_ok(
        std::process::Command::new(bin.join("pg_basebackup"))
            .arg("-h")
            .arg(layout.pg_run())
            .args(["-U", "kiorex", "-D"])
            .arg(&dir)
            .args([
                "-Ft",
                "-z",
                "-X",
                "fetch",
                "--checkpoint=fast",
                "--no-password",
                "-l",
            ])
            .arg(format!("kiorex-{id}"))
            .env("PGPASSWORD", layout.database_password()?),
        "pg_basebackup",
    )?;
    bar.set_message("saving configuration, secrets and PKI");
    save_config(&layout, args.site_dir.as_deref(), &dir.join("config.tar"))?;
    bar.set_message("waiting for the last WAL segment to be archived");
    let lsn = layout.sql(&bin, "postgres", "SELECT pg_current_wal_lsn()")?;
    let segment = layout.sql(&bin, "postgres", "SELECT pg_walfile_name(pg_switch_wal())")?;
    wait_archived(&layout, &bin, &segment)?;

    let files = checksums(&dir)?;
    let info = json!({
        "id": id, "started": started.format(&Rfc3339)?, "finished": OffsetDateTime::now_utc().format(&Rfc3339)?,
        "postgres_version": layout.sql(&bin, "postgres", "SHOW server_version")?,
        "end_lsn": lsn, "first_wal": first_wal, "last_archived_wal": segment, "files": files,
        "site_config": args.site_dir.is_some(),
    });
    std::fs::write(
        dir.join("backup.json"),
        serde_json::to_string_pretty(&info)?,
    )?;
    let removed = prune(&target, args.retention_days, started)?;
    bar.finish_and_clear();
    let report =
        json!({"backup": info, "dir": dir, "archiving_enabled_now": restarted, "pruned": removed});
    if args.output == Output::Text {
        if restarted {
            println!("turned on WAL archiving (PostgreSQL restarted once)");
        }
        println!("backup {id} written to {}", dir.display());
        println!(
            "WAL is archived to {} at least every {ARCHIVE_TIMEOUT_S} s",
            wal_dir(&target).display()
        );
        for r in &removed {
            println!("removed old backup {r}");
        }
    }
    Ok(report.as_object().cloned().unwrap_or_default())
}

fn backup_id(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Turns on archive_mode (needs one restart) and points archive_command at the target.
fn ensure_archiving(layout: &Layout, bin: &Path, wal: &Path) -> Result<bool> {
    let command = format!("test ! -f '{0}/%f' && cp '%p' '{0}/%f'", wal.display());
    let current_mode = layout.sql(bin, "postgres", "SHOW archive_mode")?;
    let current_command = layout.sql(bin, "postgres", "SHOW archive_command")?;
    if current_command != command {
        layout.sql(
            bin,
            "postgres",
            &format!(
                "ALTER SYSTEM SET archive_command = '{}'",
                command.replace('\'', "''")
            ),
        )?;
        layout.sql(
            bin,
            "postgres",
            &format!("ALTER SYSTEM SET archive_timeout = '{ARCHIVE_TIMEOUT_S}s'"),
        )?;
        layout.sql(bin, "postgres", "SELECT pg_reload_conf()")?;
    }
    if current_mode == "on" {
        return Ok(false);
    }
    layout.sql(bin, "postgres", "ALTER SYSTEM SET archive_mode = 'on'")?;
    // `pg_ctl restart` reuses the options of the running server (no TCP, socket directory).
    run_ok(
        // With -l the server's output goes to the log, not to a pipe we would wait on.
        pg_command(bin, "pg_ctl")
            .args(["restart", "-w", "-m", "fast", "-D"])
            .arg(layout.pg_data())
            .arg("-l")
            .arg(layout.logs().join("postgres.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        "pg_ctl restart",
    )?;
    Ok(true)
}

fn wait_archived(layout: &Layout, bin: &Path, segment: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let archived = layout.sql(bin, "postgres", "SELECT coalesce(last_archived_wal, '') || ' ' || failed_count || ' ' || coalesce(last_failed_wal, '') FROM pg_stat_archiver")?;
        let mut parts = archived.split(' ');
        let last = parts.next().unwrap_or_default();
        if !last.is_empty() && last >= segment {
            return Ok(());
        }
        if parts.next().is_some_and(|f| f != "0") && parts.next() == Some(segment) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(fail(
        "KX-CTL-051",
        exit::FAILED,
        format!(
            "PostgreSQL could not archive WAL segment {segment}; check that the postgres account can write the backup target, and see logs/postgres.log"
        ),
    ))
}

fn save_config(layout: &Layout, site_dir: Option<&Path>, out: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)?;
    let mut tar = tar::Builder::new(file);
    tar.append_dir_all("data-dir/secrets", layout.secrets())?;
    if let Some(site) = site_dir {
        let config = site.join(crate::site::FILE_NAME);
        if config.exists() {
            tar.append_path_with_name(&config, format!("site/{}", crate::site::FILE_NAME))?;
        }
        for sub in ["pki", "secrets"] {
            if site.join(sub).is_dir() {
                tar.append_dir_all(format!("site/{sub}"), site.join(sub))?;
            }
        }
    }
    tar.into_inner()?.sync_all()?;
    Ok(())
}

fn checksums(dir: &Path) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(e.path())?, &mut hasher)?;
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            hex::encode(hasher.finalize()).into(),
        );
    }
    Ok(out.into())
}

/// Base backups, oldest first, as (id, directory).
pub fn base_backups(target: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(target.join("base"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("backup.json").exists())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

pub fn parse_id(id: &str) -> Option<OffsetDateTime> {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(id, &f)
        .ok()
        .map(|t| t.assume_utc())
}

/// Removes base backups older than the retention, always keeping the newest; then WAL older
/// than the oldest kept base backup.
fn prune(target: &Path, days: u32, now: OffsetDateTime) -> Result<Vec<String>> {
    let backups = base_backups(target);
    let cutoff = now - time::Duration::days(i64::from(days));
    let mut removed = Vec::new();
    for (id, dir) in backups.iter().take(backups.len().saturating_sub(1)) {
        if parse_id(id).is_some_and(|t| t < cutoff) {
            std::fs::remove_dir_all(dir)?;
            removed.push(id.clone());
        }
    }
    let oldest_needs = base_backups(target).first().and_then(|(_, dir)| {
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("backup.json")).ok()?).ok()?;
        info["first_wal"].as_str().map(str::to_owned)
    });
    if let Some(first) = oldest_needs {
        let names: Vec<String> = std::fs::read_dir(wal_dir(target))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in wal_to_prune(&names, &first) {
            std::fs::remove_file(wal_dir(target).join(name))?;
        }
    }
    Ok(removed)
}

/// WAL segment files older than `keep_from` (names are timeline + position in hex, so they sort
/// in WAL order). Timeline history files are always kept: recovery reads them.
pub fn wal_to_prune(names: &[String], keep_from: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            n.len() >= 24
                && n[..24].bytes().all(|b| b.is_ascii_hexdigit())
                && !n.ends_with(".history")
        })
        .filter(|n| &n[..24] < keep_from)
        .cloned()
        .collect()
}

pub fn restore(args: RestoreArgs) -> Result<()> {
    let objects = objects_settings(args.parts, &args.objects, args.site_dir.as_deref())?;
    let mut endpoint = objects_endpoint(args.parts, &objects)?;
    // A full restore of a backup taken without the objects restores the rest and says so.
    if args.parts == Parts::All
        && endpoint.is_some()
        && !args.from.join("objects/manifest.json").exists()
    {
        eprintln!(
            "warning: {} holds no document objects; restoring the database only",
            args.from.display()
        );
        endpoint = None;
    }
    // The objects go back first: a damaged object stops the restore before the database is
    // touched, and the restored core then finds every document its rows name.
    let mut report = serde_json::Map::new();
    if let Some(endpoint) = endpoint {
        let counts = crate::objects_backup::restore(&objects, &endpoint, &args.from, args.output)?;
        report_objects("restored", &counts, args.output, &mut report)?;
    }
    if args.parts.database() {
        report.extend(restore_database(&args)?);
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// The database part; returns its JSON report (printed by the caller with the objects').
fn restore_database(args: &RestoreArgs) -> Result<serde_json::Map<String, serde_json::Value>> {
    let layout = Layout::new(&args.data_dir)?;
    let bin = postgres_bin()?;
    let from = args
        .from
        .canonicalize()
        .with_context(|| format!("no backups at {}", args.from.display()))?;
    let target_time = match &args.to_time {
        Some(t) => Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
            fail(
                "KX-CTL-052",
                exit::FAILED,
                format!("--to-time {t:?} is not an RFC 3339 time like 2026-11-22T14:05:00Z: {e}"),
            )
        })?),
        None => None,
    };
    let (id, dir) = choose_base(&base_backups(&from), target_time).ok_or_else(|| {
        fail(
            "KX-CTL-053",
            exit::FAILED,
            format!(
                "no base backup in {} started before the requested time",
                from.display()
            ),
        )
    })?;
    verify_backup(&dir)?;

    let bar = crate::progress::spinner(args.output == Output::Text, "stopping Kiorex");
    let core_was_running = layout.stop_roles();
    layout.stop_postgres(&bin)?;
    let stamp = backup_id(OffsetDateTime::now_utc());
    let kept = layout
        .root
        .join(format!("postgres/data.before-restore-{stamp}"));
    if layout.pg_data().exists() {
        std::fs::rename(layout.pg_data(), &kept)?;
    }
    bar.set_message(format!("unpacking base backup {id}"));
    unpack_base(&dir, &layout.pg_data())?;
    let put_back =
        restore_missing_files(&layout, args.site_dir.as_deref(), &dir.join("config.tar"))?;
    let pg_time = target_time.map(postgres_time).transpose()?;
    write_recovery(&layout, &wal_dir(&from), pg_time.as_deref())?;
    give_to_postgres(&layout.pg_data())?;
    bar.set_message("replaying WAL");
    layout.start_postgres(&bin)?;
    wait_promoted(&layout, &bin)?;
    for key in [
        "restore_command",
        "recovery_target_time",
        "recovery_target_action",
    ] {
        layout.sql(&bin, "postgres", &format!("ALTER SYSTEM RESET {key}"))?;
    }
    layout.sql(&bin, "postgres", "SELECT pg_reload_conf()")?;
    bar.finish_and_clear();
    let report = json!({"restored_from": id, "to_time": args.to_time, "previous_data_kept_in": kept,
                        "core_was_running": core_was_running, "files_put_back": put_back});
    if args.output == Output::Text {
        println!(
            "restored base backup {id}{}",
            args.to_time
                .as_ref()
                .map(|t| format!(" to {t}"))
                .unwrap_or_default()
        );
        println!("the previous database is kept in {}", kept.display());
        println!(
            "start Kiorex again: kiorexctl up --detach --data-dir {}",
            layout.root.display()
        );
    }
    Ok(report.as_object().cloned().unwrap_or_default())
}

/// The newest base backup started before `at` (the newest of all without a time).
pub fn choose_base(
    backups: &[(String, PathBuf)],
    at: Option<OffsetDateTime>,
) -> Option<(String, PathBuf)> {
    backups
        .iter()
        .rev()
        .find(|(id, _)| match (at, parse_id(id)) {
            (None, _) => true,
            (Some(at), Some(t)) => t <= at,
            (Some(_), None) => false,
        })
        .cloned()
}

fn verify_backup(dir: &Path) -> Result<()> {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("backup.json"))?)?;
    for (name, want) in info["files"].as_object().into_iter().flatten() {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(dir.join(name))?, &mut hasher)?;
        if want.as_str() != Some(&hex::encode(hasher.finalize())) {
            return Err(fail(
                "KX-CTL-054",
                exit::NOT_AUTHENTIC,
                format!(
                    "{} in backup {} was changed or damaged",
                    name,
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

fn unpack_base(dir: &Path, data: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data)?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    for (file, into) in [
        ("base.tar.gz", data.to_owned()),
        ("pg_wal.tar.gz", data.join("pg_wal")),
    ] {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        std::fs::create_dir_all(&into)?;
        let mut archive =
            tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&path)?));
        archive.set_preserve_permissions(true);
        archive
            .unpack(&into)
            .with_context(|| format!("cannot unpack {}", path.display()))?;
    }
    Ok(())
}

/// Writes the saved secrets (and, with a site directory, the site's files) that are missing;
/// returns their paths. Everything is written with mode 0600 except certificates.
fn restore_missing_files(
    layout: &Layout,
    site_dir: Option<&Path>,
    config: &Path,
) -> Result<Vec<PathBuf>> {
    let mut archive = tar::Archive::new(std::fs::File::open(config)?);
    let mut put_back = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let dest = if let Ok(rel) = path.strip_prefix("data-dir/secrets") {
            layout.secrets().join(rel)
        } else if let (Some(site), Ok(rel)) = (site_dir, path.strip_prefix("site")) {
            site.join(rel)
        } else {
            continue;
        };
        if !entry.header().entry_type().is_file() || dest.exists() {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        if dest.extension().is_some_and(|e| e == "crt" || e == "toml") {
            std::fs::create_dir_all(dest.parent().unwrap_or(Path::new(".")))?;
            std::fs::write(&dest, &data)?;
        } else {
            crate::files::write_secret(&dest, &data)?;
        }
        put_back.push(dest);
    }
    Ok(put_back)
}

/// PostgreSQL's recovery_target_time wants `YYYY-MM-DD HH:MM:SS.ffffff+00`, not RFC 3339.
fn postgres_time(t: OffsetDateTime) -> Result<String> {
    let f = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
    );
    Ok(t.to_offset(time::UtcOffset::UTC).format(&f)?)
}

fn write_recovery(layout: &Layout, wal: &Path, to_time: Option<&str>) -> Result<()> {
    use std::io::Write;
    let data = layout.pg_data();
    std::fs::write(data.join("recovery.signal"), "")?;
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(data.join("postgresql.auto.conf"))?;
    writeln!(
        conf,
        "restore_command = 'cp ''{}/%f'' ''%p'''",
        wal.display()
    )?;
    writeln!(conf, "recovery_target_action = 'promote'")?;
    if let Some(t) = to_time {
        writeln!(conf, "recovery_target_time = '{}'", t.replace('\'', ""))?;
    }
    Ok(())
}

fn wait_promoted(layout: &Layout, bin: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if layout
            .sql(bin, "postgres", "SELECT pg_is_in_recovery()")
            .is_ok_and(|r| r == "f")
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(fail(
        "KX-CTL-055",
        exit::FAILED,
        "PostgreSQL did not finish recovery within 5 minutes; see logs/postgres.log",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_older_than_the_oldest_kept_backup_is_pruned_but_history_is_kept() {
        let names: Vec<String> = [
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005.00000028.backup",
            "000000010000000000000006",
            "00000002.history",
            "archive_status",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            wal_to_prune(&names, "000000010000000000000005"),
            ["000000010000000000000003", "000000010000000000000004"]
        );
    }

    #[test]
    fn the_base_backup_is_the_newest_that_started_before_the_target() {
        let b = |id: &str| (id.to_owned(), PathBuf::from(id));
        let backups = vec![
            b("20261101T000000Z"),
            b("20261110T000000Z"),
            b("20261120T000000Z"),
        ];
        let at = |s: &str| Some(OffsetDateTime::parse(s, &Rfc3339).unwrap());
        assert_eq!(
            choose_base(&backups, at("2026-11-15T12:00:00Z")).unwrap().0,
            "20261110T000000Z"
        );
        assert_eq!(choose_base(&backups, None).unwrap().0, "20261120T000000Z");
        assert!(choose_base(&backups, at("2026-10-01T00:00:00Z")).is_none());
        assert_eq!(
            backup_id(parse_id("20261110T010203Z").unwrap()),
            "20261110T010203Z"
        );
        let t = OffsetDateTime::parse("2026-11-22T16:05:00.25+02:00", &Rfc3339).unwrap();
        assert_eq!(postgres_time(t).unwrap(), "2026-11-22 14:05:00.250000+00");
    }
}
