//! API errors: every failure becomes `{"error": "...", "error_type": "..."}` with a 4xx/5xx status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The kind of failure, as TEI names them (plus the HTTP-level ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorType {
    /// The request is malformed or breaks a limit.
    Validation,
    /// Too many requests in flight.
    Overloaded,
    /// The model failed.
    Backend,
    /// A text could not be tokenized.
    Tokenizer,
    /// Nothing to score.
    Empty,
    /// The inference worker is down.
    Unhealthy,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// No such route.
    NotFound,
    /// Body over the payload limit, or more work than one request may ask.
    PayloadTooLarge,
    /// The body did not arrive in time.
    Timeout,
    /// A body type the JSON routes do not take (browser forms).
    UnsupportedMediaType,
}

impl ErrorType {
    /// TEI's `err` label of `te_request_failure` for this kind of failure.
    pub fn tei_name(self) -> &'static str {
        match self {
            ErrorType::Overloaded => "overloaded",
            ErrorType::Backend | ErrorType::Unhealthy => "backend",
            ErrorType::Tokenizer => "tokenizer",
            ErrorType::Empty => "empty",
            _ => "validation",
        }
    }

    /// The name used in the `error_type` field and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Validation => "Validation",
            ErrorType::Overloaded => "Overloaded",
            ErrorType::Backend => "Backend",
            ErrorType::Tokenizer => "Tokenizer",
            ErrorType::Empty => "Empty",
            ErrorType::Unhealthy => "Unhealthy",
            ErrorType::Unauthorized => "Unauthorized",
            ErrorType::NotFound => "NotFound",
            ErrorType::PayloadTooLarge => "PayloadTooLarge",
            ErrorType::Timeout => "Timeout",
            ErrorType::UnsupportedMediaType => "UnsupportedMediaType",
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in one line.
    pub error: String,
    /// The kind of failure.
    pub error_type: ErrorType,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error_type: ErrorType,
    message: String,
}

impl ApiError {
    /// A failure with an explicit status.
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    /// 422: the request breaks a rule.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Validation,
            message,
        )
    }

    /// 400: nothing to score.
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::Empty, message)
    }

    /// 413: the request asks for more work than one request may.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::PayloadTooLarge,
            message,
        )
    }

    /// 408: the body did not arrive in time.
    pub fn body_timeout(seconds: f64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorType::Timeout,
            format!("the request body did not arrive within {seconds} s"),
        )
    }

    /// 429: too many concurrent requests.
    pub fn overloaded(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Overloaded,
            format!("more than {limit} concurrent requests; retry later"),
        )
    }

    /// 503: the inference worker is gone.
    pub fn unhealthy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unhealthy,
            "the inference worker is not running",
        )
    }

    /// 500: the model failed.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Backend,
            message,
        )
    }
}

impl From<rerank::Error> for ApiError {
    fn from(err: rerank::Error) -> Self {
        match err {
            rerank::Error::Input(m) => ApiError::validation(m),
            rerank::Error::Tokenizer(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Tokenizer, m)
            }
            rerank::Error::Model(rerank::ModelError::Input(m)) => ApiError::validation(m),
            other => ApiError::backend(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("rerank_errors_total", "error_type" => self.error_type.as_str())
            .increment(1);
        metrics::counter!("te_request_failure", "err" => self.error_type.tei_name()).increment(1);
        let body = ErrorBody {
            error: self.message,
            error_type: self.error_type,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
