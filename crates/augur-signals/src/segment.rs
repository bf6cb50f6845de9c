//! Segmentation: a note or chat log becomes clauses with char and byte offsets, each attributed
//! to a speaker role when the text has speaker turns (`客户：`, `Rep:`, `[10:02] Name:`).

use regex::Regex;
use serde::Serialize;

/// Who said a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The customer's side.
    Customer,
    /// Our side (sales rep, support agent).
    Rep,
    /// No speaker turn (a visit note, a ticket field): written about the customer.
    Unknown,
}

impl Speaker {
    /// Lower-case name, as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Customer => "customer",
            Speaker::Rep => "rep",
            Speaker::Unknown => "unknown",
        }
    }
}

/// One clause of a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// The clause text (a slice of the input).
    pub text: String,
    /// Start, in Unicode scalar values from the start of the input.
    pub char_start: usize,
    /// End (exclusive), in chars.
    pub char_end: usize,
    /// Start, in UTF-8 bytes.
    pub byte_start: usize,
    /// End (exclusive), in bytes.
    pub byte_end: usize,
    /// Role of the speaker.
    pub speaker: Speaker,
    /// The speaker label as written (`客户`, `[10:02] Zhang Wei`), if any.
    pub speaker_label: Option<String>,
}

/// Splits text into segments. Implement this to plug in another segmentation.
pub trait Segmenter: Send + Sync {
    /// The segments of `text`, in order, non-overlapping.
    fn segment(&self, text: &str) -> Vec<Segment>;
}

/// Labels that mark speaker turns and the role each stands for.
#[derive(Debug, Clone)]
pub struct SpeakerRules {
    customer_labels: Vec<String>,
    rep_labels: Vec<String>,
    /// Role of a named speaker in a `[hh:mm] Name:` turn whose label matches neither list.
    named_default: Speaker,
}

impl Default for SpeakerRules {
    fn default() -> Self {
        let words = |s: &[&str]| s.iter().map(|w| w.to_lowercase()).collect();
        Self {
            customer_labels: words(&[
                "客户",
                "客户方",
                "买方",
                "甲方",
                "customer",
                "client",
                "buyer",
                "prospect",
            ]),
            rep_labels: words(&[
                "销售",
                "我方",
                "客服",
                "客户经理",
                "售前",
                "工程师",
                "rep",
                "sales",
                "agent",
                "support",
                "account mgr",
                "account manager",
                "ae",
                "csm",
                "se",
                "bdr",
                "sdr",
            ]),
            named_default: Speaker::Customer,
        }
    }
}

impl SpeakerRules {
    /// Adds labels that mean the customer's side.
    pub fn with_customer_labels<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        labels: I,
    ) -> Self {
        self.customer_labels
            .extend(labels.into_iter().map(|l| l.into().to_lowercase()));
        self
    }

    /// Adds labels that mean our side.
    pub fn with_rep_labels<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        labels: I,
    ) -> Self {
        self.rep_labels
            .extend(labels.into_iter().map(|l| l.into().to_lowercase()));
        self
    }

    /// What a label before a colon means. `timestamped` turns are always speaker turns. A
    /// label that is exactly one of the configured labels is that speaker. Otherwise a salutation
    /// (`贵司客户经理：`, `Dear Tom (Account Manager):`, `王经理您好：`) opens a letter to that
    /// person: the text after it is not theirs. Any other label is a speaker when one of its
    /// parts is a configured label, and a field name (`问题：`, `Next step:`) when not.
    fn turn(&self, label: &str, timestamped: bool) -> Turn {
        let label = label.trim().to_lowercase();
        let exactly = |words: &[String]| words.contains(&label);
        if !timestamped
            && !exactly(&self.rep_labels)
            && !exactly(&self.customer_labels)
            && is_salutation(&label)
        {
            return Turn::Salutation;
        }
        let matches = |words: &[String]| {
            words.iter().any(|w| {
                label == *w
                    || label
                        .split(|c: char| !c.is_alphanumeric() && c != ' ')
                        .any(|part| part.trim() == w)
                    || (!w.is_ascii() && label.contains(w.as_str()))
            })
        };
        if matches(&self.rep_labels) {
            Turn::Speaker(Speaker::Rep)
        } else if matches(&self.customer_labels) {
            Turn::Speaker(Speaker::Customer)
        } else if timestamped {
            Turn::Speaker(self.named_default)
        } else {
            Turn::Field
        }
    }
}

/// What a `label:` at the start of a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// A speaker turn: what follows is this side's.
    Speaker(Speaker),
    /// A letter's salutation: what follows is written to that person, by someone not named.
    Salutation,
    /// A field name (`问题：`): the speaker does not change.
    Field,
}

/// First words of an English salutation (lower case).
const SALUTATION_WORDS: &[&str] = &["dear", "hi", "hello", "hey"];

/// How a Chinese salutation starts (`尊敬的王总：`).
const SALUTATION_OPENERS: &[&str] = &["尊敬的", "亲爱的"];

/// How a Chinese salutation ends (`王经理您好：`).
const SALUTATION_CLOSERS: &[&str] = &["您好", "你好"];

/// Words that address the reader's organisation: a label with them names whom the text is
/// written to (`贵司客户经理` is "your company's account manager"), not who speaks.
const ADDRESSEE_WORDS: &[&str] = &["贵司", "贵公司", "贵单位", "your "];

/// Whether a lower-cased label before a colon is a salutation rather than a speaker.
fn is_salutation(label: &str) -> bool {
    // Words end at spaces and commas only: `Hi-Tech Corp (Client)` is no greeting.
    let first_word = label
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '，'))
        .find(|w| !w.is_empty())
        .unwrap_or("");
    SALUTATION_WORDS.contains(&first_word)
        || SALUTATION_OPENERS.iter().any(|w| label.starts_with(w))
        || SALUTATION_CLOSERS.iter().any(|w| label.ends_with(w))
        || ADDRESSEE_WORDS.iter().any(|w| label.contains(w))
}

/// The default segmenter: lines, speaker turns, then clauses at 。！？；， (Chinese) and at
/// sentence ends, semicolons and commas (English, abbreviation-aware); fragments too short to
/// carry meaning are merged into their neighbour.
#[derive(Debug, Clone)]
pub struct ClauseSegmenter {
    rules: SpeakerRules,
    turn: Regex,
    bullet: Regex,
}

impl Default for ClauseSegmenter {
    fn default() -> Self {
        Self::new(SpeakerRules::default())
    }
}

const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "inc", "ltd", "co", "corp", "e.g", "i.e", "etc", "vs",
    "approx", "dept", "no", "st", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "u.s", "est", "maint",
];

impl ClauseSegmenter {
    /// A segmenter with these speaker rules.
    pub fn new(rules: SpeakerRules) -> Self {
        Self {
            rules,
            turn: Regex::new(r"^\s*(?P<time>\[\d{1,2}:\d{2}(?::\d{2})?\]\s*)?(?P<label>[^:：\[\]\n]{1,40}?)\s*[:：]\s*")
                .expect("valid"),
            bullet: Regex::new(r"^\s*(?:[-*•·]|\d{1,2}[.、)])\s+").expect("valid"),
        }
    }

    /// Byte ranges of the clauses of `line` (relative to `line`).
    fn clauses(&self, line: &str) -> Vec<(usize, usize)> {
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        let mut pieces = Vec::new();
        let mut start = 0;
        for (k, &(i, c)) in chars.iter().enumerate() {
            let next = chars.get(k + 1).map(|&(_, n)| n);
            let boundary = match c {
                '。' | '！' | '？' | '；' | '，' | '!' | '?' | ';' => true,
                ',' => next.is_none_or(char::is_whitespace),
                '.' => next.is_none_or(char::is_whitespace) && !is_abbreviation(&line[..i]),
                _ => false,
            };
            if boundary {
                pieces.push((start, i + c.len_utf8()));
                start = i + c.len_utf8();
            }
        }
        if start < line.len() {
            pieces.push((start, line.len()));
        }
        // Trim, drop empty pieces, merge fragments too short to stand alone.
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (s, e) in pieces {
            let Some((s, e)) = trim_span(line, s, e) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if is_fragment(&line[s..e]) || is_fragment(&line[last.0..last.1]) => {
                    last.1 = e
                }
                _ => out.push((s, e)),
            }
        }
        out
    }
}

/// Whether the text before a '.' ends in an abbreviation, an initial or a number.
fn is_abbreviation(before: &str) -> bool {
    let word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let lower = word.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
        || (word.chars().count() == 1 && word.chars().all(|c| c.is_uppercase()))
}

/// Too short to carry a signal alone: under 4 CJK characters and under 3 Latin words.
fn is_fragment(text: &str) -> bool {
    let cjk = text
        .chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count();
    let words = text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count();
    cjk < 4 && words < 3
}

/// Trims whitespace and edge punctuation; `None` when nothing meaningful is left.
fn trim_span(line: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let piece = &line[s..e];
    let edge = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '，' | '。'
                    | '；'
                    | '！'
                    | '？'
                    | ','
                    | ';'
                    | '!'
                    | '?'
                    | '.'
                    | '、'
                    | '"'
                    | '“'
                    | '”'
            )
    };
    let trimmed_start = piece.len() - piece.trim_start_matches(edge).len();
    let rest = &piece[trimmed_start..];
    let inner = rest.trim_end_matches(edge);
    if !inner.chars().any(char::is_alphanumeric) {
        return None;
    }
    Some((s + trimmed_start, s + trimmed_start + inner.len()))
}

impl Segmenter for ClauseSegmenter {
    fn segment(&self, text: &str) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut speaker = (Speaker::Unknown, None::<String>);
        let mut line_start = 0;
        // (byte offset, its char offset) of the last clause start.
        let mut counted = (0, 0);
        for line in text.split_inclusive('\n') {
            let body_line = line.trim_end_matches(['\n', '\r']);
            let mut offset = 0;
            if let Some(m) = self.bullet.find(body_line) {
                offset = m.end();
            }
            if let Some(caps) = self.turn.captures(&body_line[offset..]) {
                let label = caps.name("label").map_or("", |m| m.as_str());
                let turn = self.rules.turn(label, caps.name("time").is_some());
                if turn == Turn::Salutation {
                    speaker = (Speaker::Unknown, None);
                }
                if let Turn::Speaker(role) = turn {
                    speaker = (
                        role,
                        Some(
                            caps[0]
                                .trim()
                                .trim_end_matches([':', '：'])
                                .trim()
                                .to_string(),
                        ),
                    );
                    offset += caps.get(0).map_or(0, |m| m.end());
                }
            }
            for (s, e) in self.clauses(&body_line[offset..]) {
                let byte_start = line_start + offset + s;
                let byte_end = line_start + offset + e;
                // Clauses come in text order: count only the characters since the last one
                // (counting from the start each time is quadratic on long transcripts).
                debug_assert!(byte_start >= counted.0);
                let char_start = counted.1 + text[counted.0..byte_start].chars().count();
                counted = (byte_start, char_start);
                let clause = &text[byte_start..byte_end];
                segments.push(Segment {
                    text: clause.to_string(),
                    char_start,
                    char_end: char_start + clause.chars().count(),
                    byte_start,
                    byte_end,
                    speaker: speaker.0,
                    speaker_label: speaker.1.clone(),
                });
            }
            line_start += line.len();
        }
        segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        ClauseSegmenter::default()
            .segment(text)
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn chinese_clauses_split_at_clause_punctuation() {
        assert_eq!(
            texts("客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500，下月初安排技术交流。"),
            vec![
                "客户确认产线升级预算已批复",
                "当前PLC型号为西门子S7-1500",
                "下月初安排技术交流"
            ]
        );
    }

    #[test]
    fn english_sentences_respect_abbreviations_and_decimals() {
        assert_eq!(
            texts("Met Dr. Chen at Acme Inc. today. They run SAP ECC 6.0 and want a quote for 40 seats, e.g. one per line. Next step: demo on Tue."),
            vec!["Met Dr. Chen at Acme Inc. today", "They run SAP ECC 6.0 and want a quote for 40 seats", "e.g. one per line", "Next step: demo on Tue"]
        );
    }

    #[test]
    fn offsets_are_chars_and_bytes_of_the_input() {
        let text = "拜访张总。\n客户：预算已经批了，下周签。";
        for s in ClauseSegmenter::default().segment(text) {
            assert_eq!(&text[s.byte_start..s.byte_end], s.text);
            let by_chars: String = text
                .chars()
                .skip(s.char_start)
                .take(s.char_end - s.char_start)
                .collect();
            assert_eq!(by_chars, s.text);
        }
    }

    #[test]
    fn speaker_turns_are_recognised_and_attributed() {
        let text = "客户：报价单什么时候能发过来？\n销售：今天下班前发您。\nCustomer: we're also talking to Rockwell.\nRep: noted, I'll send the comparison.\n[10:02] Zhang Wei (Acme Plant): 预算批了\n[10:03] Tom (Account Mgr): great news";
        let segs = ClauseSegmenter::default().segment(text);
        let roles: Vec<(String, Speaker)> =
            segs.iter().map(|s| (s.text.clone(), s.speaker)).collect();
        assert_eq!(
            roles,
            vec![
                ("报价单什么时候能发过来".to_string(), Speaker::Customer),
                ("今天下班前发您".to_string(), Speaker::Rep),
                (
                    "we're also talking to Rockwell".to_string(),
                    Speaker::Customer
                ),
                ("noted, I'll send the comparison".to_string(), Speaker::Rep),
                ("预算批了".to_string(), Speaker::Customer),
                ("great news".to_string(), Speaker::Rep),
            ]
        );
    }

    /// Regression: the salutation of a customer's complaint letter (`贵司客户经理：`, "your
    /// account manager") made the whole letter the rep's, so no customer signal could fire.
    #[test]
    fn a_salutation_is_not_a_speaker_turn() {
        for letter in [
            "主题：正式投诉\n贵司客户经理：\n我司将根据处理结果评估是否继续合作。",
            "Dear Tom (Account Manager):\nWe will not renew the contract.",
            "Hello, Support:\nthe ticket is three days past its SLA.",
            "尊敬的客服：\n工单已经超时三天没人处理。",
            "客服您好：\n工单已经超时三天没人处理。",
            // A letter pasted after a rep's turn is not the rep's either.
            "销售：转发客户来信\n王经理您好：\n我们决定不再续约。",
        ] {
            let segs = ClauseSegmenter::default().segment(letter);
            assert_eq!(
                segs.last().unwrap().speaker,
                Speaker::Unknown,
                "{letter:?}: {segs:?}"
            );
        }
    }

    #[test]
    fn labels_that_only_look_like_salutations_stay_speakers() {
        let segs = ClauseSegmenter::default()
            .segment("To Ka Ho (Client): 预算批了\n客户经理：好的，我今天发合同\nHi-Tech Corp (Client): thanks");
        let roles: Vec<Speaker> = segs.iter().map(|s| s.speaker).collect();
        assert_eq!(
            roles,
            [Speaker::Customer, Speaker::Rep, Speaker::Customer],
            "{segs:?}"
        );
        // A configured label is never read as a salutation.
        let rules = SpeakerRules::default().with_customer_labels(["贵司采购"]);
        let segs = ClauseSegmenter::new(rules).segment("贵司采购：合同下周签");
        assert_eq!(segs[0].speaker, Speaker::Customer, "{segs:?}");
    }

    #[test]
    fn field_labels_are_not_speakers_and_notes_have_unknown_speaker() {
        let segs = ClauseSegmenter::default()
            .segment("问题：工单超时三天没人处理\n- 当前PLC型号为西门子S7-1500");
        assert!(segs.iter().all(|s| s.speaker == Speaker::Unknown));
        assert_eq!(segs[1].text, "当前PLC型号为西门子S7-1500");
    }
}
