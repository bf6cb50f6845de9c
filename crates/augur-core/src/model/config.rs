//! What a model directory says about itself: `config.json` (the architecture) and the
//! sentence-transformers files (pooling, prompts) that decide how embeddings are made.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io_error, AugurError, Result};

/// The BERT architecture as stored in a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Rows of the word-embedding matrix.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding matrix.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the feed-forward layer (`gelu` is the exact, erf-based GELU).
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: u32,
    /// `bert` (or absent); RoBERTa-family types are refused: their position ids start after the
    /// padding id, which this encoder does not do.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Position embedding scheme; only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

/// Model types whose position embeddings are offset by the padding id.
const ROBERTA_FAMILY: [&str; 4] = ["roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"];

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_string()
}

impl EncoderConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let config: Self = serde_json::from_str(&text).map_err(|source| AugurError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The activation, or an error naming the file when it is not one the encoder implements.
    pub fn activation(&self, path: &Path) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(AugurError::UnsupportedConfig {
                file: path.to_path_buf(),
                message: format!("hidden_act `{other}` is not supported; expected gelu, gelu_new, gelu_pytorch_tanh or relu"),
            }),
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        let unsupported = |message: String| AugurError::UnsupportedConfig {
            file: path.to_path_buf(),
            message,
        };
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(unsupported(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if let Some(kind) = self
            .model_type
            .as_deref()
            .filter(|kind| ROBERTA_FAMILY.contains(kind))
        {
            return Err(unsupported(format!(
                "model_type `{kind}` is not supported: its position ids start at pad_token_id + 1, and this encoder implements BERT's (from 0); use a BERT-type model (`model_type`: `bert`)"
            )));
        }
        if let Some(kind) = &self.position_embedding_type {
            if kind != "absolute" {
                return Err(unsupported(format!(
                    "position_embedding_type `{kind}` is not supported; expected `absolute`"
                )));
            }
        }
        self.activation(path)?;
        Ok(())
    }
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (`0.5·x·(1+erf(x/√2))`), Hugging Face's `gelu`.
    GeluErf,
    /// Tanh approximation of GELU.
    GeluTanh,
    /// Rectified linear unit.
    Relu,
}

/// How token states become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolingMode {
    /// Mean of the token states, padding excluded.
    Mean,
    /// The state of the first token (`[CLS]` / `<s>`).
    Cls,
}

/// Which role a text plays, for models (such as e5) trained with input prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A search query or a short probe (`query: ` for e5).
    Query,
    /// A document or note (`passage: ` for e5).
    Passage,
}

/// Embedding settings taken from the model card files (sentence-transformers layout).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCardSettings {
    /// Pooling from `1_Pooling/config.json`; mean when absent.
    pub pooling: PoolingMode,
    /// Prefixes from `config_sentence_transformers.json` → `prompts` (`query`, `passage`).
    pub prompts: BTreeMap<String, String>,
    /// Whether `modules.json` lists a `Normalize` module.
    pub normalize: bool,
    /// `max_seq_length` from `sentence_bert_config.json`, if given.
    pub max_seq_length: Option<usize>,
}

impl Default for ModelCardSettings {
    fn default() -> Self {
        Self {
            pooling: PoolingMode::Mean,
            prompts: BTreeMap::new(),
            normalize: false,
            max_seq_length: None,
        }
    }
}

impl ModelCardSettings {
    /// Reads whatever of the sentence-transformers files exist in `dir`; absent files keep defaults.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut settings = Self::default();
        if let Some(pooling) =
            read_optional_json::<PoolingFile>(&dir.join("1_Pooling/config.json"))?
        {
            settings.pooling = if pooling.pooling_mode_cls_token {
                PoolingMode::Cls
            } else {
                PoolingMode::Mean
            };
        }
        if let Some(st) = read_optional_json::<SentenceTransformersFile>(
            &dir.join("config_sentence_transformers.json"),
        )? {
            settings.prompts = st.prompts;
        }
        if let Some(modules) = read_optional_json::<Vec<ModuleEntry>>(&dir.join("modules.json"))? {
            settings.normalize = modules.iter().any(|m| m.kind.ends_with("Normalize"));
        }
        if let Some(sbert) =
            read_optional_json::<SentenceBertFile>(&dir.join("sentence_bert_config.json"))?
        {
            settings.max_seq_length = sbert.max_seq_length;
        }
        Ok(settings)
    }

    /// The prefix to put before a text of this kind ("" when the model has none).
    pub fn prefix(&self, kind: InputKind) -> &str {
        let key = match kind {
            InputKind::Query => "query",
            InputKind::Passage => "passage",
        };
        self.prompts.get(key).map(String::as_str).unwrap_or("")
    }
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

#[derive(Deserialize)]
struct SentenceTransformersFile {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SentenceBertFile {
    #[serde(default)]
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

fn read_optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| AugurError::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}
