//! Errors of scoring: model files, rules files and inputs, each naming the file and field.

use std::path::PathBuf;

/// Everything that can go wrong in `augur-score`.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A scorer model or rules file is malformed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Fitting is impossible with this data (e.g. one class only).
    #[error("cannot fit: {0}")]
    Fit(String),
}

/// Result alias for `augur-score`.
pub type Result<T, E = ScoreError> = std::result::Result<T, E>;
