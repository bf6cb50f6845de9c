//! Real-time scoring: load once, then score one message at a time from many threads, keeping
//! each account's timeline in memory so every message updates that account's scores.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use augur_signals::{Hit, Note, SignalError, SignalExtractor};
use chrono::NaiveDate;
use serde::Serialize;

use crate::features::{account_features, AccountTimeline, Interaction};
use crate::scorer::{default_scorer, Scorer, Target};

/// One incoming message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Message id (echoed back).
    pub id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// When it was written.
    pub date: NaiveDate,
    /// The text.
    pub text: String,
}

/// What one message produced.
#[derive(Debug, Clone, Serialize)]
pub struct MessageResult {
    /// Message id.
    pub id: String,
    /// Account id.
    pub account_id: String,
    /// Signals in the message.
    pub signals: Vec<Hit>,
    /// The message's sentiment (−1..1).
    pub sentiment: f32,
    /// The account's churn risk after this message (0–100).
    pub churn_risk: f64,
    /// Its band.
    pub churn_band: String,
    /// The account's lead intent after this message (0–100).
    pub lead_intent: f64,
    /// Its band.
    pub lead_band: String,
    /// The top churn factor's feature id, if any.
    pub top_churn_factor: Option<String>,
    /// Messages seen for this account so far.
    pub account_messages: usize,
    /// Time spent on this message, in milliseconds.
    pub latency_ms: f64,
}

/// Scores messages as they arrive. `Sync`: share it across threads behind an `Arc`.
pub struct LiveScorer {
    extractor: SignalExtractor,
    churn: Scorer,
    lead: Scorer,
    accounts: Mutex<BTreeMap<String, AccountTimeline>>,
}

impl LiveScorer {
    /// Uses the taxonomy's default scorers.
    pub fn new(extractor: SignalExtractor) -> Self {
        let churn = default_scorer(extractor.pack(), Target::ChurnRisk);
        let lead = default_scorer(extractor.pack(), Target::LeadIntent);
        Self::with_scorers(extractor, churn, lead)
    }

    /// Uses the given scorers (e.g. fitted by `augur fit-scorer`).
    pub fn with_scorers(extractor: SignalExtractor, churn: Scorer, lead: Scorer) -> Self {
        Self {
            extractor,
            churn,
            lead,
            accounts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Extracts signals from `message`, appends it to its account's timeline and rescores the
    /// account as of the message's date. The encoder runs outside the lock.
    pub fn score_message(&self, message: &Message) -> Result<MessageResult, SignalError> {
        let started = Instant::now();
        let note = Note::new(message.id.clone(), message.text.clone())
            .with_account(message.account_id.clone())
            .with_date(message.date);
        let mut found = self.extractor.extract(&note)?;
        // The timeline lives as long as the process: keep the hits, not every clause's scores.
        found.clause_scores = Vec::new();
        let (features, count) = {
            let mut accounts = self.accounts.lock().expect("account state lock");
            let timeline = accounts
                .entry(message.account_id.clone())
                .or_insert_with(|| AccountTimeline {
                    account_id: message.account_id.clone(),
                    ..Default::default()
                });
            timeline.interactions.push(Interaction {
                date: message.date,
                signals: found.clone(),
            });
            let latest = timeline
                .interactions
                .iter()
                .map(|i| i.date)
                .max()
                .unwrap_or(message.date);
            (
                account_features(timeline, self.extractor.pack(), latest),
                timeline.interactions.len(),
            )
        };
        let churn = self.churn.score(&features);
        let lead = self.lead.score(&features);
        Ok(MessageResult {
            id: message.id.clone(),
            account_id: message.account_id.clone(),
            signals: found.hits,
            sentiment: found.sentiment,
            churn_risk: churn.score,
            churn_band: churn.band,
            lead_intent: lead.score,
            lead_band: lead.band,
            top_churn_factor: churn.factors.first().map(|f| f.feature.clone()),
            account_messages: count,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
