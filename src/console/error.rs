//! The console's one error type: every handler returns [`Page`], and every failure becomes
//! a page here, in one place.

use super::pages::{denied, message};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a console handler answers: a page, or why there is none.
pub type Page = Result<Response, ConsoleError>;

/// Why a console request got no page of its own.
#[derive(Debug)]
pub enum ConsoleError {
    /// Not allowed, not there, or not understood: the "not allowed" page with this status.
    Denied(StatusCode),
    /// Refused for a reason the user can act on (already approved, not found): this
    /// message, with this status.
    Refused(StatusCode, String),
    /// A service failed (the database, a sealed field, the audit log): logged with an
    /// operation id that the page shows, so the officer can quote it; the detail is never
    /// shown.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ConsoleError {
    /// Refused with 403.
    pub fn forbidden() -> ConsoleError {
        ConsoleError::Denied(StatusCode::FORBIDDEN)
    }

    /// Refused with 404.
    pub fn not_found() -> ConsoleError {
        ConsoleError::Denied(StatusCode::NOT_FOUND)
    }

    /// A failure described by a message of ours (no service error behind it).
    pub fn internal(what: impl Into<String>) -> ConsoleError {
        ConsoleError::Internal(what.into().into())
    }
}

// Any service error (store, intake, accounts, broadcasts, audit, templates) is a server
// error: `?` is enough in a handler.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for ConsoleError {
    fn from(e: E) -> ConsoleError {
        ConsoleError::Internal(Box::new(e))
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::Denied(status) => denied(status),
            ConsoleError::Refused(status, text) => message(None, status, "errors", text),
            ConsoleError::Internal(err) => {
                let op = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(operation = %op, error = %err, "console operation failed");
                let t = super::pages::texts();
                message(
                    None,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "errors",
                    format!(
                        "{} {}: {op}",
                        t.get("error.internal"),
                        t.get("console.operation")
                    ),
                )
            }
        }
    }
}
