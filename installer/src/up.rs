//! Single-node mode: PostgreSQL in the data directory (on a Unix socket only, password auth),
//! `kiorex migrate`, a demo facility and administrator, `kiorex serve core` (with its internal
//! mutual-TLS listener), `kiorex serve edge` beside it as a separate process with no database
//! settings, the nftables ruleset for the zones, and synthetic patients on first start. Safe to
//! run again: what exists is reused.

mod pki;
pub mod zones;

use crate::Output;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the appliance keeps its database, keys and logs.
    #[arg(long, default_value = ".kiorex")]
    data_dir: PathBuf,
    /// Address the core API listens on; 127.0.0.1 keeps it to this machine, 0.0.0.0 opens it to the LAN.
    #[arg(long, default_value = "127.0.0.1")]
    listen: String,
    /// Port of the core API.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of the edge (TLS), the way in for partners; it listens on the same address as core.
    #[arg(long, default_value_t = 8443)]
    edge_port: u16,
    /// Port of core's internal mutual-TLS listener for the edge (always on 127.0.0.1).
    #[arg(long, default_value_t = 9443)]
    internal_port: u16,
    /// Port of the edge's metrics and health (plain HTTP, on 127.0.0.1).
    #[arg(long, default_value_t = 9464)]
    edge_admin_port: u16,
    /// Port of core's metrics (Prometheus) and health (plain HTTP, on 127.0.0.1).
    #[arg(long, default_value_t = 8081)]
    core_admin_port: u16,
    /// Port of the worker's metrics and health (plain HTTP, on 127.0.0.1). The worker delivers
    /// the outbox: search indexing and, later, notifications and messages to partners.
    #[arg(long, default_value_t = 8082)]
    worker_port: u16,
    /// Do not start the edge.
    #[arg(long)]
    no_edge: bool,
    /// When run as root: the system user the edge runs as (created if missing). The zone
    /// firewall tells the edge apart from the other roles by it.
    #[arg(long, default_value = "kiorex-edge")]
    edge_user: String,
    /// When run as root: the system user core (and the worker) run as (created if missing).
    #[arg(long, default_value = "kiorex")]
    core_user: String,
    /// The zone firewall (nftables table `inet kiorex_zones`): `auto` loads it when run as root,
    /// `load` insists, `write` only writes the file for the administrator to load.
    #[arg(long, value_enum, default_value = "auto")]
    firewall: zones::Firewall,
    /// Synthetic patients (with encounters, vitals, diagnoses …) to load on first start; 0 for none.
    #[arg(long, default_value_t = 300)]
    demo_patients: usize,
    /// The kiorex binary (default: the one next to kiorexctl).
    #[arg(long)]
    kiorex_bin: Option<PathBuf>,
    /// Start, print the details and return, leaving the services running (stop with `kiorexctl up --stop`).
    #[arg(long)]
    detach: bool,
    /// Stop services started with --detach.
    #[arg(long)]
    stop: bool,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

const ADMIN: &str = "admin";
const FACILITY_CODE: &str = "DEMO";

/// The layout of the data directory.
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn pg_data(&self) -> PathBuf {
        self.root.join("postgres/data")
    }
    fn pg_run(&self) -> PathBuf {
        self.root.join("postgres/run")
    }
    fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    fn core_pid(&self) -> PathBuf {
        self.root.join("core.pid")
    }
    fn edge_pid(&self) -> PathBuf {
        self.root.join("edge.pid")
    }
    fn worker_pid(&self) -> PathBuf {
        self.root.join("worker.pid")
    }
    fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    fn ruleset(&self) -> PathBuf {
        self.root.join("nftables/kiorex-zones.nft")
    }
}

pub fn run(args: UpArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let layout = Layout {
        root: args.data_dir.canonicalize()?,
    };
    if args.stop {
        return stop(&layout, &args);
    }
    let progress = Steps::new(args.output == Output::Text);
    let kiorex = kiorex_binary(args.kiorex_bin.clone())?;
    let bin = postgres_bin()?;
    let accounts = role_accounts(&args, &layout, &kiorex)?;

    progress.step("PostgreSQL");
    let database_url = start_postgres(&layout, &bin)?;
    let key = layout.secrets().join("token-signing-key.pem");
    progress.step("certificates");
    let certs = pki::ensure(&layout.pki())?;
    let env = CoreEnv {
        database_url,
        key: key.clone(),
        listen: format!("{}:{}", args.listen, args.port),
        admin_listen: format!("127.0.0.1:{}", args.core_admin_port),
        internal: internal_env(&args, &certs),
    };
    if !key.exists() {
        env.kiorex(&kiorex, &["keygen", "--out", path(&key)?])?;
    }
    let public_key = layout.secrets().join("token-public-key.pem");
    write_public_key(&key, &public_key)?;
    progress.step("database migrations");
    env.kiorex(&kiorex, &["migrate"])?;
    progress.step("demo facility and administrator");
    env.kiorex(
        &kiorex,
        &[
            "facility",
            "create",
            "--code",
            FACILITY_CODE,
            "--name",
            "Kiorex Demo Hospital",
        ],
    )?;
    let password = admin_password(&layout)?;
    env.kiorex(
        &kiorex,
        &[
            "user",
            "create",
            "--username",
            ADMIN,
            "--display-name",
            "Demo Administrator",
            "--password-file",
            path(&layout.secrets().join("admin-password"))?,
            "--grant",
            &format!("administrator@{FACILITY_CODE}"),
        ],
    )?;

    hand_over_files(&layout, &certs, &key, &accounts)?;
    // A role left from an earlier detached run (say, the edge after a restore stopped core)
    // would hold its port and be orphaned by a new pid file.
    stop_detached_roles(&layout);
    progress.step("core");
    let mut core = env.start_core(&kiorex, &layout, args.detach, accounts.core.as_ref())?;
    let base = format!(
        "http://{}:{}",
        if args.listen == "0.0.0.0" {
            "127.0.0.1"
        } else {
            &args.listen
        },
        args.port
    );
    wait_ready(&base, &mut core, "core")?;
    if args.detach {
        std::fs::write(layout.core_pid(), core.id().to_string())?;
    }
    progress.step("worker");
    let mut worker = env.start_worker(&kiorex, &layout, &args, accounts.core.as_ref())?;
    if args.detach {
        std::fs::write(layout.worker_pid(), worker.id().to_string())?;
    }
    if let Err(e) = wait_ready(
        &format!("http://127.0.0.1:{}", args.worker_port),
        &mut worker,
        "worker",
    ) {
        terminate(&mut core);
        return Err(e);
    }
    write_ruleset(&args, &layout, &accounts)?;
    let firewall_loaded = match zones::apply(args.firewall, &layout.ruleset(), &accounts) {
        Ok(loaded) => loaded,
        Err(e) => {
            terminate(&mut core);
            return Err(e);
        }
    };
    let mut edge = None;
    if !args.no_edge {
        progress.step("edge");
        let mut child = start_edge(
            &kiorex,
            &layout,
            &args,
            &certs,
            &public_key,
            accounts.edge.as_ref(),
        )?;
        if args.detach {
            std::fs::write(layout.edge_pid(), child.id().to_string())?;
        }
        let health = format!("http://127.0.0.1:{}", args.edge_admin_port);
        if let Err(e) = wait_ready(&health, &mut child, "edge") {
            terminate(&mut worker);
            terminate(&mut core);
            return Err(e);
        }
        edge = Some(child);
    }
    let marker = layout.root.join("demo-loaded");
    if args.demo_patients > 0 && !marker.exists() {
        progress.step(&format!("loading {} demo patients", args.demo_patients));
        load_demo(
            &base,
            &password,
            args.demo_patients,
            args.output == Output::Text,
        )?;
        std::fs::write(&marker, args.demo_patients.to_string())?;
    }
    report(&args, &layout, &base, &password, &accounts, firewall_loaded);
    if args.detach {
        return Ok(());
    }
    wait_for_stop_signal();
    eprintln!("stopping …");
    if let Some(edge) = edge.as_mut() {
        terminate(edge);
    }
    terminate(&mut worker);
    terminate(&mut core);
    stop_postgres(&layout, &bin);
    Ok(())
}

/// Prints numbered steps (text mode only).
struct Steps {
    show: bool,
    started: Instant,
}

impl Steps {
    fn new(show: bool) -> Steps {
        Steps {
            show,
            started: Instant::now(),
        }
    }
    fn step(&self, what: &str) {
        if self.show {
            eprintln!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
        }
    }
}

fn report(
    args: &UpArgs,
    layout: &Layout,
    base: &str,
    password: &str,
    accounts: &zones::RoleAccounts,
    firewall_loaded: bool,
) {
    let password_file = layout.secrets().join("admin-password");
    let edge = (!args.no_edge).then(|| format!("https://localhost:{}", args.edge_port));
    let user_of = |a: &Option<zones::Account>| a.as_ref().map(|a| a.name.clone());
    match args.output {
        Output::Json => println!(
            "{}",
            json!({"url": base, "fhir": format!("{base}/fhir"), "openapi": format!("{base}/api/v1/openapi.json"),
                   "username": ADMIN, "password_file": password_file, "facility": FACILITY_CODE, "data_dir": layout.root, "detached": args.detach,
                   "edge": edge, "edge_ca_file": layout.pki().join("public-ca.pem"), "nftables_ruleset": layout.ruleset(),
                   "firewall_loaded": firewall_loaded, "portal": format!("{base}/"),
                   "worker": format!("http://127.0.0.1:{}", args.worker_port),
                   "core_metrics": format!("http://127.0.0.1:{}/metrics", args.core_admin_port),
                   "role_users": {"edge": user_of(&accounts.edge), "core": user_of(&accounts.core)}})
        ),
        Output::Text => {
            println!();
            println!("Kiorex is running (single node).");
            println!("  Staff portal:  {base}/");
            println!("  Core API:      {base}   (health: {base}/health/ready)");
            println!("  FHIR R4:       {base}/fhir/metadata");
            println!("  REST OpenAPI:  {base}/api/v1/openapi.json");
            println!(
                "  Demo login:    {ADMIN} / {password}   (facility {FACILITY_CODE}; also in {})",
                password_file.display()
            );
            println!(
                "  Try:           curl -s -X POST {base}/api/v1/auth/token -H 'content-type: application/json' \\"
            );
            println!(
                "                   -d '{{\"username\":\"{ADMIN}\",\"password\":\"{password}\"}}'"
            );
            if let Some(edge) = &edge {
                println!(
                    "  Edge (DMZ):    {edge}/fhir/metadata   (partner FHIR API; CA: {})",
                    layout.pki().join("public-ca.pem").display()
                );
            }
            if firewall_loaded {
                println!(
                    "  Zone firewall: loaded (nftables table inet {}; edge runs as {}, core as {})",
                    kiorex_zones::TABLE,
                    user_of(&accounts.edge).unwrap_or_default(),
                    user_of(&accounts.core).unwrap_or_default()
                );
            } else {
                println!(
                    "  Zone firewall: {}   (not loaded; as root: sudo kiorexctl up, or sudo nft -f <that file>)",
                    layout.ruleset().display()
                );
            }
            println!(
                "  Worker:        http://127.0.0.1:{}/health/ready   (delivers the outbox: search indexing)",
                args.worker_port
            );
            println!(
                "  Metrics:       http://127.0.0.1:{}/metrics   (core; Prometheus)",
                args.core_admin_port
            );
            println!("  Data and logs: {}", layout.root.display());
            if args.detach {
                println!(
                    "Stop it with: kiorexctl up --stop --data-dir {}",
                    layout.root.display()
                );
            } else {
                println!("Press Ctrl-C to stop.");
            }
        }
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not valid UTF-8", p.display()))
}

fn kiorex_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    let candidate = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("kiorex"))
            .context("cannot locate kiorex")?,
    };
    if !candidate.exists() {
        bail!(
            "the kiorex binary is not at {} (build it, or pass --kiorex-bin)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// The PostgreSQL server binaries of this machine.
fn postgres_bin() -> Result<PathBuf> {
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
    found.pop().context("PostgreSQL server is not installed (KX-UP-001): on Debian/Ubuntu run `apt-get install postgresql`")
}

/// The unprivileged account PostgreSQL runs as when we are root (it refuses to run as root).
fn postgres_user() -> Option<(u32, u32)> {
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

fn pg_command(program: PathBuf) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = postgres_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn owned_by_postgres(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Some((uid, gid)) = postgres_user() {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn secret_file(path: &Path, content: &str) -> Result<()> {
    let dir = path.parent().context("secret path")?;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(path, content)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn random_secret(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// Creates the cluster on first run (password auth, Unix socket only) and starts it; returns
/// the database URL.
fn start_postgres(layout: &Layout, bin: &Path) -> Result<String> {
    let url_file = layout.secrets().join("database-url");
    let data = layout.pg_data();
    owned_by_postgres(&layout.root.join("postgres"))?;
    owned_by_postgres(&layout.pg_run())?;
    owned_by_postgres(&layout.logs())?;
    if !data.join("PG_VERSION").exists() {
        let password = random_secret(24);
        let pwfile = layout.root.join("postgres/.pwfile");
        std::fs::write(&pwfile, &password)?;
        if let Some((uid, gid)) = postgres_user() {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        let init = pg_command(bin.join("initdb"))
            .args([
                "-D",
                path(&data)?,
                "-U",
                "kiorex",
                "-A",
                "scram-sha-256",
                "--pwfile",
                path(&pwfile)?,
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()?;
        let _ = std::fs::remove_file(&pwfile);
        if !init.status.success() {
            bail!(
                "initdb failed (KX-UP-002): {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        secret_file(
            &url_file,
            &format!(
                "postgres://kiorex:{password}@localhost/kiorex?host={}",
                layout.pg_run().display()
            ),
        )?;
    }
    let running = pg_command(bin.join("pg_ctl"))
        .args(["status", "-D", path(&data)?])
        .output()?
        .status
        .success();
    if !running {
        let log = layout.logs().join("postgres.log");
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}'",
            layout.pg_run().display()
        );
        let start = pg_command(bin.join("pg_ctl"))
            .args([
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path(&data)?,
                "-l",
                path(&log)?,
                "-o",
                &options,
            ])
            .stdout(Stdio::null())
            .output()?;
        if !start.status.success() {
            bail!(
                "PostgreSQL did not start (KX-UP-003); see {}",
                log.display()
            );
        }
    }
    let url = std::fs::read_to_string(&url_file)
        .with_context(|| format!("missing {}", url_file.display()))?;
    ensure_database(bin, layout, &url)?;
    Ok(url)
}

/// Creates the `kiorex` database if it does not exist yet.
fn ensure_database(bin: &Path, layout: &Layout, url: &str) -> Result<()> {
    let password = url
        .split(':')
        .nth(2)
        .and_then(|s| s.split('@').next())
        .unwrap_or_default();
    let psql = |sql: &str| {
        Command::new(bin.join("psql"))
            .args([
                "-h",
                path(&layout.pg_run()).unwrap_or_default(),
                "-U",
                "kiorex",
                "-d",
                "postgres",
                "-tAc",
                sql,
            ])
            .env("PGPASSWORD", password)
            .output()
    };
    let exists = psql("SELECT 1 FROM pg_database WHERE datname = 'kiorex'")?;
    if !String::from_utf8_lossy(&exists.stdout).contains('1') {
        let created = psql("CREATE DATABASE kiorex")?;
        if !created.status.success() {
            bail!(
                "cannot create the kiorex database: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
    }
    Ok(())
}

fn stop_postgres(layout: &Layout, bin: &Path) {
    if let Ok(data) = path(&layout.pg_data()) {
        let _ = pg_command(bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-D", data])
            .stdout(Stdio::null())
            .status();
    }
}

fn admin_password(layout: &Layout) -> Result<String> {
    let file = layout.secrets().join("admin-password");
    if let Ok(existing) = std::fs::read_to_string(&file) {
        return Ok(existing.trim().to_owned());
    }
    let password = random_secret(16);
    secret_file(&file, &password)?;
    Ok(password)
}

/// How kiorex is configured in single-node mode: environment variables, secrets in files.
struct CoreEnv {
    database_url: String,
    key: PathBuf,
    listen: String,
    /// `server.admin_listen`: core's /metrics and /health/*.
    admin_listen: String,
    /// `[core.internal]`: the listener the edge forwards to.
    internal: Vec<(String, String)>,
}

fn internal_env(args: &UpArgs, certs: &pki::Files) -> Vec<(String, String)> {
    if args.no_edge {
        return Vec::new();
    }
    let file = |p: &Path| p.display().to_string();
    vec![
        (
            "KIOREX_CORE__INTERNAL__LISTEN".into(),
            format!("127.0.0.1:{}", args.internal_port),
        ),
        (
            "KIOREX_CORE__INTERNAL__CERT_FILE".into(),
            file(&certs.core_cert),
        ),
        (
            "KIOREX_CORE__INTERNAL__KEY_FILE".into(),
            file(&certs.core_key),
        ),
        (
            "KIOREX_CORE__INTERNAL__CLIENT_CA_FILE".into(),
            file(&certs.internal_ca),
        ),
        (
            "KIOREX_CORE__INTERNAL__ALLOWED_CLIENT_NAMES".into(),
            format!("[\"{}\"]", pki::EDGE_CLIENT_NAME),
        ),
    ]
}

/// The edge verifies tokens with core's public key only.
fn write_public_key(private: &Path, public: &Path) -> Result<()> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let pem = std::fs::read_to_string(private)?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", private.display()))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(public, public_pem)?;
    Ok(())
}

/// The roles' own users when run as root and they can reach the data directory and the binary.
/// If they cannot (a clone under a private home, say), `auto` runs every role as root with a
/// warning and does not load the firewall; `load` refuses.
fn role_accounts(args: &UpArgs, layout: &Layout, kiorex: &Path) -> Result<zones::RoleAccounts> {
    if !zones::is_root() {
        return Ok(zones::RoleAccounts::default());
    }
    std::fs::set_permissions(&layout.root, std::fs::Permissions::from_mode(0o711))?;
    let reachable =
        zones::reachable_by_roles(&layout.pki()).and_then(|()| zones::reachable_by_roles(kiorex));
    match reachable {
        Ok(()) => zones::role_accounts(&args.edge_user, &args.core_user),
        Err(e) if args.firewall != zones::Firewall::Load => {
            eprintln!(
                "warning: every role runs as root and the zone firewall is not loaded: {e:#}"
            );
            Ok(zones::RoleAccounts::default())
        }
        Err(e) => Err(e),
    }
}

/// Gives each role the files it needs and no others (as root only): core its token-signing key
/// and internal certificate key, the edge its certificate keys; the PostgreSQL socket directory
/// opens to core's group only, so the edge's user cannot even knock on the database.
fn hand_over_files(
    layout: &Layout,
    certs: &pki::Files,
    signing_key: &Path,
    accounts: &zones::RoleAccounts,
) -> Result<()> {
    let (Some(core), Some(edge)) = (accounts.core.as_ref(), accounts.edge.as_ref()) else {
        return Ok(());
    };
    for dir in [layout.secrets(), layout.pki()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    }
    zones::hand_over(signing_key, Some(core), 0o600)?;
    zones::hand_over(&certs.core_key, Some(core), 0o600)?;
    zones::hand_over(&certs.edge_key, Some(edge), 0o600)?;
    zones::hand_over(&certs.edge_client_key, Some(edge), 0o600)?;
    for public in [
        &certs.internal_ca,
        &certs.core_cert,
        &certs.edge_cert,
        &certs.edge_client_cert,
        &certs.public_ca,
        &layout.secrets().join("token-public-key.pem"),
    ] {
        std::fs::set_permissions(public, std::fs::Permissions::from_mode(0o644))?;
    }
    if let Some(postgres) = postgres_user() {
        std::os::unix::fs::chown(layout.pg_run(), Some(postgres.0), Some(core.gid))?;
        std::fs::set_permissions(layout.pg_run(), std::fs::Permissions::from_mode(0o750))?;
    }
    Ok(())
}

/// `kiorex serve edge` with its own environment: no database URL, no signing key.
fn start_edge(
    kiorex: &Path,
    layout: &Layout,
    args: &UpArgs,
    certs: &pki::Files,
    public_key: &Path,
    account: Option<&zones::Account>,
) -> Result<Child> {
    let mut cmd = Command::new(kiorex);
    cmd.args(["serve", "edge"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "KIOREX_EDGE__LISTEN",
            format!("{}:{}", args.listen, args.edge_port),
        )
        .env(
            "KIOREX_EDGE__ADMIN_LISTEN",
            format!("127.0.0.1:{}", args.edge_admin_port),
        )
        .env("KIOREX_EDGE__CERT_FILE", &certs.edge_cert)
        .env("KIOREX_EDGE__KEY_FILE", &certs.edge_key)
        .env(
            "KIOREX_EDGE__CORE_URL",
            format!("https://127.0.0.1:{}", args.internal_port),
        )
        .env("KIOREX_EDGE__CORE_CA_FILE", &certs.internal_ca)
        .env("KIOREX_EDGE__CLIENT_CERT_FILE", &certs.edge_client_cert)
        .env("KIOREX_EDGE__CLIENT_KEY_FILE", &certs.edge_client_key)
        .env("KIOREX_EDGE__TOKEN_PUBLIC_KEY_FILE", public_key)
        .stdin(Stdio::null());
    spawn_role(cmd, layout, "edge", account, args.detach)
}

/// Starts a role with its output appended to `logs/<role>.log`, as `account` when given, and in
/// its own process group when detached (Ctrl-C in this terminal later does not stop it).
fn spawn_role(
    mut cmd: Command,
    layout: &Layout,
    role: &str,
    account: Option<&zones::Account>,
    detach: bool,
) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.logs().join(format!("{role}.log")))?;
    cmd.stdout(log.try_clone()?).stderr(log);
    if let Some(account) = account {
        cmd.uid(account.uid).gid(account.gid);
    }
    if detach {
        cmd.process_group(0);
    }
    Ok(cmd.spawn()?)
}

/// Writes the zone ruleset for this host (see [`zones`]). From outside, the edge's TLS port is
/// open, core's LAN port only to private networks and only when core listens beyond loopback,
/// every other Kiorex port closed to anything but loopback; on the host, the edge's and the data
/// services' users may connect only where their zones may.
fn write_ruleset(args: &UpArgs, layout: &Layout, accounts: &zones::RoleAccounts) -> Result<()> {
    let loopback = args.listen.starts_with("127.") || args.listen == "::1";
    let ruleset = zones::single_host_ruleset(
        &zones::HostPorts {
            edge: args.edge_port,
            core_internal: args.internal_port,
            core_lan: args.port,
            edge_admin: args.edge_admin_port,
        },
        zones::owners(accounts),
        if loopback {
            Vec::new()
        } else {
            zones::private_networks()
        },
    );
    let file = layout.ruleset();
    std::fs::create_dir_all(file.parent().context("ruleset directory")?)?;
    std::fs::write(&file, ruleset)?;
    Ok(())
}

impl CoreEnv {
    fn command(&self, kiorex: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(kiorex);
        cmd.args(args)
            .env("KIOREX_DATABASE__URL", self.database_url.trim())
            .env("KIOREX_AUTH__TOKEN_SIGNING_KEY_FILE", &self.key)
            .env("KIOREX_SERVER__LISTEN", &self.listen)
            .env("KIOREX_SERVER__ADMIN_LISTEN", &self.admin_listen)
            .envs(self.internal.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    fn kiorex(&self, kiorex: &Path, args: &[&str]) -> Result<()> {
        let out = self.command(kiorex, args).output()?;
        if !out.status.success() {
            bail!(
                "kiorex {} failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `kiorex serve worker`: the database and its health listener, nothing else (no signing
    /// key, no listeners for clients).
    fn start_worker(
        &self,
        kiorex: &Path,
        layout: &Layout,
        args: &UpArgs,
        account: Option<&zones::Account>,
    ) -> Result<Child> {
        let mut cmd = Command::new(kiorex);
        cmd.args(["serve", "worker"])
            .env("KIOREX_DATABASE__URL", self.database_url.trim())
            .env(
                "KIOREX_WORKER__LISTEN",
                format!("127.0.0.1:{}", args.worker_port),
            )
            .stdin(Stdio::null());
        spawn_role(cmd, layout, "worker", account, args.detach)
    }

    fn start_core(
        &self,
        kiorex: &Path,
        layout: &Layout,
        detach: bool,
        account: Option<&zones::Account>,
    ) -> Result<Child> {
        spawn_role(
            self.command(kiorex, &["serve", "core"]),
            layout,
            "core",
            account,
            detach,
        )
    }
}

fn wait_ready(base: &str, core: &mut Child, role: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let ready = || {
        runtime.block_on(async {
            client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    };
    while Instant::now() < deadline {
        if let Some(status) = core.try_wait()? {
            bail!(
                "kiorex serve {role} exited ({status}) before becoming ready; see its log in the data directory (logs/{role}.log)"
            );
        }
        if ready() {
            return Ok(());
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    if role == "edge" {
        bail!("kiorex serve edge did not become ready within 60 s (KX-UP-005); see logs/edge.log")
    }
    if role == "worker" {
        bail!(
            "kiorex serve worker did not become ready within 60 s (KX-UP-009); see logs/worker.log"
        )
    }
    bail!("kiorex serve core did not become ready within 60 s (KX-UP-004); see logs/core.log")
}

fn load_demo(base: &str, password: &str, patients: usize, show: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let token: Value = client
            .post(format!("{base}/api/v1/auth/token"))
            .json(&json!({"username": ADMIN, "password": password}))
            .send()
            .await?
            .json()
            .await?;
        let bearer = token["access_token"]
            .as_str()
            .context("sign-in for demo data failed")?
            .to_owned();
        let bar = if show {
            ProgressBar::new(patients as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("  {bar:40} {pos}/{len} patients ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut synth = kiorex_synth::Synth::new(2026);
        let mut loaded = 0;
        while loaded < patients {
            let batch = (patients - loaded).min(25);
            let bundle = synth.patient_bundle(batch, 8);
            let response = client
                .post(format!("{base}/fhir"))
                .bearer_auth(&bearer)
                .header("content-type", "application/fhir+json")
                .body(bundle.to_string())
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "loading demo data failed: HTTP {}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            loaded += batch;
            bar.set_position(loaded as u64);
        }
        bar.finish();
        Ok(())
    })
}

fn wait_for_stop_signal() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if let Ok(runtime) = runtime {
        runtime.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        });
    }
}

fn terminate(core: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(core.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(core.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    let _ = core.kill();
}

/// Stops the roles a detached run left (edge, worker, core), waiting for each to go.
fn stop_detached_roles(layout: &Layout) {
    for pid_file in [layout.edge_pid(), layout.worker_pid(), layout.core_pid()] {
        crate::single_node::stop_role(&pid_file);
    }
}

fn stop(layout: &Layout, args: &UpArgs) -> Result<()> {
    stop_detached_roles(layout);
    zones::unload(&layout.ruleset());
    stop_postgres(layout, &postgres_bin()?);
    match args.output {
        Output::Json => println!("{}", json!({"stopped": true})),
        Output::Text => println!("Kiorex stopped; data kept in {}", layout.root.display()),
    }
    Ok(())
}
