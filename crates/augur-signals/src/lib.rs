//! # augur-signals
//!
//! Buying and risk signals from what customers and reps write. The data path:
//! [`pack`] (taxonomy + examples) → [`segment`] (clauses, offsets, speakers) → embeddings
//! (`augur-core`) → [`classify`] (few-shot heads) → [`extract`] (hits with evidence, attributes,
//! [`dates`], sentiment) → [`eval`] (precision / recall against a gold corpus).
//!
//! ```no_run
//! use augur_core::Embedder;
//! use augur_signals::{Note, SignalExtractor};
//! let extractor = SignalExtractor::builder(Embedder::builder("multilingual-e5-small").build()?).build()?;
//! let found = extractor.extract(&Note::new("n1", "客户确认产线升级预算已批复"))?;
//! for hit in &found.hits {
//!     println!("{} {:.2} {}", hit.signal, hit.probability, hit.evidence);
//! }
//! # Ok::<(), augur_signals::SignalError>(())
//! ```

#![warn(missing_docs)]

pub mod cache;
pub mod classify;
pub mod corpus;
pub mod dates;
pub mod error;
pub mod eval;
pub mod extract;
pub mod lexical;
pub mod pack;
pub mod segment;

pub use error::{Result, SignalError};
pub use extract::{ClauseScores, Hit, Note, NoteSignals, SignalExtractor, SignalExtractorBuilder};
pub use pack::{SignalDef, SignalKind, SignalPack};
pub use segment::{ClauseSegmenter, Segment, Segmenter, Speaker, SpeakerRules};
