//! API errors: `{"error": {"code": "...", "message": "..."}}` with the right status.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_actors::HerdError;
use serde_json::json;

/// The body of every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `invalid_input`, `not_found`, `conflict`, `unauthorized`.
    #[schema(example = "not_found")]
    pub code: String,
    /// Human message; names the field for invalid input.
    pub message: String,
}

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human message; names the field for invalid input.
    pub message: String,
}

impl ApiError {
    /// A 400 naming the field.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_input",
            message: format!("invalid {field}: {message}"),
        }
    }

    /// A 404 for an unknown route or resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// A 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<HerdError> for ApiError {
    fn from(e: HerdError) -> Self {
        let status = match &e {
            HerdError::Invalid { .. } | HerdError::Ambiguous { .. } => StatusCode::BAD_REQUEST,
            HerdError::NotFound(_) | HerdError::MessageNotFound { .. } => StatusCode::NOT_FOUND,
            HerdError::Conflict { .. }
            | HerdError::MessageConflict { .. }
            | HerdError::Transition(_) => StatusCode::CONFLICT,
            HerdError::LimitReached { .. } | HerdError::InputFull(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            HerdError::Storage(f) if f.fault == herd_actors::StoreFault::Full => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            HerdError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            HerdError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self {
                status,
                code: "too_large",
                message: "request body is larger than server.body_limit".into(),
            };
        }
        let message = match &r {
            JsonRejection::JsonDataError(_) => {
                format!(
                    "invalid body: {}",
                    r.body_text().trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: "
                    )
                )
            }
            JsonRejection::JsonSyntaxError(_) => format!(
                "invalid body: malformed JSON: {}",
                r.body_text()
                    .trim_start_matches("Failed to parse the request body as JSON: ")
            ),
            JsonRejection::MissingJsonContentType(_) => {
                "invalid body: expected Content-Type: application/json".into()
            }
            _ => format!("invalid body: {}", r.body_text()),
        };
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_input",
            message,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let text = text.trim_start_matches("Failed to deserialize query string: ");
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_input",
            message: format!("invalid query: {text}"),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::invalid("path", r.body_text())
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
