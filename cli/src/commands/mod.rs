//! One module per subcommand.

pub mod embed;
pub mod eval_signals;
pub mod extract;
pub mod fit;
pub mod models;
pub mod score;
pub mod signals;
pub mod watch;

use augur_core::ModelLocator;

/// Parses a count that must be at least 1 (`--chunk-size`, `--batch-size`).
pub fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("give at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{value}` is not a whole number; give at least 1")),
    }
}

/// Model selection flags shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a local directory, a short name (multilingual-e5-small, all-MiniLM-L6-v2) or a
    /// Hugging Face repo id found in the local cache.
    #[arg(long, default_value = augur_core::DEFAULT_MODEL)]
    pub model: String,
    /// Allow downloading the model from the Hugging Face hub if it is not found locally
    /// (needs a build with `--features download`).
    #[arg(long)]
    pub allow_download: bool,
    /// Run the encoder's dense layers with int8 weights and quantised activations: faster on
    /// CPUs with AVX-512 VNNI, embeddings within cosine ≈ 0.999 of f32 (see benches/README.md).
    #[arg(long)]
    pub int8: bool,
}

impl ModelArgs {
    /// The locator these flags describe.
    pub fn locator(&self) -> ModelLocator {
        ModelLocator::from_env().with_allow_download(self.allow_download)
    }
}
