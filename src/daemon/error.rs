//! The control plane's error: an HTTP status, what went wrong, what to do.

use std::fmt;

/// An error for an API caller. `error` names the problem; `hint` says how
/// to fix it. Both reach the CLI user verbatim.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub hint: String,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            hint: hint.into(),
        }
    }

    pub fn bad_request(error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(400, error, hint)
    }

    pub fn not_found(error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(404, error, hint)
    }

    pub fn conflict(error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(409, error, hint)
    }

    pub fn internal(error: impl fmt::Display) -> ApiError {
        ApiError::new(500, format!("{error:#}"), "see the daemon log for details")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if !self.hint.is_empty() {
            write!(f, " ({})", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(e)
    }
}
