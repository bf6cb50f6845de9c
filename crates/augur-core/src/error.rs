//! The one error type of the core, with enough context to act on.

use std::path::PathBuf;

/// Everything that can go wrong in `augur-core`. Each variant names the file, tensor or input
/// involved and, where there is one, the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum AugurError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A model name resolved to nothing; `searched` lists every place that was tried.
    #[error("model `{name}` not found. Looked in:\n{}\n{hint}", searched.iter().map(|s| format!("  - {s}")).collect::<Vec<_>>().join("\n"))]
    ModelNotFound {
        /// The name as given (a directory or a Hugging Face repo id).
        name: String,
        /// Every location that was searched, in order.
        searched: Vec<String>,
        /// What to run to provision it.
        hint: String,
    },

    /// A model directory lacks a required file.
    #[error("{dir}: missing `{file}` ({hint})")]
    MissingModelFile {
        /// The model directory.
        dir: PathBuf,
        /// The file that was expected there.
        file: String,
        /// What the file is for or how to get it.
        hint: String,
    },

    /// A JSON file could not be parsed as expected.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (line and column included).
        source: serde_json::Error,
    },

    /// A tensor the config calls for is absent from the weights file.
    #[error("{file}: tensor `{tensor}` is missing (expected shape {expected:?} from config.json)")]
    MissingTensor {
        /// The weights file.
        file: PathBuf,
        /// Hugging Face name of the tensor.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
    },

    /// A tensor's shape disagrees with config.json.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, config.json implies {expected:?}")]
    ShapeMismatch {
        /// The weights file.
        file: PathBuf,
        /// Hugging Face name of the tensor.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape stored in the file.
        found: Vec<usize>,
    },

    /// The tokenizer produces ids the model has no embedding for.
    #[error("{file}: tokenizer has {tokenizer_vocab} tokens but the model's vocab_size is {model_vocab}; tokenizer and weights do not belong together")]
    VocabMismatch {
        /// The tokenizer file.
        file: PathBuf,
        /// Tokens known to the tokenizer (added tokens included).
        tokenizer_vocab: usize,
        /// `vocab_size` from config.json.
        model_vocab: usize,
    },

    /// The tokenizer failed to load or to encode.
    #[error("tokenizer {context}: {message}")]
    Tokenizer {
        /// The file or the input involved.
        context: String,
        /// The tokenizer's message.
        message: String,
    },

    /// A config value is outside what the encoder supports.
    #[error("{file}: {message}")]
    UnsupportedConfig {
        /// The config file.
        file: PathBuf,
        /// What is unsupported and what is expected.
        message: String,
    },

    /// A binary container (such as E5S1) is malformed.
    #[error("{path}: at byte {offset}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What was expected and what was found.
        message: String,
    },

    /// The model is not available locally and downloading is off.
    #[error("model `{name}` is not available offline and downloading is disabled: {hint}")]
    DownloadDisabled {
        /// The repo id.
        name: String,
        /// How to enable downloading or provision the model.
        hint: String,
    },

    /// Tensor arithmetic failed; `context` says where.
    #[error("{context}: {source}")]
    Candle {
        /// The step that failed.
        context: String,
        /// The error from candle.
        source: candle_core::Error,
    },

    /// A LoRA adapter does not fit the model or is malformed.
    #[error("{path}: {message}")]
    Adapter {
        /// The adapter file.
        path: PathBuf,
        /// What does not fit, and what was expected.
        message: String,
    },

    /// A caller-supplied argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result alias for `augur-core`.
pub type Result<T, E = AugurError> = std::result::Result<T, E>;

/// Adds a description of the failing step to a candle error.
pub trait CandleContext<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with a lazily built context.
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T>;
}

impl<T> CandleContext<T> for std::result::Result<T, candle_core::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| AugurError::Candle {
            context: context.into(),
            source,
        })
    }
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| AugurError::Candle {
            context: context().into(),
            source,
        })
    }
}

/// Builds an [`AugurError::Io`] for `path`.
pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AugurError {
    let path = path.into();
    move |source| AugurError::Io { path, source }
}
