//! API errors: `{"error": {"code": "...", "message": "..."}}` with the status a client
//! expects. The codes are stable (documented in `openapi.json`); messages are for people.
//!
//! | status | codes |
//! |---|---|
//! | 400 | `invalid_input` (a bad field, id, time, duration, cursor; nothing was written) |
//! | 401 | `unauthorized` |
//! | 403 | `cross_site`, `read_only` |
//! | 404 | `unknown_queue`, `job_not_found`, `schedule_not_found`, `no_route` |
//! | 405 | `method_not_allowed` |
//! | 409 | `job_exists`, `job_running`, `job_finished` |
//! | 413 | `payload_too_large` |
//! | 415 | `unsupported_media_type` |
//! | 500 | `internal` |
//! | 503 | `redis_unavailable`, `redis_full`, `redis_refused` |

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::guard::Auth;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Fields added beside `error` (a conflict's job, a bulk request's bad index).
    extra: Option<Value>,
    challenge: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
            challenge: None,
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub(crate) fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub(crate) fn unknown_queue(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_queue",
            format!("no queue {name:?}"),
        )
    }

    pub(crate) fn job_not_found(queue: &str, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no job {id:?} in queue {queue:?}"),
        )
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub(crate) fn unauthorized(auth: &Auth) -> Self {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "credentials missing or wrong",
        );
        e.challenge = Some(match auth {
            Auth::Basic(_) => "Basic realm=\"punctual\", charset=\"UTF-8\"",
            _ => "Bearer realm=\"punctual\"",
        });
        e
    }

    pub(crate) fn cross_site() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "a write from another site's page is refused",
        )
    }

    pub(crate) fn read_only() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this server is read-only (--read-only)",
        )
    }

    /// An extractor's refusal (bad JSON, wrong content type, too large, bad query).
    fn rejected(status: StatusCode, text: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_input",
        };
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, code, text)
    }

    /// The body's `error` object, for a bulk result's failed job.
    pub(crate) fn body(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<punctual::Error> for ApiError {
    fn from(e: punctual::Error) -> Self {
        use punctual::Error as E;
        let (status, code) = match &e {
            e if e.is_input() => (StatusCode::BAD_REQUEST, "invalid_input"),
            E::OutOfMemory { .. } => (StatusCode::SERVICE_UNAVAILABLE, "redis_full"),
            E::PermissionDenied { .. } | E::AuthenticationFailed { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "redis_refused")
            }
            e if e.is_connection_error() => (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable"),
            E::ClusterNotReady { .. } | E::NotReplicated { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "api request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let (Some(Value::Object(extra)), Some(map)) = (self.extra, body.as_object_mut()) {
            map.extend(extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The fallback of unknown paths.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route (see /api/v1/openapi.json)",
    )
}

/// The fallback of a known path with another method.
pub(crate) async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method (see /api/v1/openapi.json)",
    )
}

/// A JSON body; its refusals are [`ApiError`]s.
pub(crate) struct Body<T>(pub(crate) T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(r) => Err(ApiError::rejected(r.status(), r.body_text())),
        }
    }
}

/// Query parameters; their refusals are [`ApiError`]s.
pub(crate) struct Params<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(r) => Err(ApiError::rejected(r.status(), r.body_text())),
        }
    }
}

/// Path parameters; their refusals are [`ApiError`]s.
pub(crate) struct Segments<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Segments<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Segments(value)),
            Err(r) => Err(ApiError::rejected(r.status(), r.body_text())),
        }
    }
}
