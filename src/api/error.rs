//! The API's one error type: JSON `{"error": "...", "status": N}` with the right status code.
//! Internal details are logged once, never returned.

use axum::{
    Json,
    extract::{FromRequestParts, Query, rejection::QueryRejection},
    http::{
        HeaderValue, StatusCode,
        header::{RETRY_AFTER, WWW_AUTHENTICATE},
        request::Parts,
    },
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::store::StoreError;

/// What a handler answers when it cannot answer the request, as JSON `{"error", "status"}`: 400
/// for a bad parameter or body, 401 without a valid token (with `WWW-Authenticate: Bearer`), 403
/// for a token without the scope or the city, 404 for what does not exist (or belongs to a city
/// the caller may not see), 429 over the rate limit (with `Retry-After`), 500 for a store failure
/// (logged; the body says only "internal error"), 503 for what cannot be answered now.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad parameter: the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one that is not valid (the body never says which, nor echoes the token).
    #[error("a valid bearer token is required")]
    Unauthorized { invalid_token: bool },
    /// A valid token without the scope or the city the request needs.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Over the rate limit; retry after this long.
    #[error("too many requests; retry in {} s", .0.as_secs().max(1))]
    TooManyRequests(std::time::Duration),
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

    /// The HTTP status this error answers with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
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
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized { invalid_token } => {
                let challenge = if invalid_token {
                    r#"Bearer realm="ioc-aggregator", error="invalid_token""#
                } else {
                    r#"Bearer realm="ioc-aggregator""#
                };
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            ApiError::TooManyRequests(wait) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            }
            _ => {}
        }
        response
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

/// The query of a route that takes no parameters: any parameter is a 400 naming it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// What a JSON handler returns: `T` serialised with 200, or an [`ApiError`].
pub type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// Every error answer as JSON: what axum and tower-http answer on their own (a 405, a
/// timeout's 503, a path that does not parse) gets `{"error", "status"}` like ours, keeping its
/// headers (`Allow`, `Retry-After`, …).
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let json = (response.headers().get(axum::http::header::CONTENT_TYPE))
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut answer = (
        status,
        Json(ErrorBody {
            error,
            status: status.as_u16(),
        }),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}
