//! `kiorex serve worker` and `kiorex reindex`.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use kiorex_search::Engine;
use kiorex_search::meili::{IndexKind, MeiliSearch};
use kiorex_store::Store;
use kiorex_worker::server::Probe;
use kiorex_worker::{SearchDelivery, Worker, reindex};
use serde_json::json;
use std::sync::Arc;

/// The engine the configuration names.
pub fn engine(config: &Config, store: &Store) -> Result<Engine> {
    Ok(match &config.search.meilisearch {
        None => Engine::postgres(store.clone()),
        Some(settings) => Engine::Meilisearch(Arc::new(
            MeiliSearch::new(settings).map_err(|e| anyhow::anyhow!("search: {e} (KX-SRCH-503)"))?,
        )),
    })
}

/// Creates the Meilisearch indexes and their settings if missing (every start; idempotent).
async fn prepare(engine: &Engine) -> Result<()> {
    if let Engine::Meilisearch(m) = engine {
        for kind in IndexKind::ALL {
            m.prepare(kind).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot prepare the {} index (KX-SRCH-503): {e}",
                    kind.name()
                )
            })?;
        }
    }
    Ok(())
}

pub fn serve_worker(config: Config, store: Store) -> Result<()> {
    let engine = engine(&config, &store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        prepare(&engine).await?;
        let worker = Worker::new(
            store.clone(),
            SearchDelivery::new(store.clone(), engine.clone()),
            config.worker.settings.clone(),
        );
        let probe = Probe {
            store,
            engine: engine.clone(),
            metrics: worker.metrics.clone(),
        };
        let listener = tokio::net::TcpListener::bind(config.worker.listen)
            .await
            .with_context(|| format!("cannot listen on {} (KX-NET-001)", config.worker.listen))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let http = tokio::spawn(
            axum::serve(listener, kiorex_worker::server::router(probe))
                .with_graceful_shutdown(async move {
                    crate::shutdown_signal().await;
                    let _ = stop.send(true);
                })
                .into_future(),
        );
        tracing::info!(listen = %config.worker.listen, engine = engine.name(),
            version = env!("CARGO_PKG_VERSION"), "worker is delivering the outbox");
        worker.run(stopped).await;
        http.await??;
        Ok(())
    })
}

pub fn reindex_command(
    config: &Config,
    store: Store,
    targets: &[IndexKind],
    json_output: bool,
) -> Result<()> {
    let engine = engine(config, &store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for kind in targets {
        let total = runtime
            .block_on(reindex::total(&store, *kind))
            .map_err(|e| anyhow::anyhow!("{e} (KX-DB-001)"))?;
        let bar = (!json_output).then(|| progress_bar(kind.name(), total));
        let report = runtime
            .block_on(reindex::reindex(&store, &engine, *kind, |done| {
                if let Some(bar) = &bar {
                    bar.set_position(done);
                }
            }))
            .map_err(|e| anyhow::anyhow!("reindex {} failed (KX-SRCH-503): {e}", kind.name()));
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let report = report?;
        if !json_output {
            println!(
                "{}: {} indexed, {} skipped ({} engine)",
                report.index, report.indexed, report.skipped, report.engine
            );
        }
        reports.push(report);
    }
    if json_output {
        println!("{}", json!({"ok": true, "indexes": reports}));
    }
    if reports.iter().any(|r| r.skipped > 0) {
        bail!("some records could not be read back and were skipped; see the log")
    }
    Ok(())
}

fn progress_bar(name: &str, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(name.to_owned());
    bar
}

/// `configtest`: which engine, and whether Meilisearch answers from this node.
pub fn check_search(config: &Config) -> Result<String, String> {
    let Some(settings) = &config.search.meilisearch else {
        return Ok("PostgreSQL (embedded)".to_owned());
    };
    let meili = MeiliSearch::new(settings).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(meili.check())
        .map(|()| format!("Meilisearch at {} answers", settings.url))
        .map_err(|e| format!("{e} (KX-SRCH-503)"))
}
