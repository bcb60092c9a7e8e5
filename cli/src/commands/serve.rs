//! `quiver serve`: the feature server over HTTP and gRPC until Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use quiver_feature_server::cache::BlobCache;
use quiver_feature_server::{FeatureService, Limits, ServeOptions, Snapshot};

use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// HTTP listen address (default: serving.http in quiver.yaml, 127.0.0.1:6566).
    #[arg(long)]
    pub http: Option<String>,
    /// gRPC listen address (default: serving.grpc, 127.0.0.1:6567); "" turns gRPC off.
    #[arg(long)]
    pub grpc: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let repo = ctx.open()?;
    let registry: Arc<dyn quiver_registry::RegistryStore> = Arc::from(repo.store()?);
    let version = first_version(&repo, &registry)?;
    let serving = repo.config.serving.clone();
    let http_addr = args.http.unwrap_or(serving.http.clone());
    let grpc_addr = args.grpc.unwrap_or(serving.grpc.clone());
    let runtime = ctx.runtime()?;
    let served = runtime.block_on(async move {
        let tls = serving
            .tls
            .as_ref()
            .map(|t| quiver_feature_server::listener::TlsFiles {
                cert: repo.root.join(&t.cert_file),
                key: repo.root.join(&t.key_file),
            });
        if let Some(files) = &tls {
            files
                .acceptor(quiver_feature_server::listener::Protocols::Any)
                .map_err(|e| crate::exit::UserError(format!("serving.tls: {e}")))?;
        }
        let auth =
            quiver_feature_server::Authenticator::from_config(serving.auth.as_ref(), &repo.root)
                .map_err(|e| crate::exit::UserError(format!("serving.auth: {e}")))?;
        let http = listen(&http_addr, "HTTP").await?;
        let grpc = match grpc_addr.as_str() {
            "" => None,
            addr => Some(listen(addr, "gRPC").await?),
        };
        // Everything the user can get wrong is checked above, before the store is opened. A
        // store that cannot be reached yet is connected in the background: not ready until then.
        let store =
            quiver_online_store::open_or_retry(&repo.config.online_store, &repo.root, STARTUP_WAIT)
                .await?;
        // Whether the store may evict or lose what is served: warned about and exported.
        tokio::spawn(quiver_feature_server::store_report::watch(
            store.clone(),
            repo.config.online_store.key_ttl(),
            quiver_feature_server::store_report::CHECK_EVERY,
        ));
        let cache = serving
            .cache
            .as_ref()
            .map(|c| BlobCache::new(Duration::from_millis(c.max_staleness_ms), c.max_entries));
        let service = Arc::new(
            FeatureService::new(
                match version {
                    Some(version) => Snapshot::new(version),
                    None => Snapshot::unloaded(&repo.config.project),
                },
                store.clone(),
                cache,
                Limits {
                    max_entity_rows: serving.max_entity_rows,
                },
            )
            .with_max_response_values(serving.max_response_values)
            .with_key_ttl(repo.config.online_store.key_ttl())
            .with_repository_root(repo.root.clone()),
        );
        let snapshot = service.snapshot();
        eprintln!(
            "serving project `{}` ({}) from {}\n  HTTP {}{}",
            repo.config.project,
            if snapshot.loaded() {
                format!("registry version {}", snapshot.version.version)
            } else {
                "no registry version yet: not ready until one loads".to_string()
            },
            store.location(),
            http.local_addr()?,
            grpc.as_ref()
                .map(|g| g
                    .local_addr()
                    .map(|a| format!("\n  gRPC {a}"))
                    .unwrap_or_default())
                .unwrap_or_default()
        );
        if tls.is_some() {
            eprintln!("  TLS on HTTP and gRPC");
        }
        eprintln!(
            "  console: {}://{}/ui",
            if tls.is_some() { "https" } else { "http" },
            http.local_addr()?
        );
        match &serving.auth {
            Some(a) => eprintln!(
                "  auth: {} bearer token(s); /health and /ready open",
                a.tokens.len()
            ),
            None => eprintln!("  auth: off — every endpoint is open (configure serving.auth)"),
        }
        // Training: bounded concurrency, memory and decoded upload size; uploads in a directory
        // of the server's own, emptied of what a server that is gone left there.
        let mut training = quiver_feature_server::Training::new(
            repo.root.clone(),
            serving.max_training_upload_bytes,
        )
        .with_budget(serving.training_memory_limit, serving.max_training_requests)
        .with_max_decoded_bytes(serving.max_training_decoded_bytes)
        .with_upload_dir(&serving.upload_dir);
        // Training requests run where offline work runs (`engine:`).
        training.engine.cluster =
            quiver_materializer::cluster::Cluster::of(&repo.config.engine, &repo.root)?;
        training.prepare().map_err(|e| {
            crate::exit::UserError(format!(
                "serving.upload_dir {}: {e}",
                training.upload_dir.display()
            ))
        })?;
        let options = ServeOptions {
            max_body_bytes: serving.max_request_bytes,
            registry_poll: Duration::from_millis(serving.registry_poll_ms),
            ready_timeout: Duration::from_millis(500),
            auth: Arc::new(auth),
            tls: tls.clone(),
            header_timeout: Duration::from_millis(serving.header_timeout_ms),
            body_timeout: Duration::from_millis(serving.body_timeout_ms),
            shutdown_grace: Duration::from_millis(serving.shutdown_grace_ms),
            connections: quiver_feature_server::listener::ConnectionLimits {
                idle_timeout: Duration::from_millis(serving.idle_timeout_ms),
                keepalive_interval: Duration::from_millis(serving.keepalive_interval_ms),
                keepalive_timeout: Duration::from_millis(serving.keepalive_timeout_ms),
                max_connections: serving.max_connections,
            },
            training: Some(training),
        };
        quiver_feature_server::serve(http, grpc, service, registry, options, shutdown_signal())
            .await?;
        eprintln!("stopped");
        anyhow::Ok(())
    });
    // Blocking work still running (a registry poll waiting on a hung Redis) must not keep a
    // stopped server alive; what training requests staged for a cluster is removed first.
    runtime.block_on(quiver_materializer::retrieve::remove_staged());
    runtime.shutdown_timeout(Duration::from_millis(200));
    served
}

/// How long `serve` waits at start for a store before starting without it (not ready).
const STARTUP_WAIT: Duration = Duration::from_secs(2);

/// The newest registry version, waiting at most [`STARTUP_WAIT`] for the registry store. One
/// that cannot be reached (or does not answer in time) is not an error: the server starts not
/// ready and loads its first version when the store answers (`reload`). A reachable registry
/// without versions, or of another project, is the user's to fix, as in every command.
fn first_version(
    repo: &quiver_registry::Repository,
    registry: &Arc<dyn quiver_registry::RegistryStore>,
) -> Result<Option<quiver_registry::RegistryVersion>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let store = registry.clone();
    // A thread of its own: a hung store must not hold the process when it exits.
    std::thread::spawn(move || {
        let _ = tx.send(store.latest());
    });
    let latest = match rx.recv_timeout(STARTUP_WAIT) {
        Ok(Err(quiver_registry::Error::Unavailable(e))) => {
            tracing::warn!(error = %e, "the registry store is unreachable; serving as not ready until it answers");
            return Ok(None);
        }
        Err(_) => {
            tracing::warn!(
                store = %registry.location(),
                "the registry store did not answer within {} s; serving as not ready until it does",
                STARTUP_WAIT.as_secs()
            );
            return Ok(None);
        }
        Ok(latest) => latest?,
    };
    let version = latest.ok_or_else(|| {
        crate::exit::UserError(format!(
            "no registry version in {} yet: run `quiver apply` first",
            registry.location()
        ))
    })?;
    crate::context::same_project(repo, registry.as_ref(), &version)?;
    Ok(Some(version))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds `addr`; a malformed address or one already taken is the user's to fix (exit 2).
async fn listen(addr: &str, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let message = format!("cannot listen on {addr} ({what}): {e}");
        match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::AddrInUse => {
                crate::exit::UserError(format!("{message}; give host:port, e.g. 127.0.0.1:6566"))
                    .into()
            }
            _ => anyhow::anyhow!(message),
        }
    })
}
