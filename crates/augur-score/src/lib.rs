//! # augur-score
//!
//! Account scores with explanations. The data path: analysed notes grouped per account
//! ([`features::AccountTimeline`]) → [`features`] (signal counts and recency, sentiment trend,
//! engagement, account-table columns; each with zh/en names and evidence) → [`scorer`]
//! (additive logistic scorers whose factors sum to the log-odds) → [`rules`] (events for teams).
//! [`fit`] learns weights from outcome labels; [`live`] scores messages one at a time.

#![warn(missing_docs)]

pub mod error;
pub mod features;
pub mod fit;
pub mod live;
pub mod rules;
pub mod scorer;

pub use error::{Result, ScoreError};
pub use features::{account_features, AccountTimeline, Evidence, Feature, Interaction};
pub use fit::{fit_scorer, FitOptions, FitReport};
pub use live::{LiveScorer, Message, MessageResult};
pub use rules::{Event, Fact, Rules};
pub use scorer::{default_scorer, Factor, Score, Scorer, Target};
