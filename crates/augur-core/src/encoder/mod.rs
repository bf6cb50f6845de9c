//! The transformer encoder: BERT-family forward pass over Hugging Face weight names.

pub mod adapter;
pub mod bert;
pub mod linear;

pub use adapter::{AdapterConfig, LoraAdapter};
pub use bert::{BertEncoder, EncoderLayer};
pub use linear::{LoraLinear, LoraPair};
