//! One table from error kind to HTTP status and gRPC code, used by both adapters.

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or names something that does not exist.
    InvalidArgument,
    /// The request is larger than the configured limits allow.
    TooLarge,
    /// The online store (or the registry) cannot be reached in time; retry later.
    Unavailable,
    /// No valid bearer token.
    Unauthenticated,
    /// A valid token without the scope the endpoint needs.
    PermissionDenied,
    /// A bug or corrupt data: details go to the log, not to the client.
    Internal,
    /// The client did not send its request body in time (`serving.body_timeout_ms`).
    RequestTimeout,
    /// The request names a feature view the registry does not serve.
    ViewNotFound,
    /// The request names a feature service the registry does not have.
    ServiceNotFound,
    /// Two requested features would be one output column (or one feature is asked twice).
    NameCollision,
    /// A push names a push source the registry does not have.
    PushSourceNotFound,
    /// A write whose body is not declared as JSON.
    UnsupportedMediaType,
    /// A registry version (or other console resource) that does not exist.
    NotFound,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::Internal => 500,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::ViewNotFound | ErrorCode::ServiceNotFound => 404,
            ErrorCode::NameCollision => 400,
            // Feast's server answers 422 for it.
            ErrorCode::PushSourceNotFound => 422,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::NotFound => 404,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::TooLarge => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Internal => tonic::Code::Internal,
            ErrorCode::RequestTimeout => tonic::Code::DeadlineExceeded,
            ErrorCode::ViewNotFound | ErrorCode::ServiceNotFound => tonic::Code::NotFound,
            ErrorCode::NameCollision => tonic::Code::InvalidArgument,
            ErrorCode::PushSourceNotFound => tonic::Code::NotFound,
            ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
        }
    }

    /// The class in Feast's `feast.errors` for this error, when Feast has one: the HTTP body
    /// then takes Feast's shape, which Feast's SDK turns back into that exception.
    pub fn feast_class(self) -> Option<&'static str> {
        match self {
            ErrorCode::ViewNotFound => Some("FeatureViewNotFoundException"),
            ErrorCode::ServiceNotFound => Some("FeatureServiceNotFoundException"),
            ErrorCode::NameCollision => Some("FeatureNameCollisionError"),
            ErrorCode::PushSourceNotFound => Some("PushSourceNotFoundException"),
            _ => None,
        }
    }
}

/// What a client is told when a store does not answer (in time).
pub const UNAVAILABLE_MESSAGE: &str =
    "the online store is unavailable or did not answer in time; retry later";

/// What a client is told when an offline push's object store does not answer (in time).
pub const OFFLINE_UNAVAILABLE_MESSAGE: &str = "the batch source's store (offline history) is unavailable or did not answer in time; nothing was written online; retry later";

/// What a training request is told when a source's object store or the engine's cluster does
/// not answer (in time).
pub const TRAINING_UNAVAILABLE_MESSAGE: &str = "the offline data or engine (a source's object store, or the Ballista cluster of `engine:`) is unavailable or did not answer in time; nothing was computed; retry later";

/// What a console request is told when the registry store (versions, run records) does not
/// answer.
pub const REGISTRY_UNAVAILABLE_MESSAGE: &str = "the registry store (versions, run records) is unavailable or did not answer in time; retry later";

/// How a console request is told that the registry store lost the version being served (it is
/// shown whole: it names no address).
pub const REGISTRY_MOVED: &str = "the registry store no longer holds the served version";

/// What a client is told while the server has no registry version to serve yet (the registry
/// store was unreachable at start).
pub const REGISTRY_NOT_LOADED: &str =
    "no registry version loaded yet (the registry store is unreachable); retry later";

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError {
            code: ErrorCode::InvalidArgument,
            message: message.into(),
        }
    }

    /// An error of `code` (one of the kinds with no constructor of their own).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ServiceError {
            code: ErrorCode::TooLarge,
            message: message.into(),
        }
    }

    /// A body over one of the `serving` limits of `quiver.yaml`: names the limit and `key`,
    /// the setting that raises it.
    pub fn body_too_large(what: &str, limit: u64, key: &str) -> Self {
        Self::too_large(format!(
            "{what} is larger than the limit of {limit} bytes; raise `serving.{key}` in quiver.yaml to accept it"
        ))
    }

    /// No registry version loaded yet: 503 / `UNAVAILABLE`.
    pub fn registry_not_loaded() -> Self {
        ServiceError {
            code: ErrorCode::Unavailable,
            message: REGISTRY_NOT_LOADED.into(),
        }
    }

    /// A request body that did not arrive within `serving.body_timeout_ms`: 408.
    pub fn body_timeout(timeout: std::time::Duration) -> Self {
        ServiceError {
            code: ErrorCode::RequestTimeout,
            message: format!(
                "the request body did not arrive within {} ms (`serving.body_timeout_ms`)",
                timeout.as_millis()
            ),
        }
    }

    /// What the client sees: the message, except for internal errors and an unavailable store,
    /// whose details (addresses, paths) go to the log only.
    pub fn public_message(&self) -> &str {
        match self.code {
            ErrorCode::Internal => "internal error",
            ErrorCode::Unavailable if self.message == REGISTRY_NOT_LOADED => REGISTRY_NOT_LOADED,
            ErrorCode::Unavailable if self.message.starts_with("offline push") => {
                OFFLINE_UNAVAILABLE_MESSAGE
            }
            ErrorCode::Unavailable if self.message.starts_with("training: ") => {
                TRAINING_UNAVAILABLE_MESSAGE
            }
            // What a user can act on, and holds no address.
            ErrorCode::Unavailable if self.message.starts_with(REGISTRY_MOVED) => &self.message,
            ErrorCode::Unavailable if self.message.starts_with("registry store: ") => {
                REGISTRY_UNAVAILABLE_MESSAGE
            }
            ErrorCode::Unavailable => UNAVAILABLE_MESSAGE,
            _ => &self.message,
        }
    }
}

impl From<quiver_online_store::Error> for ServiceError {
    fn from(e: quiver_online_store::Error) -> Self {
        let code = match e {
            quiver_online_store::Error::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ServiceError {
            code,
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that does not answer is a 503 / UNAVAILABLE whose public message names no
    /// address; the detail stays in `message`, for the log.
    #[test]
    fn unavailable_stores_are_not_described_to_clients() {
        let e = ServiceError::from(quiver_online_store::Error::Unavailable(
            "redis://***@10.1.2.3:6379: Connection refused (os error 111)".into(),
        ));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.code.http_status(), 503);
        assert_eq!(e.public_message(), UNAVAILABLE_MESSAGE);
        assert!(e.message.contains("10.1.2.3"), "kept for the log");
        let too_large = ServiceError::too_large("over the limit");
        assert_eq!(too_large.public_message(), "over the limit");
        // An offline push's object store is named as such, never as the online store.
        let offline = ServiceError::new(
            ErrorCode::Unavailable,
            "offline push: batch source `b`: listing s3://lake/x/: the endpoint did not answer",
        );
        assert_eq!(offline.public_message(), OFFLINE_UNAVAILABLE_MESSAGE);
        let training = ServiceError::new(
            ErrorCode::Unavailable,
            "training: the Ballista scheduler at df://10.1.2.3:50050 cannot be reached",
        );
        assert_eq!(training.public_message(), TRAINING_UNAVAILABLE_MESSAGE);
    }
}
