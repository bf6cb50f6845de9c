//! Signal packs: the taxonomy as TOML (ids, kinds, names, examples, hard negatives, attribute
//! extractors, score weights). Errors name the file, line and field.

use std::ops::Range;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::corpus::{parse_gold, GoldNote};
use crate::error::{Result, SignalError};

/// The pack compiled into the binary.
pub const BUILTIN_B2B: &str = include_str!("../packs/b2b.toml");
/// Labelled notes the built-in pack trains on (the train half of the annotated corpus;
/// regenerate with `fixtures/signals/make_pack_notes.py`).
pub const BUILTIN_B2B_NOTES: &str = include_str!("../packs/b2b_labelled.jsonl");

/// What a signal means for the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    /// Moves a deal forward.
    Buying,
    /// Threatens a deal or an account.
    Risk,
    /// A fact worth recording (installed base, compliance needs).
    Info,
}

/// Whose words may raise the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeakerScope {
    /// Only the customer's side (or text with no speaker turns).
    Customer,
    /// Anyone.
    Any,
}

/// Default log-odds weights of a signal toward the two account scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreWeights {
    /// Toward lead intent.
    #[serde(default)]
    pub lead_intent: f32,
    /// Toward churn risk.
    #[serde(default)]
    pub churn_risk: f32,
}

/// Pulls a value out of a clause that carries the signal.
#[derive(Debug, Clone)]
pub enum AttributeExtractor {
    /// A regex; the value is the capture group named like the attribute, else the whole match.
    Regex {
        /// Attribute name.
        name: String,
        /// The compiled pattern.
        regex: Regex,
    },
    /// A list of names; the value is the entry found (case-insensitive, whole words for Latin text).
    Gazetteer {
        /// Attribute name.
        name: String,
        /// Entries, matched longest first.
        entries: Vec<String>,
    },
}

impl SignalKind {
    /// Lower-case name, as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Buying => "buying",
            SignalKind::Risk => "risk",
            SignalKind::Info => "info",
        }
    }
}

impl AttributeExtractor {
    /// The attribute's name.
    pub fn name(&self) -> &str {
        match self {
            AttributeExtractor::Regex { name, .. } | AttributeExtractor::Gazetteer { name, .. } => {
                name
            }
        }
    }

    /// The value found in `text`, if any.
    pub fn extract(&self, text: &str) -> Option<String> {
        match self {
            AttributeExtractor::Regex { name, regex } => {
                let caps = regex.captures(text)?;
                caps.name(name)
                    .or_else(|| caps.get(0))
                    .map(|m| m.as_str().trim().to_string())
                    .filter(|value| !value.is_empty())
            }
            AttributeExtractor::Gazetteer { entries, .. } => {
                let lower = text.to_lowercase();
                entries
                    .iter()
                    .filter_map(|entry| {
                        find_whole(&lower, &entry.to_lowercase()).map(|pos| (pos, entry))
                    })
                    .min_by_key(|(pos, entry)| (*pos, std::cmp::Reverse(entry.len())))
                    .map(|(_, entry)| entry.clone())
            }
        }
    }
}

/// Position of `needle` in `haystack`; Latin-alphanumeric edges must not touch other letters.
fn find_whole(haystack: &str, needle: &str) -> Option<usize> {
    let is_word = |c: char| c.is_ascii_alphanumeric();
    let mut from = 0;
    while let Some(found) = haystack[from..].find(needle) {
        let start = from + found;
        let end = start + needle.len();
        let before_ok = !needle.starts_with(is_word) || !haystack[..start].ends_with(is_word);
        let after_ok = !needle.ends_with(is_word) || !haystack[end..].starts_with(is_word);
        if before_ok && after_ok {
            return Some(start);
        }
        from = start + needle.chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// One signal of the taxonomy.
#[derive(Debug, Clone)]
pub struct SignalDef {
    /// Stable id (`budget_approved`).
    pub id: String,
    /// Buying, risk or info.
    pub kind: SignalKind,
    /// Chinese display name.
    pub name_zh: String,
    /// English display name.
    pub name_en: String,
    /// What counts and what does not.
    pub description: String,
    /// Whose words count.
    pub speaker: SpeakerScope,
    /// Probability above which the signal fires (`None`: the extractor's default).
    pub threshold: Option<f32>,
    /// Default weights toward lead intent and churn risk.
    pub weights: ScoreWeights,
    /// Positive examples (clauses).
    pub examples: Vec<String>,
    /// Hard negatives: negations, hypotheticals, look-alikes.
    pub negatives: Vec<String>,
    /// Attribute extractors applied to the evidence clause.
    pub attributes: Vec<AttributeExtractor>,
}

/// Example clauses for per-clause sentiment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentExamples {
    /// Satisfied, praising.
    #[serde(default)]
    pub positive: Vec<String>,
    /// Angry, disappointed.
    #[serde(default)]
    pub negative: Vec<String>,
    /// Factual.
    #[serde(default)]
    pub neutral: Vec<String>,
}

/// A loaded, validated signal pack.
#[derive(Debug, Clone)]
pub struct SignalPack {
    /// Pack name.
    pub name: String,
    /// Pack version.
    pub version: u32,
    /// What the pack is for.
    pub description: String,
    /// Sentiment examples.
    pub sentiment: SentimentExamples,
    /// The signals, in file order.
    pub signals: Vec<SignalDef>,
    /// Annotated notes to train on besides the examples: every clause of a note is a positive
    /// for the signals whose spans it overlaps and a negative for all others.
    pub labelled_notes: Vec<GoldNote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    pack: RawMeta,
    #[serde(default)]
    sentiment: SentimentExamples,
    #[serde(default, rename = "signal")]
    signals: Vec<RawSignal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    name: Spanned<String>,
    #[serde(default = "one")]
    version: u32,
    #[serde(default)]
    description: String,
    /// JSON-lines files of annotated notes, relative to the pack file.
    #[serde(default)]
    labelled_notes: Vec<Spanned<String>>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    id: Spanned<String>,
    kind: Spanned<String>,
    name_zh: Spanned<String>,
    name_en: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    speaker: Option<Spanned<String>>,
    #[serde(default)]
    threshold: Option<Spanned<f32>>,
    #[serde(default)]
    weights: ScoreWeights,
    examples: Spanned<Vec<String>>,
    #[serde(default)]
    negatives: Option<Spanned<Vec<String>>>,
    #[serde(default, rename = "attribute")]
    attributes: Vec<RawAttribute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribute {
    name: Spanned<String>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    gazetteer: Option<Vec<String>>,
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

impl SignalPack {
    /// The built-in B2B pack (17 signals, zh + en).
    pub fn builtin() -> Self {
        let mut pack = Self::parse(BUILTIN_B2B, "built-in b2b.toml", |_| Ok(Vec::new()))
            .expect("the built-in pack is valid (tested)");
        pack.labelled_notes =
            parse_gold(BUILTIN_B2B_NOTES, Path::new("built-in b2b_labelled.jsonl"))
                .expect("the built-in notes are valid (tested)");
        pack
    }

    /// Loads a pack file; its `labelled_notes` paths are relative to the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| SignalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), |file| {
            crate::corpus::load_gold(&base.join(file))
        })
    }

    /// Parses pack text; `origin` names it in errors and `load_notes` reads a labelled-notes file.
    pub fn parse(
        text: &str,
        origin: &str,
        load_notes: impl Fn(&str) -> Result<Vec<GoldNote>>,
    ) -> Result<Self> {
        let pack_error =
            |span: Option<Range<usize>>, field: &str, message: String| SignalError::Pack {
                origin: origin.to_string(),
                line: span.map_or(1, |s| line_of(text, s)),
                field: field.to_string(),
                message,
            };
        let raw: RawPack = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            pack_error(e.span(), "toml", message)
        })?;
        if raw.pack.name.get_ref().trim().is_empty() {
            return Err(pack_error(
                Some(raw.pack.name.span()),
                "pack.name",
                "is empty; give the pack a name (messages and reports show it)".to_string(),
            ));
        }
        let mut signals: Vec<SignalDef> = Vec::with_capacity(raw.signals.len());
        for s in raw.signals {
            let id = s.id.get_ref().clone();
            let field = |name: &str| format!("signal[{id}].{name}");
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(pack_error(
                    Some(s.id.span()),
                    &field("id"),
                    format!("`{id}` must be snake_case ascii"),
                ));
            }
            if signals.iter().any(|d| d.id == id) {
                return Err(pack_error(
                    Some(s.id.span()),
                    &field("id"),
                    format!("duplicate signal id `{id}`"),
                ));
            }
            let kind = match s.kind.get_ref().as_str() {
                "buying" => SignalKind::Buying,
                "risk" => SignalKind::Risk,
                "info" => SignalKind::Info,
                other => {
                    return Err(pack_error(
                        Some(s.kind.span()),
                        &field("kind"),
                        format!("expected buying, risk or info, found `{other}`"),
                    ))
                }
            };
            let speaker = match &s.speaker {
                None if kind == SignalKind::Info => SpeakerScope::Any,
                None => SpeakerScope::Customer,
                Some(v) => match v.get_ref().as_str() {
                    "customer" => SpeakerScope::Customer,
                    "any" => SpeakerScope::Any,
                    other => {
                        return Err(pack_error(
                            Some(v.span()),
                            &field("speaker"),
                            format!("expected customer or any, found `{other}`"),
                        ))
                    }
                },
            };
            if let Some(t) = &s.threshold {
                if !(0.0..=1.0).contains(t.get_ref()) {
                    return Err(pack_error(
                        Some(t.span()),
                        &field("threshold"),
                        format!("expected 0..1, found {}", t.get_ref()),
                    ));
                }
            }
            if s.examples.get_ref().len() < 2 {
                return Err(pack_error(
                    Some(s.examples.span()),
                    &field("examples"),
                    format!(
                        "need at least 2 positive examples, found {}",
                        s.examples.get_ref().len()
                    ),
                ));
            }
            for (name, value) in [("name_zh", &s.name_zh), ("name_en", &s.name_en)] {
                if value.get_ref().trim().is_empty() {
                    return Err(pack_error(
                        Some(value.span()),
                        &field(name),
                        "is empty; explanations show it, so give the signal a name".into(),
                    ));
                }
            }
            // A text that is both an example and a hard negative teaches nothing but noise.
            let negatives_span = s.negatives.as_ref().map(Spanned::span);
            let negatives = s.negatives.map(Spanned::into_inner).unwrap_or_default();
            if let Some(both) = negatives
                .iter()
                .find(|n| s.examples.get_ref().iter().any(|e| e.trim() == n.trim()))
            {
                return Err(pack_error(
                    negatives_span,
                    &field("negatives"),
                    format!("`{both}` is also one of the examples; a text can be only one of them"),
                ));
            }
            let mut attributes = Vec::new();
            for a in s.attributes {
                let name = a.name.get_ref().clone();
                let afield = field(&format!("attribute[{name}]"));
                attributes.push(match (a.regex, a.gazetteer) {
                    (Some(re), None) => {
                        let regex_field = format!("{afield}.regex");
                        let regex = Regex::new(re.get_ref()).map_err(|e| {
                            pack_error(
                                Some(re.span()),
                                &regex_field,
                                format!("invalid regex: {e}"),
                            )
                        })?;
                        let groups: Vec<&str> = regex.capture_names().flatten().collect();
                        if !groups.is_empty() && !groups.contains(&name.as_str()) {
                            return Err(pack_error(
                                Some(re.span()),
                                &regex_field,
                                format!(
                                    "has named groups {} but none named `{name}`, so the whole match would be the value; name the value's group `(?P<{name}>...)`",
                                    groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
                                ),
                            ));
                        }
                        if regex.is_match("") {
                            return Err(pack_error(
                                Some(re.span()),
                                &regex_field,
                                "matches an empty text, so every clause would carry this attribute; require at least one character (`+` rather than `*`)".to_string(),
                            ));
                        }
                        AttributeExtractor::Regex { name, regex }
                    }
                    (None, Some(mut entries)) => {
                        if entries.is_empty() || entries.iter().any(|e| e.trim().is_empty()) {
                            return Err(pack_error(
                                Some(a.name.span()),
                                &format!("{afield}.gazetteer"),
                                "needs at least one entry and no empty ones".to_string(),
                            ));
                        }
                        entries.sort_by_key(|e| std::cmp::Reverse(e.len()));
                        AttributeExtractor::Gazetteer { name, entries }
                    }
                    _ => {
                        return Err(pack_error(
                            Some(a.name.span()),
                            &afield,
                            "give exactly one of `regex` or `gazetteer`".to_string(),
                        ))
                    }
                });
            }
            signals.push(SignalDef {
                id,
                kind,
                name_zh: s.name_zh.into_inner(),
                name_en: s.name_en.into_inner(),
                description: s.description,
                speaker,
                threshold: s.threshold.map(|t| t.into_inner()),
                weights: s.weights,
                examples: s.examples.into_inner(),
                negatives,
                attributes,
            });
        }
        if signals.is_empty() {
            return Err(pack_error(
                None,
                "signal",
                "a pack needs at least one [[signal]]".to_string(),
            ));
        }
        let mut labelled_notes = Vec::new();
        for file in &raw.pack.labelled_notes {
            labelled_notes.extend(load_notes(file.get_ref()).map_err(|e| match e {
                SignalError::Io { source, .. } => pack_error(
                    Some(file.span()),
                    "pack.labelled_notes",
                    format!("cannot read `{}`: {source}", file.get_ref()),
                ),
                other => other,
            })?);
        }
        Ok(Self {
            labelled_notes,
            name: raw.pack.name.into_inner(),
            version: raw.pack.version,
            description: raw.pack.description,
            sentiment: raw.sentiment,
            signals,
        })
    }

    /// This pack with `other` layered on top: signals with the same id are replaced, new ones
    /// appended, sentiment examples added; the name becomes `self vN + other` and the version
    /// `other`'s.
    pub fn extended_with(mut self, other: SignalPack) -> Self {
        self.name = format!("{} v{} + {}", self.name, self.version, other.name);
        self.version = other.version;
        for signal in other.signals {
            match self.signals.iter_mut().find(|s| s.id == signal.id) {
                Some(existing) => *existing = signal,
                None => self.signals.push(signal),
            }
        }
        self.sentiment.positive.extend(other.sentiment.positive);
        self.sentiment.negative.extend(other.sentiment.negative);
        self.sentiment.neutral.extend(other.sentiment.neutral);
        self.labelled_notes.extend(other.labelled_notes);
        self
    }

    /// The signals' ids, in the pack's order (the order of [`crate::ClauseScores::signals`]).
    pub fn signal_ids(&self) -> Vec<String> {
        self.signals.iter().map(|s| s.id.clone()).collect()
    }

    /// The signal with this id.
    pub fn signal(&self, id: &str) -> Option<&SignalDef> {
        self.signals.iter().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pack_loads_with_all_signals_and_both_languages() {
        let pack = SignalPack::builtin();
        assert!(pack.signals.len() >= 16);
        let cjk = |s: &String| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        for s in &pack.signals {
            assert!(
                s.examples.iter().filter(|e| cjk(e)).count() >= 5,
                "{}: zh examples",
                s.id
            );
            assert!(
                s.examples.iter().filter(|e| !cjk(e)).count() >= 5,
                "{}: en examples",
                s.id
            );
            assert!(!s.negatives.is_empty(), "{}: hard negatives", s.id);
        }
        let installed = pack.signal("installed_base").unwrap();
        let plc = installed
            .attributes
            .iter()
            .find(|a| a.name() == "plc_model")
            .unwrap();
        assert_eq!(
            plc.extract("当前PLC型号为西门子S7-1500").as_deref(),
            Some("西门子S7-1500")
        );
    }

    /// The error `SignalPack::parse` gives for `text`, read as `my.toml`.
    fn parse_error(text: &str) -> String {
        SignalPack::parse(text, "my.toml", |_| Ok(Vec::new()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "[pack]\nname = \"x\"\n\n[[signal]]\nid = \"a\"\nkind = \"buy\"\nname_zh = \"甲\"\nname_en = \"A\"\nexamples = [\"x\", \"y\"]\n";
        let err = parse_error(text);
        assert!(err.starts_with("my.toml:6: signal[a].kind"), "{err}");

        let text = "[pack]\nname = \"x\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"甲\"\nname_en = \"A\"\nexamples = [\"x\", \"y\"]\n[[signal.attribute]]\nname = \"n\"\nregex = '(?P<n>[a-'\n";
        let err = parse_error(text);
        assert!(
            err.starts_with("my.toml:11: signal[a].attribute[n].regex: invalid regex"),
            "{err}"
        );

        // Regression: an attribute regex whose named group is not the attribute's (the whole
        // match became the value), one that matches nothing at all (every clause got an empty
        // value), and an empty gazetteer entry were accepted.
        let signal = "[pack]\nname = \"x\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"甲\"\nname_en = \"A\"\nexamples = [\"x\", \"y\"]\n[[signal.attribute]]\nname = \"plc_model\"\n";
        for (attribute, expected) in [
            (
                "regex = '型号为(?P<model>\\S+)'\n",
                "my.toml:11: signal[a].attribute[plc_model].regex: has named groups `model` but none named `plc_model`",
            ),
            (
                "regex = '(?P<plc_model>S7-\\d*)?'\n",
                "my.toml:11: signal[a].attribute[plc_model].regex: matches an empty text",
            ),
            (
                "gazetteer = [\"S7-1500\", \" \"]\n",
                "my.toml:10: signal[a].attribute[plc_model].gazetteer: needs at least one entry and no empty ones",
            ),
        ] {
            let err = parse_error(&format!("{signal}{attribute}"));
            assert!(err.starts_with(expected), "{attribute}: {err}");
        }
        let pack = SignalPack::parse(
            &format!("{signal}regex = '型号为(?P<plc_model>\\S*)'\n"),
            "my.toml",
            |_| Ok(Vec::new()),
        )
        .unwrap();
        let extractor = &pack.signals[0].attributes[0];
        assert_eq!(
            extractor.extract("型号为S7-1500").as_deref(),
            Some("S7-1500")
        );
        assert_eq!(
            extractor.extract("型号为 还没定"),
            None,
            "an empty capture is no value"
        );

        // Regression: an empty name and an example repeated as a negative were accepted.
        let text = "[pack]\nname = \"x\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"\"\nname_en = \"A\"\nexamples = [\"x\", \"y\"]\n";
        let err = parse_error(text);
        assert!(
            err.starts_with("my.toml:6: signal[a].name_zh: is empty"),
            "{err}"
        );
        // Regression: an empty name_en was reported at the id's line, and an empty pack name
        // was accepted.
        let text = "[pack]\nname = \"x\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"甲\"\nname_en = \" \"\nexamples = [\"x\", \"y\"]\n";
        let err = parse_error(text);
        assert!(
            err.starts_with("my.toml:7: signal[a].name_en: is empty"),
            "{err}"
        );
        let text = "[pack]\nname = \"\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"甲\"\nname_en = \"A\"\nexamples = [\"x\", \"y\"]\n";
        let err = parse_error(text);
        assert!(err.starts_with("my.toml:2: pack.name: is empty"), "{err}");
        let text = "[pack]\nname = \"x\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"甲\"\nname_en = \"A\"\nexamples = [\"x\", \"y\"]\nnegatives = [\"y\"]\n";
        let err = parse_error(text);
        assert!(
            err.starts_with("my.toml:9: signal[a].negatives: `y` is also one of the examples"),
            "{err}"
        );

        let text = "[pack]\nname = \"x\"\n[[signal]]\nid = \"a\"\nkind = \"risk\"\nname_zh = \"甲\"\nname_en = \"A\"\nexampels = [\"x\"]\n";
        let err = parse_error(text);
        assert!(
            err.starts_with("my.toml:") && err.contains("exampels"),
            "{err}"
        );
    }

    #[test]
    fn gazetteer_matches_whole_words_only() {
        let g = AttributeExtractor::Gazetteer {
            name: "v".into(),
            entries: vec!["SAP".into(), "西门子".into()],
        };
        assert_eq!(g.extract("please reply ASAP"), None);
        assert_eq!(g.extract("they run SAP ECC 6.0").as_deref(), Some("SAP"));
        assert_eq!(g.extract("用的是西门子的").as_deref(), Some("西门子"));
    }

    #[test]
    fn extending_replaces_by_id_and_appends_new() {
        let base = SignalPack::builtin();
        let n = base.signals.len();
        let extra = "[pack]\nname = \"mine\"\n[[signal]]\nid = \"budget_approved\"\nkind = \"buying\"\nname_zh = \"预算\"\nname_en = \"Budget\"\nexamples = [\"a\", \"b\"]\n[[signal]]\nid = \"new_one\"\nkind = \"info\"\nname_zh = \"新\"\nname_en = \"New\"\nexamples = [\"c\", \"d\"]\n";
        let merged = base.extended_with(SignalPack::parse(extra, "x", |_| Ok(Vec::new())).unwrap());
        assert_eq!(merged.signals.len(), n + 1);
        assert_eq!(merged.name, "b2b v1 + mine", "messages name both packs");
        assert_eq!(
            merged.signal("budget_approved").unwrap().examples,
            vec!["a", "b"]
        );
    }
}
