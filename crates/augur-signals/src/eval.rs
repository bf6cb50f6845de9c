//! Scoring extracted signals against an annotated gold corpus (JSON lines): per-signal
//! precision / recall / F1 and micro-F1, overall and per language.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::corpus::{load_gold, GoldNote, GoldSignal};
use crate::extract::NoteSignals;

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
        if self.predictions == 0 {
            1.0
        } else {
            self.correct_predictions as f64 / self.predictions as f64
        }
    }
    /// Found gold / gold (1 when there is no gold).
    pub fn recall(&self) -> f64 {
        if self.gold == 0 {
            1.0
        } else {
            self.found_gold as f64 / self.gold as f64
        }
    }
    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
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
    let mut report = EvalReport {
        notes: gold.len(),
        ..EvalReport::default()
    };
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
    for (note, pred) in gold.iter().zip(predicted) {
        let mut note_counts: BTreeMap<&str, Counts> = BTreeMap::new();
        for g in &note.signals {
            let c = note_counts.entry(&g.signal).or_default();
            c.gold += 1;
            if pred.hits.iter().any(|h| {
                h.signal == g.signal && overlaps((h.char_start, h.char_end), (g.start, g.end))
            }) {
                c.found_gold += 1;
            }
        }
        for h in &pred.hits {
            let c = note_counts.entry(&h.signal).or_default();
            c.predictions += 1;
            if note.signals.iter().any(|g| {
                g.signal == h.signal && overlaps((h.char_start, h.char_end), (g.start, g.end))
            }) {
                c.correct_predictions += 1;
            }
        }
        for (signal, c) in note_counts {
            report
                .per_signal
                .entry(signal.to_string())
                .or_default()
                .add(c);
            report.micro.add(c);
            report
                .per_language
                .entry(note.lang.clone())
                .or_default()
                .add(c);
        }
    }
    report
}
