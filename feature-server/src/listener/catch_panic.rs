//! A request whose handler panics is answered — HTTP 500, or gRPC `INTERNAL` — and the panic is
//! logged; the connection and every other request on it go on. Both ports' routers run inside
//! it. (Should a panic escape anyway, `conn_exec` catches it around the stream and resets only
//! that stream.)

use std::any::Any;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Request, Response, header};
use axum::response::IntoResponse;
use futures::FutureExt;
use tower::Service;

use crate::error::{ErrorCode, ServiceError};

/// Wraps a router: panics while handling a request become that request's error response.
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    pub fn new(inner: S) -> Self {
        CatchPanic { inner }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let grpc = is_grpc(&request);
        let inner = &mut self.inner;
        let call = match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
            Ok(call) => call,
            Err(panic) => return Box::pin(std::future::ready(Ok(answer(grpc, panic)))),
        };
        Box::pin(async move {
            match AssertUnwindSafe(call).catch_unwind().await {
                Ok(response) => response,
                Err(panic) => Ok(answer(grpc, panic)),
            }
        })
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Logs the panic and answers the request that caused it.
fn answer(grpc: bool, panic: Box<dyn Any + Send>) -> Response<Body> {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    metrics::counter!("quiver_request_panics_total").increment(1);
    // Logged (with the message) when it is turned into a response; the client sees "internal
    // error".
    let error = ServiceError::new(
        ErrorCode::Internal,
        format!("a request handler panicked: {what}"),
    );
    if grpc {
        tonic::Status::from(error)
            .into_http::<tonic::body::Body>()
            .map(Body::new)
    } else {
        error.into_response()
    }
}
