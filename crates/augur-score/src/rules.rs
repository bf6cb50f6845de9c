//! Triggered actions: a rules file (TOML) turns signals and score changes into events for a
//! team, de-duplicated per account and rule within a window.
//!
//! ```toml
//! [settings]
//! dedupe_days = 14
//!
//! [[rule]]
//! id = "budget_to_presales"
//! when = { signal = "budget_approved" }
//! action = "push solution pack to technical consultant"
//! team = "presales"
//!
//! [[rule]]
//! id = "retention"
//! when = { score = "churn_risk", band = "high" }   # or above = 70, or rises_by = 15
//! action = "open retention task for CSM"
//! team = "customer_success"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ScoreError};
use crate::scorer::{Target, BAND_NAMES};

/// When a rule fires.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A signal id that must fire.
    #[serde(default)]
    pub signal: Option<String>,
    /// With `signal`: attribute name → substring its value must contain.
    #[serde(default)]
    pub attribute: BTreeMap<String, String>,
    /// A score name (`churn_risk`, `lead_intent`).
    #[serde(default)]
    pub score: Option<String>,
    /// With `score`: the band it must be in.
    #[serde(default)]
    pub band: Option<String>,
    /// With `score`: the score must be at least this (0–100).
    #[serde(default)]
    pub above: Option<f64>,
    /// With `score`: the score must have risen by at least this many points since `--previous`.
    #[serde(default)]
    pub rises_by: Option<f64>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id.
    pub id: String,
    /// The condition.
    pub when: Condition,
    /// What should happen.
    pub action: String,
    /// Who should do it.
    pub team: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_dedupe")]
    dedupe_days: i64,
}

fn default_dedupe() -> i64 {
    14
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    settings: Option<Settings>,
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
}

/// A loaded rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Events of the same rule and account closer than this are merged.
    pub dedupe_days: i64,
}

/// An emitted event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Rule id.
    pub rule: String,
    /// What should happen.
    pub action: String,
    /// Who should do it.
    pub team: String,
    /// The account.
    pub account_id: String,
    /// Why: the evidence sentence, or the score change.
    pub evidence: String,
    /// When the triggering fact happened.
    pub at: NaiveDate,
}

/// A fact rules are checked against.
#[derive(Debug, Clone)]
pub enum Fact<'a> {
    /// A signal hit on a date.
    Signal {
        /// The account.
        account_id: &'a str,
        /// The hit.
        hit: &'a augur_signals::Hit,
        /// The note's date.
        date: NaiveDate,
    },
    /// An account score, with the previous run's score if known.
    Score {
        /// The account.
        account_id: &'a str,
        /// Scorer name.
        name: &'a str,
        /// 0–100.
        score: f64,
        /// Band.
        band: &'a str,
        /// The previous run's score.
        previous: Option<f64>,
        /// "Now".
        as_of: NaiveDate,
    },
}

impl Rules {
    /// Loads and checks a rules file; errors name the file, rule and field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ScoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file_error = |message: String| ScoreError::File {
            path: path.to_path_buf(),
            message,
        };
        let raw: RulesFile = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        let mut ids = std::collections::BTreeSet::new();
        for r in &raw.rules {
            // Events are de-duplicated by rule id: a second rule with the same id would lose its.
            if !ids.insert(r.id.as_str()) {
                return Err(file_error(format!(
                    "rule id `{}` is used twice; every rule needs its own id",
                    r.id
                )));
            }
            match (&r.when.signal, &r.when.score) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(file_error(format!(
                        "rule `{}`: `when` needs exactly one of `signal` or `score`",
                        r.id
                    )))
                }
            }
            if r.when.signal.is_some()
                && (r.when.band.is_some() || r.when.above.is_some() || r.when.rises_by.is_some())
            {
                return Err(file_error(format!(
                    "rule `{}`: `band`, `above` and `rises_by` apply to `score` rules; a `signal` rule fires on the signal (and its `attribute`s)",
                    r.id
                )));
            }
            if r.when.score.is_some() && !r.when.attribute.is_empty() {
                return Err(file_error(format!(
                    "rule `{}`: `attribute` applies to `signal` rules",
                    r.id
                )));
            }
            if let Some(above) = r.when.above.filter(|a| !(0.0..=100.0).contains(a)) {
                return Err(file_error(format!(
                    "rule `{}`: above = {above} can never fire; scores run from 0 to 100",
                    r.id
                )));
            }
            if let Some(rise) = r.when.rises_by.filter(|d| !(*d > 0.0 && *d <= 100.0)) {
                return Err(file_error(format!(
                    "rule `{}`: rises_by = {rise}; give a rise between 0 and 100 points",
                    r.id
                )));
            }
            if let Some(score) = &r.when.score {
                let known = [Target::ChurnRisk.name(), Target::LeadIntent.name()];
                if !known.contains(&score.as_str()) {
                    return Err(file_error(format!(
                        "rule `{}`: score `{score}` is not one of {}",
                        r.id,
                        known.join(", ")
                    )));
                }
            }
            if let Some(band) = r.when.band.as_deref().filter(|b| !BAND_NAMES.contains(b)) {
                return Err(file_error(format!(
                    "rule `{}`: band `{band}` is not one of {}",
                    r.id,
                    BAND_NAMES.join(", ")
                )));
            }
            if r.when.score.is_some()
                && r.when.band.is_none()
                && r.when.above.is_none()
                && r.when.rises_by.is_none()
            {
                return Err(file_error(format!(
                    "rule `{}`: a score rule needs `band`, `above` or `rises_by`",
                    r.id
                )));
            }
        }
        let dedupe_days = raw.settings.map_or(default_dedupe(), |s| s.dedupe_days);
        if dedupe_days < 0 {
            return Err(file_error(format!(
                "dedupe_days = {dedupe_days}; give 0 (no de-duplication) or more days"
            )));
        }
        Ok(Self {
            rules: raw.rules,
            dedupe_days,
        })
    }

    /// Refuses rules on signals `pack` does not have (a typo would never fire); `origin` is the
    /// rules file, for the message.
    pub fn check_signals(&self, pack: &augur_signals::SignalPack, origin: &Path) -> Result<()> {
        for rule in &self.rules {
            let Some(signal) = &rule.when.signal else {
                continue;
            };
            if pack.signal(signal).is_none() {
                return Err(ScoreError::File {
                    path: origin.to_path_buf(),
                    message: format!(
                        "rule `{}`: signal `{signal}` is not in pack {} (its signals: {})",
                        rule.id,
                        pack.name,
                        pack.signal_ids().join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Events for `facts`, merged with `earlier` events: an event is dropped when the same rule
    /// already fired for the account within `dedupe_days`. Returns only the new events.
    pub fn events(&self, facts: &[Fact], earlier: &[Event]) -> Vec<Event> {
        let mut all: Vec<Event> = earlier.to_vec();
        let mut fresh = Vec::new();
        let mut candidates: Vec<Event> = facts
            .iter()
            .flat_map(|fact| self.rules.iter().filter_map(move |rule| fire(rule, fact)))
            .collect();
        candidates.sort_by_key(|e| e.at);
        for event in candidates {
            let duplicate = all.iter().any(|e| {
                e.rule == event.rule
                    && e.account_id == event.account_id
                    && (e.at - event.at).num_days().abs() < self.dedupe_days
            });
            if !duplicate {
                all.push(event.clone());
                fresh.push(event);
            }
        }
        fresh
    }
}

fn fire(rule: &Rule, fact: &Fact) -> Option<Event> {
    let w = &rule.when;
    let (account_id, evidence, at) = match fact {
        Fact::Signal {
            account_id,
            hit,
            date,
        } => {
            if w.signal.as_deref() != Some(hit.signal.as_str()) {
                return None;
            }
            let attributes_ok = w.attribute.iter().all(|(k, v)| {
                hit.attributes
                    .get(k)
                    .is_some_and(|got| got.contains(v.as_str()))
            });
            if !attributes_ok {
                return None;
            }
            (
                *account_id,
                format!("{} (note {}): {}", hit.signal, hit.note_id, hit.evidence),
                *date,
            )
        }
        Fact::Score {
            account_id,
            name,
            score,
            band,
            previous,
            as_of,
        } => {
            if w.score.as_deref() != Some(*name) {
                return None;
            }
            let band_ok = w.band.as_deref().is_none_or(|b| b == *band);
            let above_ok = w.above.is_none_or(|a| *score >= a);
            let rise_ok = w
                .rises_by
                // The rise as reported (one decimal): 16.4 − 1.4 is 14.999… in floating point.
                .is_none_or(|r| previous.is_some_and(|p| crate::scorer::to_tenth(score - p) >= r));
            if !(band_ok && above_ok && rise_ok) {
                return None;
            }
            let change = previous
                .map(|p| format!(" (was {p:.0})"))
                .unwrap_or_default();
            (
                *account_id,
                format!("{name} {score:.0}, band {band}{change}"),
                *as_of,
            )
        }
    };
    Some(Event {
        rule: rule.id.clone(),
        action: rule.action.clone(),
        team: rule.team.clone(),
        account_id: account_id.to_string(),
        evidence,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a rise reported as 15.0 (1.4 → 16.4) did not fire `rises_by = 15`, because
    /// 16.4 − 1.4 is 14.999… in floating point.
    #[test]
    fn a_rise_fires_as_it_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            "[[rule]]\nid = \"rise\"\nwhen = { score = \"churn_risk\", rises_by = 15 }\naction = \"call\"\nteam = \"csm\"\n",
        )
        .unwrap();
        let rules = Rules::from_file(&path).unwrap();
        let fact = |previous| Fact::Score {
            account_id: "ACC-1",
            name: "churn_risk",
            score: 16.4,
            band: "low",
            previous: Some(previous),
            as_of: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        };
        assert_eq!(rules.events(&[fact(1.4)], &[]).len(), 1);
        assert!(rules.events(&[fact(1.5)], &[]).is_empty());
    }
}
