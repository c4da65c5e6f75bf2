//! The gateway's errors, each with the HTTP status it answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid tenant token (unknown tenant, wrong or no token: one answer, see
    /// [`crate::auth`]), or no provider signature where one is required.
    #[error("{0}")]
    Unauthorized(String),
    /// A provider signature that does not match, is too old, or was already used.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The body cannot be read as the provider's format.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client paused its body longer than `request_timeout`.
    #[error("{0}")]
    Timeout(String),
    /// Kafka did not acknowledge every record of the request: the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    /// A setting that cannot work; stops the gateway at startup.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad(msg: impl Into<String>) -> Error {
        Error::BadRequest(msg.into())
    }

    /// A request body that could not be read: 408 when the client paused longer than
    /// `request_timeout` (the body timeout layer), else 400.
    pub fn body(what: &str, e: impl Into<axum::BoxError>) -> Error {
        let e: axum::BoxError = e.into();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
        while let Some(c) = cause {
            if c.is::<tower_http::timeout::TimeoutError>() {
                return Error::Timeout(format!(
                    "{what}: no body bytes for request_timeout: the client paused too long"
                ));
            }
            cause = c.source();
        }
        Error::BadRequest(format!("{what}: {e}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme it wants.
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"tributary\""),
            );
        }
        resp
    }
}
