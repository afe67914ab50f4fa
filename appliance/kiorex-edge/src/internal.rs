//! Core's internal listener: the same router as the LAN listener, behind TLS that requires the
//! edge's client certificate. A certificate from another CA, an expired one, or (when names are
//! configured) one for another name fails the handshake; no HTTP is ever read from such a peer.

use crate::settings::InternalSettings;
use crate::tls::{self, ReloadingCert};
use anyhow::{Context, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Binds the internal listener now (so a bad address fails the start), then serves `router` on
/// it until `shutdown`.
pub async fn serve(
    settings: InternalSettings,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let cert = Arc::new(ReloadingCert::load(
        &settings.cert_file,
        &settings.key_file,
        tls::server_provider(false),
    )?);
    cert.watch(settings.reload_interval, "core.internal");
    let config = tls::internal_server_config(
        cert,
        &settings.client_ca_file,
        &settings.allowed_client_names,
    )?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KX-NET-001)", settings.listen))?;
    tracing::info!(listen = %settings.listen, "internal mutual-TLS listener is serving");
    Ok(tokio::spawn(accept_loop(
        listener, acceptor, router, shutdown,
    )))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(peer = %peer.ip(), error = %e, "internal listener refused a TLS handshake");
                    return;
                }
                Err(_) => return,
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                .await;
        });
    }
}
