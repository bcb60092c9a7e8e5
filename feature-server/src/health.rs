//! Readiness, one check for both protocols: HTTP's `/ready` and gRPC's `grpc.health.v1.Health`
//! ask [`readiness`] — a registry version loaded and the online store answering a ping within
//! `ready_timeout` — so a load balancer probing either port sees the same answer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::service::FeatureService;

/// What `/ready` says of a registry that cannot be reloaded.
pub const RELOAD_FAILING: &str = "reload failing, serving the last good version";
/// What `/ready` says before the first registry version has loaded.
pub const NOT_LOADED: &str = "not loaded yet";

/// The outcome of one readiness check, in words open probes may see; `*_detail` hold the reasons
/// (addresses, errors) for the log and for callers allowed to see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    /// The registry version served; `None` before the first one has loaded.
    pub registry_version: Option<u64>,
    /// `ok`, [`RELOAD_FAILING`] or [`NOT_LOADED`].
    pub registry: &'static str,
    pub registry_detail: Option<String>,
    /// `ok`, `unavailable` or `no answer in time`.
    pub online_store: &'static str,
    pub online_store_detail: Option<String>,
    /// `ok`, [`DATA_UNCHECKED`] just after start, or [`DATA_LOST`] when the store answers but
    /// lacks values a run recorded writing.
    pub online_data: &'static str,
    pub online_data_detail: Option<String>,
}

/// What `/ready` says when the online store lost materialized data (wiped, flushed, evicted).
pub const DATA_LOST: &str = "lost: materialize again";
/// What `/ready` says until that has been checked once after start (well under a second, or
/// a second more when a loss is suspected and confirmed).
pub const DATA_UNCHECKED: &str = "not checked yet";

/// Whether the server can answer online requests now: a registry version is loaded, the
/// online store answers a ping within `ready_timeout`, and it still holds what was materialized
/// into it (a store wiped under the server would answer every read `NOT_FOUND`). A registry that cannot be reloaded does
/// not make the server unready: the last good version keeps serving (reported, not failed).
pub async fn readiness(service: &FeatureService, ready_timeout: Duration) -> Readiness {
    let snap = service.snapshot();
    let problem = service.registry_problem();
    let (registry, registry_detail) = match (snap.loaded(), problem) {
        (true, None) => ("ok", None),
        (true, Some(p)) => (RELOAD_FAILING, Some(p)),
        (false, p) => (NOT_LOADED, p),
    };
    let ping = tokio::time::timeout(ready_timeout, service.store().ping()).await;
    let (online_store, online_store_detail) = match ping {
        Ok(Ok(())) => ("ok", None),
        Ok(Err(e)) => ("unavailable", Some(e.to_string())),
        Err(_) => (
            "no answer in time",
            Some(format!(
                "{}: no answer within {} ms",
                service.store().location(),
                ready_timeout.as_millis()
            )),
        ),
    };
    let lost = service.lost_data();
    let (online_data, online_data_detail) = if !service.data_checked() {
        (DATA_UNCHECKED, None)
    } else if lost.is_empty() {
        ("ok", None)
    } else {
        let reasons: Vec<String> = lost.into_iter().map(|(_, why)| why).collect();
        (DATA_LOST, Some(reasons.join("; ")))
    };
    Readiness {
        ready: snap.loaded() && online_store == "ok" && online_data == "ok",
        registry_version: snap.loaded().then_some(snap.version.version),
        registry,
        registry_detail,
        online_store,
        online_store_detail,
        online_data,
        online_data_detail,
    }
}

/// A reason not to be ready is logged again, unchanged, at most this often: probes come every
/// second or so, and a lost store otherwise repeated the same lines each time.
const LOG_SAME_EVERY: Duration = Duration::from_secs(30);

impl Readiness {
    /// Logs why the server is not ready (at warn), when a failing readiness probe finds a
    /// reason new or last logged [`LOG_SAME_EVERY`] ago.
    pub fn log(&self) {
        if let Some(detail) = &self.online_store_detail
            && once_in_a_while(detail)
        {
            tracing::warn!(error = %detail, "not ready: the online store is {}", self.online_store);
        }
        if let Some(detail) = &self.online_data_detail
            && once_in_a_while(detail)
        {
            tracing::warn!(error = %detail, "not ready: the online store lost materialized data");
        }
        if self.registry == NOT_LOADED {
            match &self.registry_detail {
                Some(detail) if once_in_a_while(detail) => {
                    tracing::warn!(error = %detail, "not ready: no registry version loaded yet");
                }
                None if once_in_a_while(NOT_LOADED) => {
                    tracing::warn!("not ready: no registry version loaded yet");
                }
                _ => {}
            }
        }
    }
}

/// Whether `reason` was not logged within [`LOG_SAME_EVERY`] (and notes it as logged now).
fn once_in_a_while(reason: &str) -> bool {
    static LOGGED: std::sync::Mutex<Vec<(String, std::time::Instant)>> =
        std::sync::Mutex::new(Vec::new());
    let mut logged = LOGGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = std::time::Instant::now();
    logged.retain(|(_, at)| now.duration_since(*at) < LOG_SAME_EVERY);
    if logged.iter().any(|(r, _)| r == reason) {
        return false;
    }
    logged.push((reason.to_string(), now));
    true
}

/// How often a `Watch` call re-checks readiness.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// `grpc.health.v1.Health` answering from [`readiness`]: `SERVING` exactly when `/ready` is 200.
/// The overall server (`""`) and `feast.serving.ServingService` are known; other names are
/// `NOT_FOUND`. `Watch` streams each change and ends when the server shuts down.
#[derive(Debug, Clone)]
pub struct ReadinessHealth {
    service: Arc<FeatureService>,
    ready_timeout: Duration,
    stopping: watch::Receiver<bool>,
}

/// The health service for the gRPC port; `stopping` turns true when shutdown begins.
pub fn health_service(
    service: Arc<FeatureService>,
    ready_timeout: Duration,
    stopping: watch::Receiver<bool>,
) -> HealthServer<ReadinessHealth> {
    HealthServer::new(ReadinessHealth {
        service,
        ready_timeout,
        stopping,
    })
}

fn known(request: &HealthCheckRequest) -> Result<(), Status> {
    match request.service.as_str() {
        "" | <crate::grpc::ServingServer as tonic::server::NamedService>::NAME => Ok(()),
        _ => Err(Status::not_found("service not registered")),
    }
}

fn response(ready: bool) -> HealthCheckResponse {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    HealthCheckResponse {
        status: status as i32,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for ReadinessHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        known(request.get_ref())?;
        let r = readiness(&self.service, self.ready_timeout).await;
        r.log();
        Ok(Response::new(response(r.ready)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        known(request.get_ref())?;
        let this = self.clone();
        let stream =
            futures::stream::unfold((this, None::<bool>), |(mut this, mut last)| async move {
                loop {
                    if last.is_some() {
                        let stopping = this.stopping.wait_for(|s| *s);
                        tokio::select! {
                            _ = stopping => return None,
                            () = tokio::time::sleep(WATCH_EVERY) => {}
                        }
                    }
                    if *this.stopping.borrow() {
                        return None;
                    }
                    let r = readiness(&this.service, this.ready_timeout).await;
                    if last != Some(r.ready) {
                        r.log();
                        last = Some(r.ready);
                        return Some((Ok(response(r.ready)), (this, last)));
                    }
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }
}
