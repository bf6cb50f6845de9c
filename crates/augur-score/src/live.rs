//! Real-time scoring: load once, then score one message at a time from many threads, keeping
//! each account's timeline in memory so every message updates that account's scores.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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
    pub churn_risk_band: String,
    /// The account's lead intent after this message (0–100).
    pub lead_intent: f64,
    /// Its band.
    pub lead_intent_band: String,
    /// The top churn factor's feature id, if any.
    pub top_churn_factor: Option<String>,
    /// Messages held in the account's timeline (older ones are dropped: [`LIVE_HISTORY_DAYS`]).
    pub account_messages: usize,
    /// Time spent on this message, in milliseconds.
    pub latency_ms: f64,
}

/// How far back a live timeline reaches, in days before the account's latest message (beyond its
/// last [`KEPT_INTERACTIONS`]): the feature windows reach 180 days, and a hit this old weighs
/// e⁻¹² in the recency features, so older messages are dropped to bound memory.
pub const LIVE_HISTORY_DAYS: i64 = 365;

/// Interactions a live timeline always keeps, however old (the sentiment features compare the
/// last three with the three before).
pub const KEPT_INTERACTIONS: usize = 6;

/// Scores messages as they arrive. `Sync`: share it across threads behind an `Arc`. Each account
/// has its own lock, so messages of different accounts are scored in parallel.
pub struct LiveScorer {
    extractor: SignalExtractor,
    churn: Scorer,
    lead: Scorer,
    accounts: Mutex<BTreeMap<String, Arc<Mutex<AccountTimeline>>>>,
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
    /// account as of its latest message (a late message with an earlier date does not move the
    /// account back in time). The encoder runs outside the locks.
    pub fn score_message(&self, message: &Message) -> Result<MessageResult, SignalError> {
        let started = Instant::now();
        let note = Note::new(message.id.clone(), message.text.clone())
            .with_account(message.account_id.clone())
            .with_date(message.date);
        let mut found = self.extractor.extract(&note)?;
        // The timeline lives as long as the process: keep the hits, not every clause's scores.
        found.clause_scores = Vec::new();
        let account = Arc::clone(
            self.accounts
                .lock()
                .expect("accounts lock")
                .entry(message.account_id.clone())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(AccountTimeline {
                        account_id: message.account_id.clone(),
                        ..Default::default()
                    }))
                }),
        );
        let (features, count) = {
            let mut timeline = account.lock().expect("account timeline lock");
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
            forget_old_interactions(&mut timeline, latest);
            (
                account_features(&timeline, self.extractor.pack(), latest),
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
            churn_risk_band: churn.band,
            lead_intent: lead.score,
            lead_intent_band: lead.band,
            top_churn_factor: churn.factors.first().map(|f| f.feature.clone()),
            account_messages: count,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// Drops interactions more than [`LIVE_HISTORY_DAYS`] before `latest`, keeping at least the
/// last [`KEPT_INTERACTIONS`].
fn forget_old_interactions(timeline: &mut AccountTimeline, latest: NaiveDate) {
    let interactions = &mut timeline.interactions;
    if interactions.len() <= KEPT_INTERACTIONS {
        return;
    }
    interactions.sort_by_key(|i| i.date);
    let keep_from = interactions.len() - KEPT_INTERACTIONS;
    let mut index = 0;
    interactions.retain(|i| {
        index += 1;
        index > keep_from || (latest - i.date).num_days() <= LIVE_HISTORY_DAYS
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_signals::NoteSignals;

    /// Regression: live timelines grew without limit in a long-running process.
    #[test]
    fn old_interactions_are_forgotten_but_the_last_few_are_kept() {
        let day =
            |d: i64| NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(d as u64);
        let interaction = |d: i64| Interaction {
            date: day(d),
            signals: NoteSignals {
                note_id: format!("n{d}"),
                hits: Vec::new(),
                sentiment: 0.0,
                segments: 1,
                clause_scores: Vec::new(),
            },
        };
        // Ten messages two years ago, then two recent ones.
        let mut timeline = AccountTimeline {
            interactions: (0..10)
                .map(interaction)
                .chain([700, 710].map(interaction))
                .collect(),
            ..Default::default()
        };
        forget_old_interactions(&mut timeline, day(710));
        let kept: Vec<NaiveDate> = timeline.interactions.iter().map(|i| i.date).collect();
        assert_eq!(kept, [6, 7, 8, 9, 700, 710].map(day));

        // Within the history window nothing is dropped.
        let mut recent = AccountTimeline {
            interactions: (0..20).map(|d| interaction(d * 10)).collect(),
            ..Default::default()
        };
        forget_old_interactions(&mut recent, day(190));
        assert_eq!(recent.interactions.len(), 20);
    }
}
