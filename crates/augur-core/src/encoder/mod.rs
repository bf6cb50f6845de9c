//! The transformer encoder: BERT-family forward pass over Hugging Face weight names.

pub mod adapter;
pub mod bert;
mod int8;
mod kernels;
pub mod linear;
pub mod ragged;

pub use adapter::{AdapterConfig, LoraAdapter};
pub use bert::{BertEncoder, EncoderLayer};
pub use linear::{LoraLinear, LoraPair};
pub use ragged::{RaggedEncoder, RaggedStates};
