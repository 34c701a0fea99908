//! The API's one error type: JSON `{"error": "...", "status": N}` with the right status code.
//! Internal details are logged once, never returned.

use axum::{
    Json,
    extract::{FromRequestParts, Query, rejection::QueryRejection},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::store::StoreError;

/// What a handler answers when it cannot answer the request, as JSON `{"error", "status"}`: 400
/// for a bad parameter or body, 404 for what does not exist, 500 for a store failure (logged;
/// the body says only "internal error"), 503 for what cannot be answered now.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad parameter: the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error")]
    Internal(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// A 400 whose message, returned as is, names the parameter and what is wrong with it.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    /// The HTTP status this error answers with (400, 404, 500 or 503).
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The body of every error answer: `error`, a message for a person ("internal error" for a
/// store failure), and `status`, the answer's HTTP status code again.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %e, "API request failed.");
        }
        let status = self.status_code();
        let body = ErrorBody {
            error: self.to_string(),
            status: status.as_u16(),
        };
        (status, Json(body)).into_response()
    }
}

/// `Query` whose rejection is our JSON 400 (axum's default is plain text).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e: QueryRejection| ApiError::bad(e.body_text()))
    }
}

/// What a JSON handler returns: `T` serialised with 200, or an [`ApiError`].
pub type ApiResult<T> = Result<axum::Json<T>, ApiError>;
