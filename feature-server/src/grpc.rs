//! gRPC adapter (tonic): Feast's `feast.serving.ServingService`. Converts and calls the core.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BufMut;
use quiver_proto::feast::serving::get_online_features_request::Kind;
use quiver_proto::feast::serving::{
    FeatureList, GetFeastServingInfoRequest, GetFeastServingInfoResponse, GetOnlineFeaturesRequest,
};
use quiver_proto::feast::types::value::Val;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Service, http};
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Need};
use crate::error::ServiceError;
use crate::grpc_wire::WireResponse;
use crate::service::{EntityValue, FeatureService, OnlineRequest, OnlineResponse, Selection};

mod push;
pub use push::PushServer;

const GET_ONLINE_FEATURES: &str = "/feast.serving.ServingService/GetOnlineFeatures";
const GET_FEAST_SERVING_INFO: &str = "/feast.serving.ServingService/GetFeastServingInfo";

/// `feast.serving.ServingService`, bounded to `max_message_bytes` per request, behind the same
/// token check as HTTP's `/get-online-features` (for every method, as tonic's interceptors do).
///
/// Requests are decoded by prost. `GetOnlineFeatures` answers with [`WireResponse`]: the
/// response written by [`crate::grpc_wire`] straight from the core's result (its test holds it
/// byte for byte to prost's encoding of the same message). An unknown method is
/// `UNIMPLEMENTED`.
#[derive(Debug, Clone)]
pub struct ServingServer {
    service: Arc<FeatureService>,
    auth: Arc<Authenticator>,
    max_message_bytes: usize,
}

pub fn grpc_service(
    service: Arc<FeatureService>,
    max_message_bytes: usize,
    auth: Arc<Authenticator>,
) -> ServingServer {
    ServingServer {
        service,
        auth,
        max_message_bytes,
    }
}

impl tonic::server::NamedService for ServingServer {
    const NAME: &'static str = "feast.serving.ServingService";
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;
type HttpResult = Result<http::Response<tonic::body::Body>, std::convert::Infallible>;

impl Service<http::Request<tonic::body::Body>> for ServingServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<HttpResult>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let header = req.headers().get("authorization").map(|v| v.as_bytes());
        if let Err(e) = self.auth.check(header, Need::OnlineRead) {
            crate::auth::record_failure("grpc", &e);
            return answer(Status::from(e));
        }
        let deadline = grpc_timeout(req.headers());
        let limit = self.max_message_bytes;
        let call: Self::Future = match req.uri().path() {
            GET_ONLINE_FEATURES => self.online(req),
            GET_FEAST_SERVING_INFO => unary(InfoCall, req, limit),
            other => {
                return answer(Status::unimplemented(format!(
                    "{other}: no such method in feast.serving.ServingService"
                )));
            }
        };
        with_deadline(deadline, call)
    }
}

impl ServingServer {
    /// `GetOnlineFeatures` (of either service), its token already checked.
    fn online(&self, req: http::Request<tonic::body::Body>) -> BoxFuture<HttpResult> {
        let call = OnlineCall {
            service: self.service.clone(),
        };
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(OnlineCodec)
                .apply_max_message_size_config(Some(limit), None);
            Ok(too_large_is_exhausted(grpc.unary(call, req).await, limit))
        })
    }
}

/// A unary call whose messages prost decodes and encodes.
fn unary<S, Req, Resp>(
    call: S,
    req: http::Request<tonic::body::Body>,
    limit: usize,
) -> BoxFuture<HttpResult>
where
    S: tonic::server::UnaryService<Req, Response = Resp> + Send + 'static,
    S::Future: Send,
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Box::pin(async move {
        let codec = tonic_prost::ProstCodec::<Resp, Req>::default();
        let mut grpc =
            tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(limit), None);
        Ok(too_large_is_exhausted(grpc.unary(call, req).await, limit))
    })
}

/// `call`, bounded by the client's deadline: past it the call is dropped and answered
/// DEADLINE_EXCEEDED.
fn with_deadline(
    deadline: Option<std::time::Duration>,
    call: BoxFuture<HttpResult>,
) -> BoxFuture<HttpResult> {
    match deadline {
        None => call,
        Some(deadline) => Box::pin(async move {
            match tokio::time::timeout(deadline, call).await {
                Ok(response) => response,
                Err(_) => {
                    count_error(tonic::Code::DeadlineExceeded);
                    Ok(Status::deadline_exceeded(format!(
                        "no answer within the request's grpc-timeout ({deadline:?})"
                    ))
                    .into_http())
                }
            }
        }),
    }
}

/// Counts a call answered with `code` in `quiver_request_errors_total{protocol="grpc", code}`.
pub(crate) fn count_error(code: tonic::Code) {
    metrics::counter!("quiver_request_errors_total", "protocol" => "grpc", "code" => format!("{code:?}"))
        .increment(1);
}

/// A call answered at once with `status`.
fn answer(status: Status) -> BoxFuture<HttpResult> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}

/// tonic refuses a request message over the decoding limit with `OUT_OF_RANGE`; gRPC's status
/// codes (and HTTP's 413 on the other port) say `RESOURCE_EXHAUSTED` for that, and clients retry
/// or alert on it as such.
fn too_large_is_exhausted(
    response: http::Response<tonic::body::Body>,
    limit: usize,
) -> http::Response<tonic::body::Body> {
    let out_of_range = response
        .headers()
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11");
    if !out_of_range {
        return response;
    }
    count_error(tonic::Code::ResourceExhausted);
    Status::resource_exhausted(format!(
        "request message larger than {limit} bytes (serving.max_request_bytes)"
    ))
    .into_http()
}

/// The `grpc-timeout` request header: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
/// A malformed value is ignored, as gRPC servers do.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        if e.code.http_status() >= 500 {
            tracing::error!(error = %e.message, "request failed");
        }
        let code = e.code.grpc_code();
        count_error(code);
        Status::new(code, e.public_message())
    }
}

/// One `GetOnlineFeatures` call: convert, ask the core, time it.
async fn online_features(
    service: &FeatureService,
    request: GetOnlineFeaturesRequest,
) -> Result<OnlineResponse, Status> {
    let started = Instant::now();
    let result = async {
        let req = convert_request(request)?;
        service.get_online_features(req).await
    }
    .await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("quiver_request_duration_seconds", "endpoint" => "grpc_get_online_features", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    Ok(result?)
}

/// `GetFeastServingInfo`: the server's name and version.
#[derive(Debug, Clone, Copy)]
struct InfoCall;

impl tonic::server::UnaryService<GetFeastServingInfoRequest> for InfoCall {
    type Response = GetFeastServingInfoResponse;
    type Future = std::future::Ready<Result<Response<GetFeastServingInfoResponse>, Status>>;

    fn call(&mut self, _: Request<GetFeastServingInfoRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(GetFeastServingInfoResponse {
            version: format!("quiver {}", env!("CARGO_PKG_VERSION")),
        })))
    }
}

/// The served `GetOnlineFeatures`: its response leaves as [`WireResponse`].
#[derive(Debug, Clone)]
struct OnlineCall {
    service: Arc<FeatureService>,
}

impl tonic::server::UnaryService<GetOnlineFeaturesRequest> for OnlineCall {
    type Response = WireResponse;
    type Future = BoxFuture<Result<Response<WireResponse>, Status>>;

    fn call(&mut self, request: Request<GetOnlineFeaturesRequest>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            let response = online_features(&service, request.into_inner()).await?;
            Ok(Response::new(WireResponse(response)))
        })
    }
}

/// Requests decoded by prost; responses written by [`crate::grpc_wire`].
#[derive(Debug, Clone, Copy, Default)]
struct OnlineCodec;

impl Codec for OnlineCodec {
    type Encode = WireResponse;
    type Decode = GetOnlineFeaturesRequest;
    type Encoder = WireEncoder;
    type Decoder = tonic_prost::ProstDecoder<GetOnlineFeaturesRequest>;

    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = WireResponse;
    type Error = Status;

    fn encode(&mut self, item: WireResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // Written to a plain Vec (cheap byte pushes), then copied once into tonic's buffer.
        let mut out = Vec::with_capacity(crate::grpc_wire::size_hint(&item.0));
        crate::grpc_wire::encode(&item.0, &mut out);
        dst.put_slice(&out);
        Ok(())
    }
}

/// `request_context` (request data for on-demand features, of which there are none here) is
/// ignored, as Feast ignores it without them.
fn convert_request(req: GetOnlineFeaturesRequest) -> Result<OnlineRequest, ServiceError> {
    let selection = match req.kind {
        Some(Kind::FeatureService(s)) => Selection::Service(s),
        Some(Kind::Features(FeatureList { val })) => Selection::Refs(val),
        None => {
            return Err(ServiceError::invalid(
                "give `features` or `feature_service`",
            ));
        }
    };
    let mut entities: Vec<(String, Vec<EntityValue>)> = req
        .entities
        .into_iter()
        .map(|(name, values)| {
            let values = values
                .val
                .into_iter()
                .map(|v| match v.val {
                    None | Some(Val::NullVal(_)) => EntityValue::Null,
                    Some(Val::Int64Val(i)) => EntityValue::Int(i),
                    Some(Val::Int32Val(i)) => EntityValue::Int(i64::from(i)),
                    Some(Val::StringVal(s)) => EntityValue::Str(s),
                    Some(Val::BytesVal(b)) => EntityValue::Bytes(b),
                    Some(other) => EntityValue::Invalid(format!(
                        "entities.{name}: {other:?} cannot be an entity key"
                    )),
                })
                .collect();
            (name, values)
        })
        .collect();
    // A protobuf map has no order; keep messages deterministic.
    entities.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(OnlineRequest {
        selection,
        entities,
        full_feature_names: req.full_feature_names,
        include_view_metadata: req.include_feature_view_version_metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::grpc_timeout;
    use std::time::Duration;
    use tonic::codegen::http::{HeaderMap, HeaderValue};

    fn parse(v: &str) -> Option<Duration> {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
        grpc_timeout(&h)
    }

    #[test]
    fn grpc_timeout_values_follow_the_spec() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
        for bad in [
            "",
            "m",
            "100",
            "123456789S",
            "1.5S",
            "-1S",
            "10s",
            "10 S",
            "1x",
            "ms",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
