//! Running the server: HTTP and gRPC on the given listeners, registry reload in the background,
//! graceful shutdown (in-flight requests finish) when `shutdown` resolves.

use std::sync::Arc;
use std::time::Duration;

use quiver_registry::RegistryStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::grpc::grpc_service;
use crate::http::{HttpState, router};
use crate::listener::{PortOptions, Protocols, Slots};
use crate::service::FeatureService;

/// Server settings that are not per request.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub max_body_bytes: usize,
    pub registry_poll: Duration,
    pub ready_timeout: Duration,
    /// Training retrieval over HTTP; off when absent.
    pub training: Option<crate::training::Training>,
    /// Who may call what (HTTP and gRPC alike); open by default.
    pub auth: Arc<crate::auth::Authenticator>,
    /// TLS for HTTP and gRPC; plain text when absent.
    pub tls: Option<crate::listener::TlsFiles>,
    /// Longest a client may take to send a request head or finish a TLS handshake.
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body (HTTP port): the whole body of an
    /// online request, each wait for more of a training upload.
    pub body_timeout: Duration,
    /// After `shutdown`, how long in-flight requests may take before every connection is closed.
    pub shutdown_grace: Duration,
    /// Idle and keep-alive timeouts of HTTP/2 connections; most connections open at once.
    pub connections: crate::listener::ConnectionLimits,
}

/// Serves until `shutdown` resolves, then drains in-flight requests (for at most
/// `options.shutdown_grace`, then closes what is still open) and returns.
pub async fn serve(
    http: TcpListener,
    grpc: Option<TcpListener>,
    service: Arc<FeatureService>,
    registry: Arc<dyn RegistryStore>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::metrics::handle();
    // Exported from the first request on, not only after the first reload.
    crate::metrics::set_registry_version(service.snapshot().version.version);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Not ready until the watcher has checked once that the store still holds what was
    // materialized (a server started on a wiped store must not say ready first).
    service.set_data_checked(false);
    let reload = tokio::spawn(crate::reload::watch(
        service.clone(),
        registry.clone(),
        options.registry_poll,
        stopped(stop_rx.clone()),
    ));
    let app = router(
        HttpState {
            service: service.clone(),
            ready_timeout: options.ready_timeout,
            training: options.training.clone().map(Arc::new),
            auth: options.auth.clone(),
            body_timeout: options.body_timeout,
            registry: Some(registry),
            grpc: grpc.as_ref().and_then(|g| g.local_addr().ok()),
            tls: options.tls.is_some(),
        },
        options.max_body_bytes,
    );
    let acceptor = |protocols| match &options.tls {
        Some(files) => files
            .acceptor(protocols)
            .map(Some)
            .map_err(std::io::Error::other),
        None => Ok(None),
    };
    let port_options = PortOptions {
        header_timeout: options.header_timeout,
        shutdown_grace: options.shutdown_grace,
        limits: options.connections.clone(),
    };
    // One limit for both ports: they share the process's file descriptors.
    let slots = Slots::new(crate::listener::fit_open_file_limit(
        options.connections.max_connections,
    ));
    let http_task = tokio::spawn(crate::listener::serve(
        http,
        app,
        Protocols::Any,
        acceptor(Protocols::Any)?,
        port_options.clone(),
        slots.clone(),
        stopped(stop_rx.clone()),
    ));
    let grpc_task = match grpc {
        Some(listener) => {
            // SERVING exactly when `/ready` is 200: the same check answers both.
            let health = crate::health::health_service(
                service.clone(),
                options.ready_timeout,
                stop_rx.clone(),
            );
            let svc = grpc_service(
                service.clone(),
                options.max_body_bytes,
                options.auth.clone(),
            );
            // tonic's routes (unknown methods answer UNIMPLEMENTED) on our own accept loop, so
            // both ports share TLS, timeouts, shutdown and the per-connection executor.
            let push = crate::grpc::PushServer::new(svc.clone());
            let routes = tonic::service::Routes::new(health)
                .add_service(svc)
                .add_service(push)
                .prepare()
                .into_axum_router();
            Some(tokio::spawn(crate::listener::serve(
                listener,
                routes,
                Protocols::Http2,
                acceptor(Protocols::Http2)?,
                port_options,
                slots,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let http_result = http_task.await.map_err(std::io::Error::other)?;
    if let Some(task) = grpc_task {
        task.await.map_err(std::io::Error::other)??;
    }
    reload.abort();
    http_result
}
