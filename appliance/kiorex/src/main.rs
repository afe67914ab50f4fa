//! `kiorex`: the one binary of the appliance. Roles and maintenance commands share the same code
//! and the same configuration.

mod config;
mod edge_config;
mod identity_config;
mod logging;
mod objects;
mod search_config;
mod worker;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use kiorex_api::metrics::{CoreMetrics, Listener};
use kiorex_api::{ApiSettings, AppState, audit::AuditSink, auth::TokenService};
use kiorex_domain::permission::Role;
use kiorex_store::Store;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kiorex",
    version,
    about = "Kiorex hospital information platform: the appliance binary.",
    long_about = "Kiorex hospital information platform: the appliance binary.\n\n\
    Configuration comes from the file given with --config (default /etc/kiorex/kiorex.toml when it exists), \
    then from KIOREX_<SECTION>__<KEY> environment variables, e.g. KIOREX_DATABASE__URL_FILE=/run/secrets/db."
)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, global = true, env = "KIOREX_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a role of the appliance.
    Serve {
        #[command(subcommand)]
        role: Role_,
    },
    /// Apply pending database migrations (run before starting a new version).
    Migrate {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Check that this process's /health/ready answers (used by containers and systemd).
    Healthcheck {
        /// The address to check; by default the configured listen address.
        #[arg(long)]
        url: Option<String>,
    },
    /// Validate the configuration and check that PostgreSQL is reachable and migrated.
    Configtest {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage facilities (hospitals, clinics) served by this appliance.
    Facility {
        #[command(subcommand)]
        command: FacilityCommand,
    },
    /// Manage local accounts (break-glass administrators, sites without a directory).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Documents in the object store: orphan sweep, rescan of held uploads, purge after the
    /// retention period, key-encryption keys.
    Objects {
        #[command(subcommand)]
        command: ObjectsCommand,
    },
    /// Rebuild search indexes from PostgreSQL while searches keep answering (Meilisearch: a new
    /// index is filled and swapped in; PostgreSQL: index rows are rewritten in batches). Run it
    /// after switching search.engine to meilisearch, or when an index is suspected stale.
    Reindex {
        #[arg(value_enum)]
        index: ReindexTarget,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// The hospital formulary (FHIR Medication resources, found by /api/v1/search/medicines).
    Formulary {
        #[command(subcommand)]
        command: FormularyCommand,
    },
    /// Print the configuration reference (every key, its environment variable and default).
    ConfigReference,
    /// Write a new Ed25519 key for signing access tokens (file mode 0600).
    Keygen {
        /// Where to write the private key (PKCS#8 PEM).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Also write the matching public key here (SPKI PEM), for the edge's
        /// `edge.token_public_key_file`.
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
#[allow(non_camel_case_types)]
enum Role_ {
    /// The clinical core: REST and FHIR APIs for the LAN (and, with [core.internal], the
    /// mutual-TLS listener the edge forwards to).
    Core,
    /// The DMZ edge: TLS for the internet, allow-listed routes, token scopes and limits, then
    /// core's internal listener over mutual TLS. Needs no database: give it a configuration with
    /// only [edge] (and [log]); it refuses to start with database credentials.
    Edge,
    /// The worker: delivers the outbox (search indexing) at least once, in order per record.
    /// Serves /health/live, /health/ready and /metrics on worker.listen. Run one or more; they
    /// share the work safely.
    Worker,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ReindexTarget {
    Patients,
    Documents,
    Medicines,
    All,
}

#[derive(Subcommand)]
enum ObjectsCommand {
    /// Find objects in the documents bucket that no document row names (left by an upload
    /// interrupted between storing the object and writing its row) and remove them.
    Gc {
        /// Only list the orphans; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Leave objects younger than this alone: their upload may still be finishing.
        #[arg(long, default_value_t = 60)]
        grace_minutes: u32,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Scan the uploads held while the virus scanner was unavailable (scan.hold_when_unavailable):
    /// clean ones are added to the patient's record, infected ones stay in quarantine (audited,
    /// alert). Stops early, leaving the rest held, when clamd still does not answer; exits 3
    /// then. Safe to run at any time and from a timer (several at once take different files).
    Rescan {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove for good the documents deleted longer ago than objects.retention_days: every
    /// version of their objects in the object store; their rows stay as a tombstone (which
    /// document, when deleted, purged when and by whom; no title, file name, text or key),
    /// with an audit entry each. Without --apply, only shows what would go.
    Purge {
        /// Remove them; without it, nothing is changed (a dry run).
        #[arg(long)]
        apply: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Add a new key-encryption key to a keyring file (created with mode 0600). Put its line
    /// first to make it current; keep the old lines so existing documents stay readable.
    NewKek {
        /// A name for the key, e.g. the year: 2026.
        #[arg(long)]
        id: String,
        /// The keyring file (the one objects.key_encryption_keys_file names).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum FormularyCommand {
    /// Import or update a facility's formulary from a CSV file with the header
    /// `code,name,form,ingredients` (ingredients separated by `;`). Entries are matched by code:
    /// running it again with the same file changes nothing. Kiorex ships no drug data.
    Import {
        /// The CSV file, e.g. exported from the pharmacy's spreadsheet.
        file: PathBuf,
        /// The facility whose formulary it is (its code, e.g. GEN).
        #[arg(long)]
        facility: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the whole hash chain and report the first changed, inserted or deleted entry.
    Verify {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum FacilityCommand {
    /// Create a facility (does nothing if one with this code exists).
    Create {
        /// Short code used in MRNs, 2 to 10 capital letters or digits (e.g. GEN).
        #[arg(long)]
        code: String,
        /// Full name, e.g. "General Hospital".
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// List facilities.
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local account, or reset its password and roles.
    Create {
        #[arg(long)]
        username: String,
        /// The name shown in the portal.
        #[arg(long)]
        display_name: Option<String>,
        /// A file holding the password (never pass passwords on the command line).
        #[arg(long)]
        password_file: PathBuf,
        /// ROLE@FACILITY_CODE, repeatable, e.g. --grant physician@GEN --grant nurse@NORTH.
        /// Roles: physician, nurse, front-desk, pharmacist, lab-technician, billing, auditor, it-admin, administrator.
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("kiorex: {e:#}");
        std::process::exit(1);
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<config::Config> {
    let default = PathBuf::from("/etc/kiorex/kiorex.toml");
    let file = path
        .cloned()
        .or_else(|| default.exists().then_some(default));
    let env: Vec<(String, String)> = std::env::vars().collect();
    config::load(file.as_deref(), &env).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
        anyhow::anyhow!(
            "the configuration is not valid (KX-CFG-001):\n{}",
            lines.join("\n")
        )
    })
}

fn load_edge_config(path: Option<&PathBuf>) -> Result<config::Config> {
    let default = PathBuf::from("/etc/kiorex/kiorex.toml");
    let file = path
        .cloned()
        .or_else(|| default.exists().then_some(default));
    let env: Vec<(String, String)> = std::env::vars().collect();
    config::load_for_edge(file.as_deref(), &env).map_err(config_errors)
}

fn config_errors(errors: Vec<config::ConfigError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
    anyhow::anyhow!(
        "the configuration is not valid (KX-CFG-001):\n{}",
        lines.join("\n")
    )
}

fn serve_edge(config: config::Config) -> Result<()> {
    let settings = config.edge.settings().map_err(config_errors)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(kiorex_edge::server::run(settings, shutdown_signal()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen {
            out,
            force,
            public_out,
        } => keygen(&out, force, public_out.as_ref()),
        Command::ConfigReference => {
            print!("{}", config::reference_markdown());
            Ok(())
        }
        Command::Healthcheck { url } => healthcheck(url, cli.config.as_ref()),
        Command::Objects {
            command: ObjectsCommand::NewKek { id, out },
        } => {
            objects::new_kek(&id, &out)?;
            println!("added key {id} to {}", out.display());
            Ok(())
        }
        command => {
            let config = if matches!(command, Command::Serve { role: Role_::Edge }) {
                load_edge_config(cli.config.as_ref())?
            } else {
                load_config(cli.config.as_ref())?
            };
            if let Some(objects) = &config.objects {
                objects::trust_ca_bundle(objects);
            }
            logging::init(config.log_format, &config.log_level);
            match command {
                Command::Serve { role: Role_::Core } => serve_core(config),
                Command::Serve { role: Role_::Edge } => serve_edge(config),
                Command::Serve {
                    role: Role_::Worker,
                } => {
                    let store = connect_migrated(&config, 4)?;
                    worker::serve_worker(config, store)
                }
                Command::Reindex { index, output } => {
                    use kiorex_search::meili::IndexKind;
                    let targets: &[IndexKind] = match index {
                        ReindexTarget::Patients => &[IndexKind::Patients],
                        ReindexTarget::Documents => &[IndexKind::Documents],
                        ReindexTarget::Medicines => &[IndexKind::Medicines],
                        ReindexTarget::All => &IndexKind::ALL,
                    };
                    let store = connect_migrated(&config, 2)?;
                    worker::reindex_command(&config, store, targets, output == Output::Json)
                }
                Command::Migrate { output } => migrate(&config, output),
                Command::Configtest { output } => configtest(&config, output),
                Command::Audit {
                    command: AuditCommand::Verify { output },
                } => audit_verify(&config, output),
                Command::Facility { command } => facility(&config, command),
                Command::Formulary {
                    command:
                        FormularyCommand::Import {
                            file,
                            facility,
                            output,
                        },
                } => formulary_import(&config, &file, &facility, output),
                Command::User { command } => user(&config, command),
                Command::Objects { command } => objects_command(&config, command),
                Command::Keygen { .. } | Command::Healthcheck { .. } | Command::ConfigReference => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

fn connect(config: &config::Config, size: u32) -> Result<Store> {
    Store::connect(&config.database_url, size)
        .map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL (KX-DB-001): {e}"))
}

fn token_service(config: &config::Config) -> Result<TokenService> {
    let pem = config.token_signing_key.as_deref().ok_or_else(|| {
        anyhow::anyhow!("auth.token_signing_key is required to serve (KX-CFG-001): set KIOREX_AUTH__TOKEN_SIGNING_KEY_FILE; create a key with `kiorex keygen`")
    })?;
    TokenService::from_pem(pem, config.token_ttl_seconds).map_err(|e| {
        anyhow::anyhow!("auth.token_signing_key: {e} (create one with `kiorex keygen`)")
    })
}

/// One connection for a command-line task.
fn connect_once(config: &config::Config) -> Result<diesel::PgConnection> {
    kiorex_store::connect_once(&config.database_url)
        .map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL (KX-DB-001): {e}"))
}

/// A pool, refused while migrations are pending (the new columns may not be there yet).
fn connect_migrated(config: &config::Config, size: u32) -> Result<Store> {
    let pending = kiorex_store::pending_migrations(&mut connect_once(config)?)?;
    if !pending.is_empty() {
        bail!(
            "{} database migration(s) are pending (KX-DB-002): run `kiorex migrate` first; pending: {}",
            pending.len(),
            pending.join(", ")
        );
    }
    connect(config, size)
}

fn serve_core(config: config::Config) -> Result<()> {
    let pending = kiorex_store::pending_migrations(&mut connect_once(&config)?)?;
    let store = connect(&config, config.pool_size)?;
    if !pending.is_empty() {
        bail!(
            "{} database migration(s) are pending (KX-DB-002): run `kiorex migrate` first; pending: {}",
            pending.len(),
            pending.join(", ")
        );
    }
    let tokens = token_service(&config)?;
    let documents = config
        .objects
        .as_ref()
        .map(objects::build)
        .transpose()?
        .map(Arc::new);
    let search = worker::engine(&config, &store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.pool_size as usize + 8)
        .build()?;
    runtime.block_on(async move {
        let state = AppState {
            search,
            audit: AuditSink::start(store.clone()),
            store,
            tokens: Arc::new(tokens),
            settings: Arc::new(ApiSettings {
                base_url: config.base_url.clone(),
                max_body_bytes: config.max_body_bytes,
                token_ttl_seconds: config.token_ttl_seconds,
            }),
            identity: kiorex_api::identity::Identity::new(config.identity.clone())
                .map_err(|e| anyhow::anyhow!("identity settings: {e}"))?,
            documents,
        };
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {} (KX-NET-001)", config.listen))?;
        let metrics = Arc::new(CoreMetrics::default());
        if let Some(admin) = config.admin_listen {
            serve_core_admin(admin, kiorex_api::metrics::admin_router(state.clone(), metrics.clone())).await?;
        }
        if let Some(internal) = config.core_internal.clone() {
            let router = kiorex_api::metrics::instrument(kiorex_api::router(state.clone()), metrics.clone(), Listener::Internal);
            kiorex_edge::internal::serve(internal, router, shutdown_signal()).await?;
        }
        tracing::info!(listen = %config.listen, version = env!("CARGO_PKG_VERSION"), "core is serving");
        let lan = kiorex_api::metrics::instrument(kiorex_api::router_with(state, kiorex_portal::router()), metrics, Listener::Lan);
        axum::serve(listener, lan.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("core stopped");
        Ok(())
    })
}

/// Binds core's management listener now (so a bad address fails the start) and serves
/// `/metrics` and `/health/*` on it until shutdown.
async fn serve_core_admin(listen: std::net::SocketAddr, router: axum::Router) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (KX-NET-001)"))?;
    tracing::info!(listen = %listen, "core's metrics and health listener is serving");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await
        {
            tracing::error!(error = %e, "core's metrics listener stopped");
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn migrate(config: &config::Config, output: Output) -> Result<()> {
    let applied = kiorex_store::run_migrations(&mut connect_once(config)?)?;
    match output {
        Output::Json => println!("{}", json!({"applied": applied})),
        Output::Text if applied.is_empty() => println!("The database is up to date."),
        Output::Text => applied.iter().for_each(|m| println!("applied {m}")),
    }
    Ok(())
}

fn healthcheck(url: Option<String>, config_path: Option<&PathBuf>) -> Result<()> {
    let url = match url {
        Some(u) => u,
        None => format!("http://{}", load_config(config_path)?.listen),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let response = client
            .get(format!("{}/health/ready", url.trim_end_matches('/')))
            .send()
            .await
            .context("no answer")?;
        if !response.status().is_success() {
            bail!("not ready: HTTP {}", response.status());
        }
        println!("ready");
        Ok(())
    })
}

fn configtest(config: &config::Config, output: Output) -> Result<()> {
    let mut checks = vec![("configuration", Ok("valid".to_owned()))];
    let tokens = token_service(config)
        .map(|_| "Ed25519 key loaded".to_owned())
        .map_err(|e| e.to_string());
    checks.push(("auth.token_signing_key", tokens));
    let database = connect_once(config).and_then(|mut conn| {
        let pending = kiorex_store::pending_migrations(&mut conn)?;
        if pending.is_empty() {
            Ok("reachable, migrations applied".to_owned())
        } else {
            Err(anyhow::anyhow!(
                "reachable, but {} migration(s) pending: run `kiorex migrate` (KX-DB-002)",
                pending.len()
            ))
        }
    });
    checks.push(("database", database.map_err(|e| e.to_string())));
    checks.extend(identity_checks(&config.identity));
    match &config.objects {
        None => checks.push((
            "objects",
            Ok("not configured: documents are off".to_owned()),
        )),
        Some(objects_config) => match objects::build(objects_config) {
            Err(e) => checks.push(("objects", Err(format!("{e:#}")))),
            Ok(built) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                checks.extend(runtime.block_on(objects::checks(&built)));
                if objects_config.hold_when_unavailable {
                    checks.push(("scan.held_uploads", objects::held_uploads(config)));
                }
            }
        },
    }
    checks.push(("search", worker::check_search(config)));
    let failed = checks.iter().any(|(_, r)| r.is_err());
    match output {
        Output::Json => {
            let items: Vec<_> = checks
                .iter()
                .map(|(name, r)| match r {
                    Ok(m) => json!({"check": name, "status": "pass", "message": m}),
                    Err(e) => json!({"check": name, "status": "fail", "message": e}),
                })
                .collect();
            println!("{}", json!({"ok": !failed, "checks": items}));
        }
        Output::Text => {
            for (name, r) in &checks {
                match r {
                    Ok(m) => println!("pass  {name}: {m}"),
                    Err(e) => println!("FAIL  {name}: {e}"),
                }
            }
        }
    }
    if failed {
        bail!("configtest failed")
    } else {
        Ok(())
    }
}

/// The directory and the IdP, when configured, checked from this node.
fn identity_checks(
    settings: &kiorex_api::identity::IdentitySettings,
) -> Vec<(&'static str, Result<String, String>)> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    if let Some(ldap) = &settings.ldap {
        let result = runtime.block_on(kiorex_api::identity::ldap::check_service_account(ldap));
        checks.push(("ldap", result));
    }
    if let Some(oidc) = &settings.oidc {
        let result = kiorex_api::identity::oidc::OidcClient::new(oidc.clone())
            .map(|client| runtime.block_on(client.check()))
            .unwrap_or_else(Err);
        checks.push(("oidc", result));
    }
    checks
}

fn objects_command(config: &config::Config, command: ObjectsCommand) -> Result<()> {
    let (dry_run, grace_minutes, output) = match command {
        ObjectsCommand::NewKek { .. } => unreachable!("handled before the configuration is read"),
        ObjectsCommand::Rescan { output } => {
            return objects::rescan(config, &operator(), output == Output::Json);
        }
        ObjectsCommand::Purge { apply, output } => {
            return objects::purge(config, &operator(), apply, output == Output::Json);
        }
        ObjectsCommand::Gc {
            dry_run,
            grace_minutes,
            output,
        } => (dry_run, grace_minutes, output),
    };
    let objects_config = config.objects.as_ref().ok_or_else(|| {
        anyhow::anyhow!("documents are not configured: set objects.endpoint (KX-DOC-501)")
    })?;
    let built = objects::build(objects_config)?;
    let store = connect(config, 2)?;
    let cutoff = chrono::Utc::now() - chrono::Duration::minutes(i64::from(grace_minutes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sweep = runtime
        .block_on(kiorex_api::documents::sweep_orphans(
            &store, &built, cutoff, dry_run,
        ))
        .map_err(|e| anyhow::anyhow!("the orphan sweep failed (KX-OBJ-503): {e}"))?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&sweep)?),
        Output::Text => {
            for key in &sweep.orphans {
                println!("{} {key}", if dry_run { "orphan " } else { "removed" });
            }
            println!(
                "{} objects listed, {} orphans, {} removed{}",
                sweep.listed,
                sweep.orphans.len(),
                sweep.removed,
                if dry_run { " (dry run)" } else { "" }
            );
        }
    }
    Ok(())
}

fn audit_verify(config: &config::Config, output: Output) -> Result<()> {
    let mut conn = connect_once(config)?;
    let show_progress = output == Output::Text;
    let verification = kiorex_store::audit::verify(&mut conn, |n| {
        if show_progress {
            eprint!("\rchecked {n} entries");
        }
    })?;
    if show_progress {
        eprintln!();
    }
    let broken = verification.first_break.as_ref().map(|b| format!("{b:?}"));
    match output {
        Output::Json => println!(
            "{}",
            json!({"ok": broken.is_none(), "entries": verification.entries, "head": verification.head.as_ref().map(|(s, h)| json!({"seq": s, "hash": h})), "break": broken})
        ),
        Output::Text => match (&broken, &verification.head) {
            (Some(b), _) => println!("The audit log was TAMPERED WITH (KX-AUD-002): {b}"),
            (None, Some((seq, hash))) => println!(
                "The audit log is intact: {} entries; head {seq} {hash}\nRecord the head elsewhere: a later verify that ends before it means entries were cut off the end.",
                verification.entries
            ),
            (None, None) => println!("The audit log is empty."),
        },
    }
    if broken.is_some() {
        std::process::exit(2)
    } else {
        Ok(())
    }
}

fn facility(config: &config::Config, command: FacilityCommand) -> Result<()> {
    let mut conn = connect_once(config)?;
    match command {
        FacilityCommand::Create { code, name, output } => {
            let (facility, created) =
                kiorex_api::admin::ensure_facility(&mut conn, &operator(), &code, &name)
                    .map_err(anyhow::Error::msg)?;
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"id": facility.id, "code": facility.code, "name": facility.name, "created": created})
                ),
                Output::Text if created => println!(
                    "created facility {} ({}) with id {}",
                    facility.code, facility.name, facility.id
                ),
                Output::Text => println!(
                    "facility {} already exists with id {}",
                    facility.code, facility.id
                ),
            }
        }
        FacilityCommand::List { output } => {
            let all = kiorex_store::facilities::all(&mut conn)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&all)?),
                Output::Text => all
                    .iter()
                    .for_each(|f| println!("{:<10} {}  {}", f.code, f.id, f.name)),
            }
        }
    }
    Ok(())
}

fn formulary_import(
    config: &config::Config,
    file: &PathBuf,
    facility: &str,
    output: Output,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let entries = kiorex_api::formulary::parse(&text).map_err(|problems| {
        anyhow::anyhow!(
            "{} is not a formulary file (KX-MED-001):\n  - {}",
            file.display(),
            problems.join("\n  - ")
        )
    })?;
    let mut conn = connect_once(config)?;
    let report = kiorex_api::formulary::import(&mut conn, &operator(), facility, &entries)
        .map_err(anyhow::Error::msg)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Text => println!(
            "formulary of {facility}: {} created, {} updated, {} unchanged",
            report.created, report.updated, report.unchanged
        ),
    }
    Ok(())
}

fn user(config: &config::Config, command: UserCommand) -> Result<()> {
    let UserCommand::Create {
        username,
        display_name,
        password_file,
        grants,
    } = command;
    let password = std::fs::read_to_string(&password_file)
        .with_context(|| format!("cannot read {}", password_file.display()))?;
    let roles = grants
        .iter()
        .map(|g| {
            let (role, code) = g.split_once('@').ok_or_else(|| {
                anyhow::anyhow!("--grant {g:?} must look like ROLE@FACILITY_CODE")
            })?;
            Ok((
                code.to_owned(),
                role.parse::<Role>().map_err(anyhow::Error::msg)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut conn = connect_once(config)?;
    let display = display_name.unwrap_or_else(|| username.clone());
    let id = kiorex_api::admin::upsert_user(
        &mut conn,
        &operator(),
        &username,
        &display,
        password.trim_end_matches('\n'),
        &roles,
    )
    .map_err(anyhow::Error::msg)?;
    println!("account {username} ready (id {id})");
    Ok(())
}

/// Who runs an administrative command, for the audit log.
fn operator() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

fn keygen(out: &PathBuf, force: bool, public_out: Option<&PathBuf>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if out.exists() && !force {
        bail!(
            "{} exists; pass --force to replace it (tokens signed with the old key stop working)",
            out.display()
        );
    }
    let pem = kiorex_api::auth::generate_signing_key_pem().map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)?;
    file.write_all(pem.as_bytes())?;
    println!("wrote {}", out.display());
    if let Some(public_out) = public_out {
        let public = kiorex_api::auth::public_key_pem(&pem).map_err(anyhow::Error::msg)?;
        std::fs::write(public_out, public)?;
        println!("wrote {} (public key, for the edge)", public_out.display());
    }
    Ok(())
}
