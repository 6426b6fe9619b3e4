//! A JSON body extractor whose rejections are [`ApiError`]s, not axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::http::error::{ApiError, ErrorType};

/// `Json<T>` that answers bad bodies with the API's error format.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(rejection_error(rejection)),
        }
    }
}

fn rejection_error(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let error_type = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorType::PayloadTooLarge
    } else {
        ErrorType::Validation
    };
    ApiError::new(status, error_type, rejection.body_text())
}
