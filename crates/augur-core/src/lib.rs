//! # augur-core
//!
//! The embeddable core of Augur: finds a model offline ([`model`]), runs a BERT-family encoder
//! written against Hugging Face weight names with LoRA-ready layers ([`encoder`]), and turns texts
//! into vectors with batching, long-text chunking and pooling ([`embed`]). [`provision`] converts
//! registry-shipped weights into standard model directories. No polars, no CLI.
//!
//! ```no_run
//! use augur_core::{Embedder, InputKind};
//! let embedder = Embedder::builder("multilingual-e5-small").build()?;
//! let vectors = embedder.embed(&["客户确认产线升级预算已批复"], InputKind::Passage)?;
//! assert_eq!(vectors[0].len(), embedder.dim());
//! # Ok::<(), augur_core::AugurError>(())
//! ```

#![warn(missing_docs)]

pub mod embed;
pub mod encoder;
pub mod error;
pub mod finetune;
pub mod model;
pub mod provision;

pub use embed::{Embedder, EmbedderBuilder, LongTextPolicy};
pub use encoder::{
    AdapterConfig, BertEncoder, LoraAdapter, LoraLinear, LoraPair, RaggedEncoder, RaggedStates,
};
pub use error::{AugurError, Result};
pub use model::{EncoderConfig, InputKind, ModelFiles, ModelLocator, PoolingMode, DEFAULT_MODEL};
