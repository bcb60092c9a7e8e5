//! Running the server: HTTP and gRPC on the given listeners, registry reload in the background,
//! graceful shutdown (in-flight requests finish) when `shutdown` resolves.

use std::sync::Arc;
use std::time::Duration;

use quiver_registry::RegistryStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::grpc::grpc_service;
use crate::http::{HttpState, router};
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
}

/// Serves until `shutdown` resolves, then drains in-flight requests and returns.
pub async fn serve(
    http: TcpListener,
    grpc: Option<TcpListener>,
    service: Arc<FeatureService>,
    registry: Arc<dyn RegistryStore>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::metrics::handle();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let reload = tokio::spawn(crate::reload::watch(
        service.clone(),
        registry,
        options.registry_poll,
        stopped(stop_rx.clone()),
    ));
    let app = router(
        HttpState {
            service: service.clone(),
            ready_timeout: options.ready_timeout,
            training: options.training.clone().map(Arc::new),
            auth: options.auth.clone(),
        },
        options.max_body_bytes,
    );
    let acceptor = match &options.tls {
        Some(files) => Some(files.acceptor().map_err(std::io::Error::other)?),
        None => None,
    };
    let grpc_tls = match &options.tls {
        Some(files) => {
            let (cert, key) = files.read().map_err(std::io::Error::other)?;
            Some(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
        }
        None => None,
    };
    let http_task = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        crate::listener::serve_http(http, app, acceptor, options.header_timeout, stop)
    });
    let grpc_task = grpc.map(|listener| {
        let (health_reporter, health) = tonic_health::server::health_reporter();
        let svc = grpc_service(service.clone(), options.max_body_bytes, options.auth.clone());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            health_reporter.set_serving::<quiver_proto::feast::serving::serving_service_server::ServingServiceServer<crate::grpc::GrpcService>>().await;
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = grpc_tls {
                builder = builder.tls_config(tls)?;
            }
            builder
                .add_service(health)
                .add_service(svc)
                .serve_with_incoming_shutdown(tokio_stream_listener(listener), stop)
                .await
        })
    });
    let http_result = http_task.await.map_err(std::io::Error::other)?;
    if let Some(task) = grpc_task {
        task.await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
    }
    reload.abort();
    http_result
}

fn tokio_stream_listener(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
