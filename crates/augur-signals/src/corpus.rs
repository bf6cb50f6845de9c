//! Annotated notes (JSON lines): the gold corpus for evaluation, and labelled notes a pack
//! trains on. Each line: `{"id", "account_id", "timestamp", "lang", "split", "text",
//! "signals": [{"signal", "start", "end", "evidence"}]}` with char offsets.

use std::path::Path;

use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::error::{Result, SignalError};
use crate::extract::Note;

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

impl GoldSignal {
    /// The characters `start..end` of `text` (the note's text).
    pub fn span_text(&self, text: &str) -> String {
        text.chars()
            .skip(self.start)
            .take(self.end.saturating_sub(self.start))
            .collect()
    }
}

impl GoldNote {
    /// The note as extractor input.
    pub fn to_note(&self) -> Note {
        let date = self
            .timestamp
            .as_deref()
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok())
            .map(|t| t.date());
        Note {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            date,
            text: self.text.clone(),
        }
    }
}

/// Reads an annotated file, checking that every span matches its evidence.
pub fn load_gold(path: &Path) -> Result<Vec<GoldNote>> {
    let text = std::fs::read_to_string(path).map_err(|source| SignalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_gold(&text, path)
}

/// Parses annotated JSON lines; `origin` names the source in errors.
pub fn parse_gold(text: &str, origin: &Path) -> Result<Vec<GoldNote>> {
    let path = origin;
    let mut notes = Vec::new();
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    // A byte-order mark (Windows editors write one) is not part of the first line's JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let gold_error = |message: String| SignalError::Gold {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let note: GoldNote = serde_json::from_str(line).map_err(|e| gold_error(e.to_string()))?;
        if let Some(first) = seen.insert(note.id.clone(), i + 1) {
            return Err(gold_error(format!(
                "note id {} is already used on line {first}; ids must be unique",
                note.id
            )));
        }
        let chars = note.text.chars().count();
        for (k, s) in note.signals.iter().enumerate() {
            if let Some(twin) = note.signals[..k]
                .iter()
                .find(|t| t.signal == s.signal && t.start < s.end && s.start < t.end)
            {
                return Err(gold_error(format!(
                    "note {}: span {}..{} of signal {} overlaps its span {}..{}; one mention is one span (merge them)",
                    note.id, s.start, s.end, s.signal, twin.start, twin.end
                )));
            }
            if s.start >= s.end || s.end > chars {
                return Err(gold_error(format!(
                    "note {}: span {}..{} of signal {} must be non-empty and lie within the text's {chars} characters",
                    note.id, s.start, s.end, s.signal
                )));
            }
            let span = s.span_text(&note.text);
            if !s.evidence.is_empty() && span != s.evidence {
                return Err(gold_error(format!(
                    "note {}: span {}..{} is {span:?}, evidence says {:?}",
                    note.id, s.start, s.end, s.evidence
                )));
            }
        }
        notes.push(note);
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a span with its end before its start (and no evidence to check it against)
    /// was accepted, and scoring it underflowed.
    #[test]
    fn bad_spans_and_repeated_note_ids_are_refused_by_line() {
        for (start, end) in [(5, 2), (3, 3), (0, 40)] {
            let line = serde_json::json!({
                "id": "n1", "text": "预算已经批了",
                "signals": [{"signal": "budget_approved", "start": start, "end": end}]
            });
            let err = parse_gold(&format!("\n{line}\n"), Path::new("gold.jsonl"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("gold.jsonl:2: note n1"), "{err}");
            assert!(err.contains(&format!("span {start}..{end}")), "{err}");
        }
        let twice = serde_json::json!({"id": "n1", "text": "预算已经批了", "signals": []});
        let err = parse_gold(&format!("{twice}\n{twice}\n"), Path::new("gold.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("gold.jsonl:2: note id n1 is already used on line 1"),
            "{err}"
        );
        // Regression: the same mention annotated twice counted as two gold spans.
        let doubled = serde_json::json!({
            "id": "n1", "text": "预算已经批了",
            "signals": [{"signal": "budget_approved", "start": 0, "end": 6},
                        {"signal": "budget_approved", "start": 2, "end": 6}]
        });
        let err = parse_gold(&doubled.to_string(), Path::new("gold.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "gold.jsonl:1: note n1: span 2..6 of signal budget_approved overlaps its span 0..6"
            ),
            "{err}"
        );
        let fine = serde_json::json!({
            "id": "n1", "text": "预算已经批了",
            "signals": [{"signal": "budget_approved", "start": 0, "end": 6}]
        });
        assert_eq!(
            parse_gold(&fine.to_string(), Path::new("gold.jsonl"))
                .unwrap()
                .len(),
            1
        );
        // Regression: a byte-order mark made line 1 unreadable.
        assert_eq!(
            parse_gold(&format!("\u{feff}{fine}\n"), Path::new("gold.jsonl"))
                .unwrap()
                .len(),
            1
        );
    }
}
