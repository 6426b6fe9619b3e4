//! A JSON body extractor whose rejections are [`ApiError`]s. Unlike `axum::Json` it does not
//! insist on `Content-Type: application/json`: the legacy service's clients post
//! `data=json.dumps(...)` without one. The body must arrive within the [`BodyReadTimeout`] the
//! router sets (slow clients get 408 and their connection is closed).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::http::error::{ApiError, ErrorType};

/// How long a request body may take to arrive, set on requests by the router.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// A JSON request body that answers bad bodies with the API's error format.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let timeout = req.extensions().get::<BodyReadTimeout>().map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let read = match timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| ApiError::body_timeout(limit.as_secs_f64()))?,
            None => read.await,
        };
        let bytes = read.map_err(|rejection| {
            let status = rejection.status();
            let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorType::PayloadTooLarge
            } else {
                ErrorType::Validation
            };
            ApiError::new(status, kind, rejection.body_text())
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            use serde_json::error::Category;
            let (status, what) = match e.classify() {
                Category::Data => (StatusCode::UNPROCESSABLE_ENTITY, "invalid request"),
                Category::Syntax | Category::Eof | Category::Io => {
                    (StatusCode::BAD_REQUEST, "body is not valid JSON")
                }
            };
            ApiError::new(status, ErrorType::Validation, format!("{what}: {e}"))
        })
    }
}
