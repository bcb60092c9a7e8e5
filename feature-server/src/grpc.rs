//! gRPC adapter (tonic): Feast's `feast.serving.ServingService`. Converts and calls the core.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BufMut;
use quiver_online_store::value_codec::Value;
use quiver_proto::feast::serving::get_online_features_request::Kind;
use quiver_proto::feast::serving::get_online_features_response::FeatureVector;
use quiver_proto::feast::serving::serving_service_server::{ServingService, ServingServiceServer};
use quiver_proto::feast::serving::{
    FeatureList, FeatureViewMetadata, FieldStatus, GetFeastServingInfoRequest,
    GetFeastServingInfoResponse, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse,
    GetOnlineFeaturesResponseMetadata,
};
use quiver_proto::feast::types::{self as pb, value::Val};
use quiver_registry::{ScalarType, ValueType};
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Service, http};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Need};
use crate::error::ServiceError;
use crate::grpc_wire::WireResponse;
use crate::service::{
    EntityValue, FeatureService, OnlineRequest, OnlineResponse, Selection, Status as FieldState,
};

#[derive(Debug, Clone)]
pub struct GrpcService {
    service: Arc<FeatureService>,
}

const GET_ONLINE_FEATURES: &str = "/feast.serving.ServingService/GetOnlineFeatures";

/// `feast.serving.ServingService`, bounded to `max_message_bytes` per request, behind the same
/// token check as HTTP's `/get-online-features`.
///
/// `GetOnlineFeatures` is answered by [`OnlineCall`]: the request decoded by prost, the response
/// written by [`crate::grpc_wire`] straight from the core's result. Every other method goes to
/// tonic's generated server. The generated `get_online_features` (prost messages) stays the
/// reference the wire writer is tested against.
#[derive(Debug, Clone)]
pub struct ServingServer {
    generated: InterceptedService<ServingServiceServer<GrpcService>, AuthInterceptor>,
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
        generated: InterceptedService::new(
            ServingServiceServer::new(GrpcService {
                service: service.clone(),
            })
            .max_decoding_message_size(max_message_bytes),
            AuthInterceptor { auth: auth.clone() },
        ),
        service,
        auth,
        max_message_bytes,
    }
}

impl tonic::server::NamedService for ServingServer {
    const NAME: &'static str = "feast.serving.ServingService";
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<tonic::body::Body>> for ServingServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let deadline = grpc_timeout(req.headers());
        let limit = self.max_message_bytes;
        let call: Self::Future = if req.uri().path() != GET_ONLINE_FEATURES {
            let call = self.generated.call(req);
            Box::pin(async move {
                call.await
                    .map(|r| too_large_is_exhausted(r.map(tonic::body::Body::new), limit))
            })
        } else {
            let header = req.headers().get("authorization").map(|v| v.as_bytes());
            if let Err(e) = self.auth.check(header, Need::OnlineRead) {
                crate::auth::record_failure("grpc", &e);
                let status: Status = e.into();
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
            let call = OnlineCall {
                service: self.service.clone(),
            };
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(OnlineCodec)
                    .apply_max_message_size_config(Some(limit), None);
                Ok(too_large_is_exhausted(grpc.unary(call, req).await, limit))
            })
        };
        match deadline {
            None => call,
            // The client's deadline: past it the call is dropped and answered DEADLINE_EXCEEDED.
            Some(deadline) => Box::pin(async move {
                match tokio::time::timeout(deadline, call).await {
                    Ok(response) => response,
                    Err(_) => Ok(Status::deadline_exceeded(format!(
                        "no answer within the request's grpc-timeout ({deadline:?})"
                    ))
                    .into_http()),
                }
            }),
        }
    }
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

/// Checks the `authorization` metadata (`Bearer <token>`) for `online:read`.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    auth: Arc<Authenticator>,
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        match self.auth.check(header, Need::OnlineRead) {
            Ok(_) => Ok(request),
            Err(e) => {
                crate::auth::record_failure("grpc", &e);
                Err(e.into())
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        if e.code.http_status() >= 500 {
            tracing::error!(error = %e.message, "request failed");
        }
        Status::new(e.code.grpc_code(), e.public_message())
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

#[tonic::async_trait]
impl ServingService for GrpcService {
    async fn get_feast_serving_info(
        &self,
        _: Request<GetFeastServingInfoRequest>,
    ) -> Result<Response<GetFeastServingInfoResponse>, Status> {
        Ok(Response::new(GetFeastServingInfoResponse {
            version: format!("quiver {}", env!("CARGO_PKG_VERSION")),
        }))
    }

    async fn get_online_features(
        &self,
        request: Request<GetOnlineFeaturesRequest>,
    ) -> Result<Response<GetOnlineFeaturesResponse>, Status> {
        let response = online_features(&self.service, request.into_inner()).await?;
        Ok(Response::new(convert_response(response)))
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

pub(crate) fn convert_response(r: OnlineResponse) -> GetOnlineFeaturesResponse {
    let results = r
        .columns
        .into_iter()
        .map(|c| FeatureVector {
            values: c
                .values
                .into_iter()
                .map(|v| pb::Value {
                    val: v.map(|v| to_val(v, c.value_type)),
                })
                .collect(),
            statuses: c.statuses.into_iter().map(|s| status(s) as i32).collect(),
            event_timestamps: c
                .event_ns
                .into_iter()
                .map(|ns| prost_types::Timestamp {
                    seconds: ns.div_euclid(1_000_000_000),
                    nanos: ns.rem_euclid(1_000_000_000) as i32,
                })
                .collect(),
        })
        .collect();
    GetOnlineFeaturesResponse {
        metadata: Some(GetOnlineFeaturesResponseMetadata {
            feature_names: Some(FeatureList { val: r.names }),
            feature_view_metadata: r
                .view_metadata
                .into_iter()
                .map(|(name, version)| FeatureViewMetadata { name, version })
                .collect(),
        }),
        results,
        status: true,
    }
}

fn status(s: FieldState) -> FieldStatus {
    match s {
        FieldState::Present => FieldStatus::Present,
        FieldState::NullValue => FieldStatus::NullValue,
        FieldState::NotFound => FieldStatus::NotFound,
        FieldState::OutsideMaxAge => FieldStatus::OutsideMaxAge,
    }
}

fn to_val(v: Value, t: ValueType) -> Val {
    match (v, t) {
        (Value::Bool(b), _) => Val::BoolVal(b),
        (Value::Int32(x), _) => Val::Int32Val(x),
        (Value::Int64(x), _) => Val::Int64Val(x),
        (Value::Float32(x), _) => Val::FloatVal(x),
        (Value::Float64(x), _) => Val::DoubleVal(x),
        (Value::String(s), _) => Val::StringVal(s),
        (Value::Bytes(b), _) => Val::BytesVal(b),
        (Value::Timestamp(ns), _) => Val::UnixTimestampVal(ns.div_euclid(1_000_000_000)),
        (Value::List(items), ValueType::List(element)) => list_val(element, items),
        (Value::List(_), ValueType::Scalar(_)) => Val::NullVal(pb::Null::Null as i32),
    }
}

/// A list as Feast's typed list message, element for element ([`crate::grpc_wire::Element`]:
/// nulls replaced, never dropped).
fn list_val(element: ScalarType, items: Vec<Option<Value>>) -> Val {
    use crate::grpc_wire::{Element, list_elements};
    let els: Vec<Element<'_>> = list_elements(element, &items).collect();
    let ints = || els.iter().map(|e| e.int());
    let bytes = || {
        els.iter().map(|e| match e {
            Element::Bytes(b) => b.to_vec(),
            _ => Vec::new(),
        })
    };
    match element {
        ScalarType::Bool => Val::BoolListVal(pb::BoolList {
            val: els.iter().map(|e| *e == Element::Bool(true)).collect(),
        }),
        ScalarType::Int32 => Val::Int32ListVal(pb::Int32List {
            val: ints().map(|x| x as i32).collect(),
        }),
        ScalarType::Int64 => Val::Int64ListVal(pb::Int64List {
            val: ints().collect(),
        }),
        ScalarType::Timestamp => Val::UnixTimestampListVal(pb::Int64List {
            val: ints().collect(),
        }),
        ScalarType::Float32 => Val::FloatListVal(pb::FloatList {
            val: els
                .iter()
                .map(|e| match e {
                    Element::F32(x) => *x,
                    _ => f32::NAN,
                })
                .collect(),
        }),
        ScalarType::Float64 => Val::DoubleListVal(pb::DoubleList {
            val: els
                .iter()
                .map(|e| match e {
                    Element::F64(x) => *x,
                    _ => f64::NAN,
                })
                .collect(),
        }),
        ScalarType::String => Val::StringListVal(pb::StringList {
            val: bytes()
                .map(|b| String::from_utf8(b).unwrap_or_default())
                .collect(),
        }),
        ScalarType::Bytes => Val::BytesListVal(pb::BytesList {
            val: bytes().collect(),
        }),
    }
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
