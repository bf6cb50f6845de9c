//! Errors of signal extraction: pack loading (file, line, field), input, and the core's errors.

use std::path::PathBuf;

/// Everything that can go wrong in `augur-signals`.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// A signal pack is malformed; `line` is 1-based.
    #[error("{origin}:{line}: {field}: {message}")]
    Pack {
        /// File path, or `built-in` for the pack compiled into the binary.
        origin: String,
        /// Line of the offending value.
        line: usize,
        /// The field, e.g. `signal[installed_base].attribute[plc_model].regex`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A gold-standard file is malformed.
    #[error("{path}:{line}: {message}")]
    Gold {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A second annotation does not match the gold notes it is scored against.
    #[error("{path}: {message}")]
    Annotation {
        /// The annotation file.
        path: PathBuf,
        /// Which note, and what does not match.
        message: String,
    },
    /// A fitted classifier (`--adapter`) does not fit the pack.
    #[error("adapter: {0}")]
    Classifier(String),
    /// An extractor setting does not fit the model (e.g. a middle layer past its last layer).
    #[error("extractor setting: {0}")]
    Setting(String),
    /// The encoder failed.
    #[error(transparent)]
    Core(#[from] augur_core::AugurError),
}

/// Result alias for `augur-signals`.
pub type Result<T, E = SignalError> = std::result::Result<T, E>;
