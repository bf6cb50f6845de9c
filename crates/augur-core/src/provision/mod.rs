//! Turning weights that registry packages ship into standard Hugging Face model directories.

pub mod e5s1;

pub use e5s1::{convert_e5s1, ConversionReport};
