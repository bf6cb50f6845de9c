//! Scoring extracted signals against an annotated gold corpus (JSON lines): per-signal
//! precision / recall / F1 and micro-F1, overall and per language.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use crate::corpus::{load_gold, GoldNote, GoldSignal};
use crate::error::{Result, SignalError};
use crate::extract::{Hit, NoteSignals};
use crate::pack::SignalPack;
use crate::segment::Speaker;

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
    /// Every disagreement with the gold corpus, note by note (within a note: missed spans, then
    /// false positives): what to read before adding examples or hard negatives to a pack.
    pub errors: Vec<EvalError>,
}

/// Which way a prediction and the gold corpus disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A prediction that overlaps no gold span of its signal.
    FalsePositive,
    /// A gold span that no prediction of its signal overlaps.
    Missed,
}

/// One disagreement with the gold corpus.
#[derive(Debug, Clone, Serialize)]
pub struct EvalError {
    /// The note's id.
    pub note_id: String,
    /// The note's language.
    pub lang: String,
    /// False positive or missed.
    pub kind: ErrorKind,
    /// The signal predicted (false positive) or annotated (missed).
    pub signal: String,
    /// Span start, in chars: the predicted clause or the gold span.
    pub char_start: usize,
    /// Span end (exclusive), in chars.
    pub char_end: usize,
    /// The text of the span.
    pub evidence: String,
    /// For a false positive, the prediction's probability; for a missed span, the highest
    /// probability its signal got on a clause of the span (how near it came to firing; absent
    /// when the extractor scored no such clause, e.g. for a signal the pack lacks).
    pub probability: Option<f32>,
    /// The other signals at that place: for a false positive, the gold signals its clause
    /// overlaps (a confusion, not a spurious hit); for a missed span, the signals predicted on it.
    pub instead: Vec<String>,
}

impl EvalReport {
    /// Errors of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> impl Iterator<Item = &EvalError> {
        self.errors.iter().filter(move |e| e.kind == kind)
    }
}

/// Scores predictions against gold. A prediction is correct when its span overlaps a gold span of
/// the same signal in the same note; a gold span is found when some such prediction overlaps it.
/// Every prediction and gold span that is not matched becomes an [`EvalError`]; `signal_ids`
/// are the pack's signals in order (`SignalExtractor::pack`), to read the clause scores with.
pub fn evaluate(gold: &[GoldNote], predicted: &[NoteSignals], signal_ids: &[String]) -> EvalReport {
    let mut report = EvalReport {
        notes: gold.len(),
        ..EvalReport::default()
    };
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
    for (note, pred) in gold.iter().zip(predicted) {
        let mut note_counts: BTreeMap<&str, Counts> = BTreeMap::new();
        let error = |kind, signal: &str, span: (usize, usize), evidence: &str| EvalError {
            note_id: note.id.clone(),
            lang: note.lang.clone(),
            kind,
            signal: signal.to_string(),
            char_start: span.0,
            char_end: span.1,
            evidence: evidence.to_string(),
            probability: None,
            instead: Vec::new(),
        };
        for g in &note.signals {
            let span = (g.start, g.end);
            let c = note_counts.entry(&g.signal).or_default();
            c.gold += 1;
            let at_span = pred
                .hits
                .iter()
                .filter(|h| overlaps((h.char_start, h.char_end), span));
            if at_span.clone().any(|h| h.signal == g.signal) {
                c.found_gold += 1;
            } else {
                let evidence = g.span_text(&note.text);
                let nearest = signal_ids
                    .iter()
                    .position(|id| *id == g.signal)
                    .and_then(|s| {
                        pred.clause_scores
                            .iter()
                            .filter(|c| overlaps((c.char_start, c.char_end), span))
                            .filter_map(|c| c.signals.get(s).copied())
                            .reduce(f32::max)
                    });
                report.errors.push(EvalError {
                    probability: nearest,
                    instead: distinct(at_span.map(|h| h.signal.as_str())),
                    ..error(ErrorKind::Missed, &g.signal, span, &evidence)
                });
            }
        }
        for h in &pred.hits {
            let span = (h.char_start, h.char_end);
            let c = note_counts.entry(&h.signal).or_default();
            c.predictions += 1;
            let at_span = note
                .signals
                .iter()
                .filter(|g| overlaps(span, (g.start, g.end)));
            if at_span.clone().any(|g| g.signal == h.signal) {
                c.correct_predictions += 1;
            } else {
                report.errors.push(EvalError {
                    probability: Some(h.probability),
                    instead: distinct(at_span.map(|g| g.signal.as_str())),
                    ..error(ErrorKind::FalsePositive, &h.signal, span, &h.evidence)
                });
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

/// A second annotation of the gold notes (same format, read from `origin`), as predictions to
/// [`evaluate`]: every annotated span becomes a hit with probability 1. Scored that way, the
/// report is the agreement between two annotators: the ceiling to read the extractor's F1
/// against. Notes are matched by id; each gold note must be annotated, over the same text, with
/// signals of `pack`.
pub fn annotation_as_predictions(
    gold: &[GoldNote],
    annotation: &[GoldNote],
    origin: &Path,
    pack: &SignalPack,
) -> Result<Vec<NoteSignals>> {
    let refuse = |message: String| SignalError::Annotation {
        path: origin.to_path_buf(),
        message,
    };
    let by_id: BTreeMap<&str, &GoldNote> = annotation.iter().map(|n| (n.id.as_str(), n)).collect();
    gold.iter()
        .map(|note| {
            let other = by_id.get(note.id.as_str()).ok_or_else(|| {
                refuse(format!(
                    "note {} is not annotated (the file annotates {} notes; score the split it covers with --split)",
                    note.id,
                    annotation.len()
                ))
            })?;
            if other.text != note.text {
                return Err(refuse(format!(
                    "note {}: the annotated text differs from the gold note's; both must annotate the same text",
                    note.id
                )));
            }
            let byte_at = |char_index: usize| {
                note.text
                    .char_indices()
                    .nth(char_index)
                    .map_or(note.text.len(), |(b, _)| b)
            };
            let hits = other
                .signals
                .iter()
                .map(|s| {
                    let def = pack.signal(&s.signal).ok_or_else(|| {
                        refuse(format!(
                            "note {}: signal `{}` is not in pack {} (its signals: {})",
                            note.id,
                            s.signal,
                            pack.name,
                            pack.signal_ids().join(", ")
                        ))
                    })?;
                    Ok(Hit {
                        note_id: note.id.clone(),
                        account_id: note.account_id.clone(),
                        signal: s.signal.clone(),
                        kind: def.kind,
                        probability: 1.0,
                        evidence: s.span_text(&note.text),
                        char_start: s.start,
                        char_end: s.end,
                        byte_start: byte_at(s.start),
                        byte_end: byte_at(s.end),
                        speaker: Speaker::Unknown,
                        attributes: BTreeMap::new(),
                    })
                })
                .collect::<Result<Vec<Hit>>>()?;
            Ok(NoteSignals {
                note_id: note.id.clone(),
                hits,
                sentiment: 0.0,
                segments: 0,
                clause_scores: Vec::new(),
            })
        })
        .collect()
}

/// The distinct signal ids, in first-seen order.
fn distinct<'a>(signals: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in signals {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::corpus::parse_gold;

    fn hit(signal: &str, start: usize, end: usize, probability: f32) -> serde_json::Value {
        serde_json::json!({
            "note_id": "n1", "account_id": null, "signal": signal, "kind": "buying",
            "probability": probability, "evidence": format!("clause {start}"),
            "char_start": start, "char_end": end, "byte_start": start, "byte_end": end,
            "speaker": "customer", "attributes": {}
        })
    }

    #[test]
    fn unmatched_predictions_and_spans_become_errors_with_what_stood_there_instead() {
        let text = "预算已经批了，下周四来演示，我们也在看别家";
        let gold = parse_gold(
            &serde_json::json!({"id": "n1", "lang": "zh", "text": text, "signals": [
                {"signal": "budget_approved", "start": 0, "end": 6},
                {"signal": "demo_trial_request", "start": 7, "end": 13},
                {"signal": "competitor_evaluation", "start": 14, "end": 21}
            ]})
            .to_string(),
            Path::new("inline"),
        )
        .unwrap();
        let predicted: NoteSignals = serde_json::from_value(serde_json::json!({
            "note_id": "n1", "sentiment": 0.0, "segments": 3,
            "hits": [
                hit("budget_approved", 0, 6, 0.9),
                hit("next_step_scheduled", 7, 13, 0.8),
                hit("payment_delay", 14, 21, 0.75)
            ]
        }))
        .unwrap();
        // Every clause's scores, as the extractor keeps them: the demo clause came near.
        let mut predicted = predicted;
        predicted.clause_scores = [(0, 6, [0.9, 0.1, 0.0]), (7, 13, [0.0, 0.62, 0.1])]
            .into_iter()
            .map(|(char_start, char_end, signals)| crate::ClauseScores {
                char_start,
                char_end,
                signals: signals.to_vec(),
            })
            .collect();
        let ids = ["budget_approved", "demo_trial_request", "payment_delay"].map(String::from);
        let report = evaluate(&gold, &[predicted], &ids);
        assert_eq!(report.micro.correct_predictions, 1);
        assert_eq!(report.micro.found_gold, 1);
        let missed: Vec<_> = report.errors_of(ErrorKind::Missed).collect();
        assert_eq!(missed.len(), 2);
        assert_eq!(missed[0].signal, "demo_trial_request");
        assert_eq!(missed[0].evidence, "下周四来演示");
        assert_eq!(missed[0].instead, ["next_step_scheduled"]);
        assert_eq!(missed[0].probability, Some(0.62));
        assert_eq!(missed[1].signal, "competitor_evaluation");
        assert_eq!(missed[1].probability, None, "a signal the pack lacks");
        assert_eq!(missed[1].instead, ["payment_delay"]);
        let false_positives: Vec<_> = report.errors_of(ErrorKind::FalsePositive).collect();
        assert_eq!(false_positives.len(), 2);
        assert_eq!(false_positives[0].signal, "next_step_scheduled");
        assert_eq!(false_positives[0].instead, ["demo_trial_request"]);
        assert_eq!(false_positives[1].signal, "payment_delay");
        assert_eq!(false_positives[1].probability, Some(0.75));
        assert_eq!(false_positives[1].instead, ["competitor_evaluation"]);
    }

    #[test]
    fn a_second_annotation_is_scored_as_predictions_and_mismatches_are_refused() {
        let note = |signals: serde_json::Value, text: &str| {
            serde_json::json!({"id": "n1", "lang": "zh", "text": text, "signals": signals})
                .to_string()
        };
        let text = "预算已经批了，下周四来演示";
        // Both annotators mark the budget; the demo clause is read as `demo_signal`.
        let annotated = |demo_signal: &str, origin: &Path| {
            let signals = serde_json::json!([
                {"signal": "budget_approved", "start": 0, "end": 6},
                {"signal": demo_signal, "start": 7, "end": 13}
            ]);
            parse_gold(&note(signals, text), origin).unwrap()
        };
        let gold = annotated("demo_trial_request", Path::new("gold"));
        let pack = SignalPack::builtin();
        let origin = Path::new("second.jsonl");
        // The second annotator calls the demo a scheduled next step.
        let second = annotated("next_step_scheduled", origin);
        let predicted = annotation_as_predictions(&gold, &second, origin, &pack).unwrap();
        let hit = &predicted[0].hits[1];
        assert_eq!((hit.char_start, hit.byte_start, hit.byte_end), (7, 21, 39));
        assert_eq!(hit.evidence, "下周四来演示");
        let report = evaluate(&gold, &predicted, &pack.signal_ids());
        assert_eq!(report.micro.correct_predictions, 1);
        assert_eq!(report.micro.found_gold, 1);
        assert_eq!(report.per_signal["next_step_scheduled"].predictions, 1);

        let refused = |annotation: &str| {
            let annotation = parse_gold(annotation, origin).unwrap();
            annotation_as_predictions(&gold, &annotation, origin, &pack)
                .unwrap_err()
                .to_string()
        };
        let unknown = refused(&note(
            serde_json::json!([{"signal": "budget_aproved", "start": 0, "end": 6}]),
            text,
        ));
        assert!(
            unknown.starts_with("second.jsonl: note n1: signal `budget_aproved` is not in pack"),
            "{unknown}"
        );
        let other_text = refused(&note(serde_json::json!([]), "预算已经批了。下周四来演示"));
        assert!(other_text.contains("text differs"), "{other_text}");
        let missing =
            refused(&serde_json::json!({"id": "n2", "text": text, "signals": []}).to_string());
        assert!(
            missing.contains("note n1 is not annotated") && missing.contains("--split"),
            "{missing}"
        );
    }
}
