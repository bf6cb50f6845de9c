//! Scoring extracted signals against an annotated gold corpus (JSON lines): per-signal
//! precision / recall / F1 and micro-F1, overall and per language.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SignalError};
use crate::extract::{Note, NoteSignals};

/// One annotated note.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldNote {
    /// Note id.
    pub id: String,
    /// Account id.
    #[serde(default)]
    pub account_id: Option<String>,
    /// `YYYY-MM-DDTHH:MM:SS`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// visit_note, chat, ...
    #[serde(default)]
    pub channel: String,
    /// zh, en or mixed.
    #[serde(default)]
    pub lang: String,
    /// train or test.
    #[serde(default)]
    pub split: String,
    /// The text.
    pub text: String,
    /// The signals a person found.
    pub signals: Vec<GoldSignal>,
}

/// One annotated signal.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldSignal {
    /// Signal id.
    pub signal: String,
    /// Evidence start in chars.
    pub start: usize,
    /// Evidence end in chars (exclusive).
    pub end: usize,
    /// Evidence text.
    #[serde(default)]
    pub evidence: String,
}

impl GoldNote {
    /// The note as extractor input.
    pub fn to_note(&self) -> Note {
        let date = self
            .timestamp
            .as_deref()
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok())
            .map(|t| t.date());
        Note { id: self.id.clone(), account_id: self.account_id.clone(), date, text: self.text.clone() }
    }
}

/// Reads a gold file, checking that every span matches its evidence.
pub fn load_gold(path: &Path) -> Result<Vec<GoldNote>> {
    let text = std::fs::read_to_string(path).map_err(|source| SignalError::Io { path: path.to_path_buf(), source })?;
    let mut notes = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let gold_error = |message: String| SignalError::Gold { path: path.to_path_buf(), line: i + 1, message };
        let note: GoldNote = serde_json::from_str(line).map_err(|e| gold_error(e.to_string()))?;
        for s in &note.signals {
            let span: String = note.text.chars().skip(s.start).take(s.end.saturating_sub(s.start)).collect();
            if !s.evidence.is_empty() && span != s.evidence {
                return Err(gold_error(format!("note {}: span {}..{} is {span:?}, evidence says {:?}", note.id, s.start, s.end, s.evidence)));
            }
        }
        notes.push(note);
    }
    Ok(notes)
}

/// Counts for one signal (or a total).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Predictions that overlap a gold span of the same signal.
    pub correct_predictions: usize,
    /// All predictions.
    pub predictions: usize,
    /// Gold spans overlapped by a prediction of the same signal.
    pub found_gold: usize,
    /// All gold spans.
    pub gold: usize,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.correct_predictions += other.correct_predictions;
        self.predictions += other.predictions;
        self.found_gold += other.found_gold;
        self.gold += other.gold;
    }
    /// Correct predictions / predictions (1 when nothing was predicted).
    pub fn precision(&self) -> f64 {
        if self.predictions == 0 { 1.0 } else { self.correct_predictions as f64 / self.predictions as f64 }
    }
    /// Found gold / gold (1 when there is no gold).
    pub fn recall(&self) -> f64 {
        if self.gold == 0 { 1.0 } else { self.found_gold as f64 / self.gold as f64 }
    }
    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// The evaluation of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalReport {
    /// Notes evaluated.
    pub notes: usize,
    /// Counts per signal id.
    pub per_signal: BTreeMap<String, Counts>,
    /// Totals (micro average).
    pub micro: Counts,
    /// Totals per language of the note.
    pub per_language: BTreeMap<String, Counts>,
}

/// Scores predictions against gold. A prediction is correct when its span overlaps a gold span of
/// the same signal in the same note; a gold span is found when some such prediction overlaps it.
pub fn evaluate(gold: &[GoldNote], predicted: &[NoteSignals]) -> EvalReport {
    let mut report = EvalReport { notes: gold.len(), ..EvalReport::default() };
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
    for (note, pred) in gold.iter().zip(predicted) {
        let mut note_counts: BTreeMap<&str, Counts> = BTreeMap::new();
        for g in &note.signals {
            let c = note_counts.entry(&g.signal).or_default();
            c.gold += 1;
            if pred.hits.iter().any(|h| h.signal == g.signal && overlaps((h.char_start, h.char_end), (g.start, g.end))) {
                c.found_gold += 1;
            }
        }
        for h in &pred.hits {
            let c = note_counts.entry(&h.signal).or_default();
            c.predictions += 1;
            if note.signals.iter().any(|g| g.signal == h.signal && overlaps((h.char_start, h.char_end), (g.start, g.end))) {
                c.correct_predictions += 1;
            }
        }
        for (signal, c) in note_counts {
            report.per_signal.entry(signal.to_string()).or_default().add(c);
            report.micro.add(c);
            report.per_language.entry(note.lang.clone()).or_default().add(c);
        }
    }
    report
}
