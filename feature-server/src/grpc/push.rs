//! Feast's package-less `GrpcFeatureServer` (what `feast listen` serves): `Push` and
//! `WriteToOnlineStore` — one row per request, as a string map (`features`) or typed values
//! (`typed_features`) — and `GetOnlineFeatures`, the same as `feast.serving.ServingService`'s.
//! Writes go through the same core as HTTP's (`crate::push`).

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use quiver_proto::feast::types::{Value as PbValue, value::Val};
use quiver_proto::{
    PushRequest, PushResponse, WriteToOnlineStoreRequest, WriteToOnlineStoreResponse,
};
use serde_json::Value as J;
use tonic::codegen::{Service, http};
use tonic::{Request, Response, Status};

use super::{BoxFuture, HttpResult, ServingServer, answer, grpc_timeout, unary, with_deadline};
use crate::auth::{Authenticator, Need};
use crate::error::ServiceError;
use crate::push::{Destination, Target, WriteRequest};
use crate::service::FeatureService;

const PUSH: &str = "/GrpcFeatureServer/Push";
const WRITE: &str = "/GrpcFeatureServer/WriteToOnlineStore";
const GET_ONLINE_FEATURES: &str = "/GrpcFeatureServer/GetOnlineFeatures";

/// `GrpcFeatureServer`, beside `ServingService` on the gRPC port.
#[derive(Debug, Clone)]
pub struct PushServer {
    serving: ServingServer,
}

impl PushServer {
    pub fn new(serving: ServingServer) -> Self {
        PushServer { serving }
    }
}

impl tonic::server::NamedService for PushServer {
    const NAME: &'static str = "GrpcFeatureServer";
}

impl Service<http::Request<tonic::body::Body>> for PushServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<HttpResult>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let header = req
            .headers()
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        let need = match req.uri().path() {
            PUSH => None, // decided by the request's `to`
            WRITE => Some(Need::OnlineWrite),
            GET_ONLINE_FEATURES => Some(Need::OnlineRead),
            other => {
                return answer(Status::unimplemented(format!(
                    "{other}: no such method in GrpcFeatureServer"
                )));
            }
        };
        let auth = &self.serving.auth;
        if let Some(need) = need
            && let Err(e) = auth.check(header.as_deref(), need)
        {
            crate::auth::record_failure("grpc", &e);
            return answer(Status::from(e));
        }
        let deadline = grpc_timeout(req.headers());
        let limit = self.serving.max_message_bytes;
        let service = self.serving.service.clone();
        let call = match req.uri().path() {
            GET_ONLINE_FEATURES => self.serving.online(req),
            WRITE => unary(WriteCall { service }, req, limit),
            _ => {
                let call = PushCall {
                    service,
                    auth: auth.clone(),
                    header,
                };
                unary(call, req, limit)
            }
        };
        with_deadline(deadline, call)
    }
}

struct PushCall {
    service: Arc<FeatureService>,
    auth: Arc<Authenticator>,
    header: Option<Vec<u8>>,
}

impl tonic::server::UnaryService<PushRequest> for PushCall {
    type Response = PushResponse;
    type Future = BoxFuture<Result<Response<PushResponse>, Status>>;

    fn call(&mut self, request: Request<PushRequest>) -> Self::Future {
        let service = self.service.clone();
        let auth = self.auth.clone();
        let header = self.header.clone();
        Box::pin(async move {
            let req = request.into_inner();
            let to = Destination::parse(&req.to)?;
            for (wanted, need) in [
                (to.online(), Need::OnlineWrite),
                (to.offline(), Need::OfflineWrite),
            ] {
                if wanted && let Err(e) = auth.check(header.as_deref(), need) {
                    crate::auth::record_failure("grpc", &e);
                    return Err(e.into());
                }
            }
            let df = one_row(req.features, req.typed_features)?;
            let request = WriteRequest {
                target: Target::PushSource(req.stream_feature_view),
                to,
                df,
            };
            crate::metrics::timed("grpc_push", service.write(request)).await?;
            Ok(Response::new(PushResponse { status: true }))
        })
    }
}

struct WriteCall {
    service: Arc<FeatureService>,
}

impl tonic::server::UnaryService<WriteToOnlineStoreRequest> for WriteCall {
    type Response = WriteToOnlineStoreResponse;
    type Future = BoxFuture<Result<Response<WriteToOnlineStoreResponse>, Status>>;

    fn call(&mut self, request: Request<WriteToOnlineStoreRequest>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            let req = request.into_inner();
            let df = one_row(req.features, req.typed_features)?;
            let request = WriteRequest {
                target: Target::View(req.feature_view_name),
                to: Destination::Online,
                df,
            };
            crate::metrics::timed("grpc_write_to_online_store", service.write(request)).await?;
            Ok(Response::new(WriteToOnlineStoreResponse { status: true }))
        })
    }
}

/// A request's row as a one-row `df`: strings as written (parsed by the column's type, as by
/// Feast: `"0.5"` is a float, `"7"` an int64), typed values as their JSON equivalents.
fn one_row(
    features: HashMap<String, String>,
    typed: HashMap<String, PbValue>,
) -> Result<Vec<(String, Vec<J>)>, ServiceError> {
    if !features.is_empty() && !typed.is_empty() {
        return Err(ServiceError::invalid(
            "Only one of features or typed_features may be set, not both",
        ));
    }
    let mut df: Vec<(String, Vec<J>)> = features
        .into_iter()
        .map(|(name, value)| (name, vec![J::String(value)]))
        .collect();
    for (name, value) in typed {
        let value = value.val.map(json).unwrap_or(J::Null);
        df.push((name, vec![value]));
    }
    df.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(df)
}

/// A typed value as the JSON a `df` cell would hold (bytes as base64; a unix timestamp as epoch
/// seconds).
fn json(v: Val) -> J {
    let b64 = |b: &[u8]| J::String(base64::engine::general_purpose::STANDARD.encode(b));
    match v {
        Val::NullVal(_) => J::Null,
        Val::BoolVal(b) => J::Bool(b),
        Val::Int32Val(x) => J::from(x),
        Val::Int64Val(x) | Val::UnixTimestampVal(x) => J::from(x),
        Val::FloatVal(x) => serde_json::Number::from_f64(f64::from(x)).map_or(J::Null, J::Number),
        Val::DoubleVal(x) => serde_json::Number::from_f64(x).map_or(J::Null, J::Number),
        Val::StringVal(s) => J::String(s),
        Val::BytesVal(b) => b64(&b),
        Val::BoolListVal(l) => l.val.into_iter().map(J::Bool).collect(),
        Val::Int32ListVal(l) => l.val.into_iter().map(J::from).collect(),
        Val::Int64ListVal(l) | Val::UnixTimestampListVal(l) => {
            l.val.into_iter().map(J::from).collect()
        }
        Val::FloatListVal(l) => l
            .val
            .into_iter()
            .map(|x| serde_json::Number::from_f64(f64::from(x)).map_or(J::Null, J::Number))
            .collect(),
        Val::DoubleListVal(l) => l
            .val
            .into_iter()
            .map(|x| serde_json::Number::from_f64(x).map_or(J::Null, J::Number))
            .collect(),
        Val::StringListVal(l) => l.val.into_iter().map(J::String).collect(),
        Val::BytesListVal(l) => l.val.iter().map(|b| b64(b)).collect(),
    }
}
