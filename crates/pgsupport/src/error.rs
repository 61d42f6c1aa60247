//! Errors in PostgreSQL's message style: a lower-case primary message, a
//! DETAIL with the offending value, a HINT with the fix, and a precise
//! SQLSTATE.
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub use pgrx::PgSqlErrorCode as SqlState;

/// A message to report, built up and then raised (ERROR) or logged.
#[derive(Debug, Clone)]
pub struct Report {
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl Report {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Report {
        Report {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Report {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Report {
        self.hint = Some(hint.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    fn into_report(self, origin: &'static str) -> ErrorReport {
        let mut report = ErrorReport::new(self.code, self.message, origin);
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report
    }

    /// Raises it as an ERROR; `origin` names the extension (the function
    /// name PostgreSQL records for the error's location).
    #[track_caller]
    pub fn raise(self, origin: &'static str) -> ! {
        self.into_report(origin).report(PgLogLevel::ERROR);
        unreachable!("an ERROR does not return")
    }

    /// Reports it at `level` (WARNING, LOG, ...) and returns.
    pub fn log(self, origin: &'static str, level: PgLogLevel) {
        debug_assert!(level != PgLogLevel::ERROR && level != PgLogLevel::FATAL);
        self.into_report(origin).report(level);
    }
}

/// Raises an ERROR with a DETAIL and a HINT.
#[track_caller]
pub fn raise(
    origin: &'static str,
    code: PgSqlErrorCode,
    message: impl Into<String>,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> ! {
    Report::new(code, message)
        .detail(detail)
        .hint(hint)
        .raise(origin)
}
