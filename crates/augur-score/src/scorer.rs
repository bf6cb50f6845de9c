//! Additive scorers: log-odds = bias + Σ wᵢ·(xᵢ − baselineᵢ). Each term's contribution is
//! reported, so the factors plus the bias add up to the score's log-odds exactly.

use std::collections::BTreeMap;
use std::path::Path;

use augur_signals::SignalPack;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ScoreError};
use crate::features::{Evidence, Feature};

/// One weighted feature of a scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// Feature id.
    pub feature: String,
    /// Log-odds per unit of the feature.
    pub weight: f64,
    /// The value at which the feature contributes nothing.
    pub baseline: f64,
}

/// Score bands: `high` at or above `high`, `medium` at or above `medium`, else `low` (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    /// Lower bound of the high band.
    pub high: f64,
    /// Lower bound of the medium band.
    pub medium: f64,
}

impl Default for Bands {
    fn default() -> Self {
        Self {
            high: 70.0,
            medium: 40.0,
        }
    }
}

/// The bands a score falls in, from the top.
pub const BAND_NAMES: [&str; 3] = ["high", "medium", "low"];

impl Bands {
    /// The band of a 0–100 score (one of [`BAND_NAMES`]).
    pub fn of(&self, score: f64) -> &'static str {
        if score >= self.high {
            BAND_NAMES[0]
        } else if score >= self.medium {
            BAND_NAMES[1]
        } else {
            BAND_NAMES[2]
        }
    }
}

/// A named additive scorer (`churn_risk`, `lead_intent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorer {
    /// What it scores.
    pub name: String,
    /// Log-odds when every feature sits at its baseline.
    pub bias: f64,
    /// Weighted features.
    pub terms: Vec<Term>,
    /// Band thresholds.
    #[serde(default)]
    pub bands: Bands,
    /// How the weights were obtained (`taxonomy defaults`, or a fit report).
    #[serde(default)]
    pub source: String,
}

/// One feature's share of a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Feature id.
    pub feature: String,
    /// English name.
    pub name_en: String,
    /// Chinese name.
    pub name_zh: String,
    /// The feature's value.
    pub value: f64,
    /// Its baseline.
    pub baseline: f64,
    /// `weight · (value − baseline)`, in log-odds points.
    pub contribution: f64,
    /// `|contribution|` over the sum of all `|contribution|`.
    pub share: f64,
    /// Notes and sentences behind the value.
    pub evidence: Vec<Evidence>,
}

/// A scored account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Scorer name.
    pub name: String,
    /// 0–100, to one decimal (the band is that of this value).
    pub score: f64,
    /// high / medium / low.
    pub band: String,
    /// `bias + Σ contributions`.
    pub log_odds: f64,
    /// The scorer's bias.
    pub bias: f64,
    /// Non-zero factors, largest |contribution| first.
    pub factors: Vec<Factor>,
}

impl Scorer {
    /// Scores one account's features. Features the scorer has no term for are ignored; terms
    /// whose feature is absent count at their baseline (contribute 0).
    pub fn score(&self, features: &[Feature]) -> Score {
        let by_id: BTreeMap<&str, &Feature> = features.iter().map(|f| (f.id.as_str(), f)).collect();
        let mut factors: Vec<Factor> = self
            .terms
            .iter()
            .filter_map(|t| {
                let f = by_id.get(t.feature.as_str())?;
                let contribution = t.weight * (f.value - t.baseline);
                (contribution != 0.0).then(|| Factor {
                    feature: t.feature.clone(),
                    name_en: f.name_en.clone(),
                    name_zh: f.name_zh.clone(),
                    value: f.value,
                    baseline: t.baseline,
                    contribution,
                    share: 0.0,
                    evidence: f.evidence.clone(),
                })
            })
            .collect();
        let total_abs: f64 = factors.iter().map(|f| f.contribution.abs()).sum();
        for f in &mut factors {
            f.share = if total_abs > 0.0 {
                f.contribution.abs() / total_abs
            } else {
                0.0
            };
        }
        factors.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        let log_odds = self.bias + factors.iter().map(|f| f.contribution).sum::<f64>();
        // One decimal, as reported: the band (and any delta) follows the score a user sees.
        let score = to_tenth(100.0 / (1.0 + (-log_odds).exp()));
        Score {
            name: self.name.clone(),
            score,
            band: self.bands.of(score).to_string(),
            log_odds,
            bias: self.bias,
            factors,
        }
    }

    /// Reads a scorer saved by [`Scorer::save`] (`augur fit-scorer`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ScoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ScoreError::File {
            path: path.to_path_buf(),
            message: format!("not a scorer model: {e}"),
        })
    }

    /// Writes the scorer as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("scorer serialises");
        std::fs::write(path, text).map_err(|source| ScoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// `value` rounded to one decimal, as scores and their changes are reported (a rise from 1.4
/// to 16.4 is 15.0, not 14.999…).
pub fn to_tenth(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Which account score a default scorer builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Likelihood the account churns.
    ChurnRisk,
    /// Likelihood the lead buys.
    LeadIntent,
}

impl Target {
    /// The scorer's name.
    pub fn name(self) -> &'static str {
        match self {
            Target::ChurnRisk => "churn_risk",
            Target::LeadIntent => "lead_intent",
        }
    }
}

/// The day-one scorer: each signal's recency-weighted count weighted by the pack's default
/// weight for `target`, plus fixed weights on sentiment, engagement and well-known account
/// columns. No labels needed.
pub fn default_scorer(pack: &SignalPack, target: Target) -> Scorer {
    let mut terms: Vec<Term> = pack
        .signals
        .iter()
        .map(|s| Term {
            feature: format!("signal.{}.recency", s.id),
            weight: f64::from(match target {
                Target::ChurnRisk => s.weights.churn_risk,
                Target::LeadIntent => s.weights.lead_intent,
            }),
            baseline: 0.0,
        })
        .filter(|t| t.weight != 0.0)
        .collect();
    let fixed: &[(&str, f64, f64)] = match target {
        Target::ChurnRisk => &[
            ("sentiment.change_last3", -2.0, 0.0),
            ("sentiment.last3_mean", -1.5, 0.0),
            ("sentiment.slope_90d", -1.0, 0.0),
            ("engagement.days_since_last", 0.02, 30.0),
            ("engagement.change_30d", -0.15, 0.0),
            ("account.tickets_overdue", 0.4, 0.0),
            ("account.competitor_site_visits_30d", 0.15, 0.0),
            ("account.usage_change_pct", -0.02, 0.0),
        ],
        Target::LeadIntent => &[
            ("sentiment.last3_mean", 1.0, 0.0),
            ("engagement.interactions_30d", 0.3, 1.0),
            ("engagement.days_since_last", -0.02, 30.0),
        ],
    };
    terms.extend(fixed.iter().map(|&(feature, weight, baseline)| Term {
        feature: feature.to_string(),
        weight,
        baseline,
    }));
    Scorer {
        name: target.name().to_string(),
        bias: -2.0,
        terms,
        bands: Bands::default(),
        source: "taxonomy defaults".into(),
    }
}
