//! Per-account features from a timeline of analysed notes, each with a human name (zh, en) and,
//! for text-derived features, the evidence behind it (note, sentence, speaker, date).

use std::collections::BTreeMap;

use augur_signals::{NoteSignals, SignalPack};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Days over which a signal's recency weight falls to 1/e.
pub const RECENCY_DAYS: f64 = 30.0;

/// One analysed note of an account's timeline.
#[derive(Debug, Clone)]
pub struct Interaction {
    /// The note's date.
    pub date: NaiveDate,
    /// What was found in it.
    pub signals: NoteSignals,
}

/// A sentence behind a feature's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Note id.
    pub note_id: String,
    /// Note date.
    pub date: NaiveDate,
    /// The clause, or for a fact about a note (its sentiment, that it is the latest) the fact in
    /// English.
    pub sentence: String,
    /// The fact in Chinese (empty when `sentence` quotes the note).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sentence_zh: String,
    /// Who said it (`customer`, `rep`, `unknown`; empty for facts about a note, not a sentence).
    pub speaker: String,
    /// The signal it carries (empty for sentiment evidence).
    #[serde(default)]
    pub signal: String,
}

impl Evidence {
    /// What to show: the quoted clause, or the fact in Chinese (`zh`) or English.
    pub fn sentence_in(&self, zh: bool) -> &str {
        if zh && !self.sentence_zh.is_empty() {
            &self.sentence_zh
        } else {
            &self.sentence
        }
    }
}

/// A computed feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// Stable id (`signal.sla_breach.recency`, `sentiment.change_last3`, `account.tickets_overdue`).
    pub id: String,
    /// English name.
    pub name_en: String,
    /// Chinese name.
    pub name_zh: String,
    /// The value.
    pub value: f64,
    /// Notes and sentences behind it (empty for account-table features).
    pub evidence: Vec<Evidence>,
}

/// Everything known about one account.
#[derive(Debug, Clone, Default)]
pub struct AccountTimeline {
    /// The account id.
    pub account_id: String,
    /// Its analysed notes (any order).
    pub interactions: Vec<Interaction>,
    /// Numeric columns of the accounts table.
    pub numeric: BTreeMap<String, f64>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Least-squares slope of `(x, y)` points, `x` in months. Notes less than two weeks apart in
/// all say nothing about a trend, and their slope per month explodes (two notes a day apart,
/// +0.8 then 0, made −24 per month and a churn risk of 100): below that span the slope is 0.
fn slope(points: &[(f64, f64)]) -> f64 {
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
    if points.len() < 2 || hi - lo < MIN_TREND_SPAN_MONTHS {
        return 0.0;
    }
    let mx = mean(&points.iter().map(|p| p.0).collect::<Vec<_>>());
    let my = mean(&points.iter().map(|p| p.1).collect::<Vec<_>>());
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx
}

/// The shortest span of note dates (two weeks, in months) over which a sentiment trend counts.
const MIN_TREND_SPAN_MONTHS: f64 = 14.0 / 30.0;

fn sentiment_evidence(i: &Interaction) -> Evidence {
    Evidence {
        note_id: i.signals.note_id.clone(),
        date: i.date,
        sentence: format!("note sentiment {:+.2}", i.signals.sentiment),
        sentence_zh: format!("笔记情绪 {:+.2}", i.signals.sentiment),
        speaker: "customer".into(),
        signal: String::new(),
    }
}

/// Computes every feature of `account` as of `as_of` (notes after it are ignored).
pub fn account_features(
    account: &AccountTimeline,
    pack: &SignalPack,
    as_of: NaiveDate,
) -> Vec<Feature> {
    let mut timeline: Vec<&Interaction> = account
        .interactions
        .iter()
        .filter(|i| i.date <= as_of)
        .collect();
    timeline.sort_by_key(|i| i.date);
    let age = |d: NaiveDate| (as_of - d).num_days() as f64;
    let mut out = Vec::new();

    for signal in &pack.signals {
        let hits: Vec<(&Interaction, &augur_signals::Hit)> = timeline
            .iter()
            .flat_map(|i| {
                i.signals
                    .hits
                    .iter()
                    .filter(|h| h.signal == signal.id)
                    .map(move |h| (*i, h))
            })
            .collect();
        let evidence_within = |days: f64| -> Vec<Evidence> {
            hits.iter()
                .filter(|(i, _)| age(i.date) <= days)
                .map(|(i, h)| Evidence {
                    note_id: h.note_id.clone(),
                    date: i.date,
                    sentence: h.evidence.clone(),
                    sentence_zh: String::new(),
                    speaker: h.speaker.as_str().to_string(),
                    signal: h.signal.clone(),
                })
                .collect()
        };
        for days in [7u32, 30, 90] {
            let evidence = evidence_within(f64::from(days));
            out.push(Feature {
                id: format!("signal.{}.count_{days}d", signal.id),
                name_en: format!("{} mentions, last {days} days", signal.name_en),
                name_zh: format!("近{days}天「{}」次数", signal.name_zh),
                value: evidence.len() as f64,
                evidence,
            });
        }
        let recency: f64 = hits
            .iter()
            .map(|(i, _)| (-age(i.date) / RECENCY_DAYS).exp())
            .sum();
        out.push(Feature {
            id: format!("signal.{}.recency", signal.id),
            name_en: format!("{} (recency-weighted)", signal.name_en),
            name_zh: format!("「{}」（按时间衰减）", signal.name_zh),
            value: recency,
            evidence: evidence_within(180.0),
        });
    }

    let sentiments: Vec<(&Interaction, f64)> = timeline
        .iter()
        .map(|i| (*i, f64::from(i.signals.sentiment)))
        .collect();
    let n = sentiments.len();
    let last3: Vec<f64> = sentiments[n.saturating_sub(3)..]
        .iter()
        .map(|s| s.1)
        .collect();
    let prev3: Vec<f64> = sentiments[n.saturating_sub(6)..n.saturating_sub(3)]
        .iter()
        .map(|s| s.1)
        .collect();
    let last3_evidence: Vec<Evidence> = sentiments[n.saturating_sub(3)..]
        .iter()
        .map(|s| sentiment_evidence(s.0))
        .collect();
    out.push(Feature {
        id: "sentiment.last3_mean".into(),
        name_en: "Sentiment, mean of the last 3 interactions".into(),
        name_zh: "最近3次互动的平均情绪".into(),
        value: mean(&last3),
        evidence: last3_evidence.clone(),
    });
    out.push(Feature {
        id: "sentiment.change_last3".into(),
        name_en: "Sentiment change: last 3 vs the 3 before".into(),
        name_zh: "情绪变化：最近3次对比之前3次".into(),
        value: if prev3.is_empty() {
            0.0
        } else {
            mean(&last3) - mean(&prev3)
        },
        evidence: sentiments[n.saturating_sub(6)..]
            .iter()
            .map(|s| sentiment_evidence(s.0))
            .collect(),
    });
    let recent: Vec<(f64, f64)> = sentiments
        .iter()
        .filter(|s| age(s.0.date) <= 90.0)
        .map(|s| (-age(s.0.date) / 30.0, s.1))
        .collect();
    out.push(Feature {
        id: "sentiment.slope_90d".into(),
        name_en: "Sentiment trend over 90 days (per 30 days)".into(),
        name_zh: "90天情绪趋势（每30天）".into(),
        value: slope(&recent),
        evidence: sentiments
            .iter()
            .filter(|s| age(s.0.date) <= 90.0)
            .map(|s| sentiment_evidence(s.0))
            .collect(),
    });

    let last_contact = timeline.last().map(|i| age(i.date));
    out.push(Feature {
        id: "engagement.days_since_last".into(),
        name_en: "Days since last contact".into(),
        name_zh: "距上次联系天数".into(),
        value: last_contact.unwrap_or(365.0),
        evidence: timeline
            .last()
            .map(|i| Evidence {
                note_id: i.signals.note_id.clone(),
                date: i.date,
                sentence: "latest note".into(),
                sentence_zh: "最近一条笔记".into(),
                speaker: String::new(),
                signal: String::new(),
            })
            .into_iter()
            .collect(),
    });
    let in_30 = timeline.iter().filter(|i| age(i.date) <= 30.0).count() as f64;
    let prev_30 = timeline
        .iter()
        .filter(|i| age(i.date) > 30.0 && age(i.date) <= 60.0)
        .count() as f64;
    out.push(Feature {
        id: "engagement.interactions_30d".into(),
        name_en: "Interactions in the last 30 days".into(),
        name_zh: "近30天互动次数".into(),
        value: in_30,
        evidence: Vec::new(),
    });
    out.push(Feature {
        id: "engagement.change_30d".into(),
        name_en: "Interactions, last 30 days minus the 30 before".into(),
        name_zh: "近30天互动次数较前30天变化".into(),
        value: in_30 - prev_30,
        evidence: Vec::new(),
    });

    for (column, value) in &account.numeric {
        out.push(Feature {
            id: format!("account.{column}"),
            name_en: format!("{column} (accounts table)"),
            name_zh: format!("{column}（客户表）"),
            value: *value,
            evidence: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_its_gradient() {
        assert!((slope(&[(0.0, 1.0), (1.0, 0.5), (2.0, 0.0)]) + 0.5).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }

    /// Regression: two notes a day apart (+0.8, then 0) made a slope of −24 per month, and a
    /// healthy new account scored churn risk 100.
    #[test]
    fn notes_days_apart_make_no_steep_trend() {
        let day = 1.0 / 30.0;
        assert_eq!(slope(&[(-day, 0.8), (0.0, 0.0)]), 0.0);
        assert_eq!(
            slope(&[(-13.0 * day, 0.8), (-6.0 * day, 0.4), (0.0, 0.0)]),
            0.0
        );
        // From two weeks on, the fall counts in full.
        let fall = slope(&[(-15.0 * day, 0.8), (0.0, 0.0)]);
        assert!((fall + 1.6).abs() < 1e-9, "{fall}");
    }
}
