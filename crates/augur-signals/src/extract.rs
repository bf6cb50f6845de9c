//! The extractor: segment → embed clauses → per-signal probabilities → speaker rule →
//! attributes and dates → hits with evidence spans; plus per-note sentiment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use augur_core::finetune::{LabelledText, TextClassifier};
use augur_core::{Embedder, InputKind};
use chrono::NaiveDate;
use serde::Serialize;

use crate::cache::{self, CacheKey};
use crate::classify::{FitSettings, HeadTraining, LogisticHeads};
use crate::dates::DateResolver;
use crate::error::{Result, SignalError};
use crate::lexical::LexicalHasher;
use crate::pack::{SignalKind, SignalPack, SpeakerScope};
use crate::segment::{ClauseSegmenter, Segment, Segmenter, Speaker};

/// Probability above which a signal fires when neither the pack nor the caller sets one.
pub const DEFAULT_THRESHOLD: f32 = 0.7;

/// Default of [`SignalExtractorBuilder::with_margin`].
pub const DEFAULT_MARGIN: f32 = 0.1;

/// Default of [`SignalExtractorBuilder::with_context_weight`].
pub const DEFAULT_CONTEXT_WEIGHT: f32 = 0.3;

/// One text to analyse.
#[derive(Debug, Clone, Default)]
pub struct Note {
    /// The note's id.
    pub id: String,
    /// The account it belongs to.
    pub account_id: Option<String>,
    /// The note's date, for resolving 「下个月」 and "next quarter".
    pub date: Option<NaiveDate>,
    /// The text.
    pub text: String,
}

impl Note {
    /// A note with just an id and text.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            text: text.into(),
            ..Self::default()
        }
    }

    /// Sets the account.
    pub fn with_account(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }

    /// Sets the date.
    pub fn with_date(mut self, date: NaiveDate) -> Self {
        self.date = Some(date);
        self
    }
}

/// A signal found in a clause, with its evidence.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Hit {
    /// Note id.
    pub note_id: String,
    /// Account id, if given.
    pub account_id: Option<String>,
    /// Signal id.
    pub signal: String,
    /// Buying, risk or info.
    pub kind: SignalKind,
    /// Calibrated probability (0..1).
    pub probability: f32,
    /// The clause that carries the signal.
    pub evidence: String,
    /// Evidence start, in chars of the note text.
    pub char_start: usize,
    /// Evidence end (exclusive), in chars.
    pub char_end: usize,
    /// Evidence start, in bytes.
    pub byte_start: usize,
    /// Evidence end (exclusive), in bytes.
    pub byte_end: usize,
    /// Who said it.
    pub speaker: Speaker,
    /// Attributes extracted from the evidence (`plc_model`, `competitor`, `when`, ...).
    pub attributes: BTreeMap<String, String>,
}

/// Everything found in one note.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NoteSignals {
    /// Note id.
    pub note_id: String,
    /// Signals, in text order.
    pub hits: Vec<Hit>,
    /// Sentiment of the customer's side, −1 (negative) .. 1 (positive); 0 when nothing was said.
    pub sentiment: f32,
    /// Number of clauses analysed.
    pub segments: usize,
    /// Every clause's probability for every signal, hit or not (what error analysis reads;
    /// not serialised).
    #[serde(skip)]
    pub clause_scores: Vec<ClauseScores>,
}

/// The probabilities one clause got, whether or not a signal fired.
#[derive(Debug, Clone)]
pub struct ClauseScores {
    /// Clause start, in chars of the note text.
    pub char_start: usize,
    /// Clause end (exclusive), in chars.
    pub char_end: usize,
    /// One probability per signal of the pack, in the pack's order.
    pub signals: Vec<f32>,
}

/// Configures a [`SignalExtractor`].
pub struct SignalExtractorBuilder {
    embedder: Embedder,
    pack: SignalPack,
    segmenter: Box<dyn Segmenter>,
    threshold: f32,
    fit: FitSettings,
    lexical: Option<(LexicalHasher, f32)>,
    cache_dir: Option<PathBuf>,
    margin: f32,
    classifier: Option<TextClassifier>,
    /// `None`: half the model's layers; `Some(None)`: last layer only.
    middle_depth: Option<Option<usize>>,
    context_weight: f32,
}

/// What a label of a fitted classifier's head decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelRoute {
    /// The probability of the pack's signal at this index.
    Signal(usize),
    /// Positive sentiment.
    Positive,
    /// Negative sentiment.
    Negative,
}

/// A fitted adapter + head, and which of its labels replace which probabilities.
struct FittedClassifier {
    classifier: TextClassifier,
    routes: Vec<(usize, LabelRoute)>,
    /// Labels that name neither a signal nor a sentiment (e.g. `none`).
    unrouted: Vec<String>,
    /// The adapted embedder without output normalisation: the head's input.
    unnormalised: Embedder,
}

impl SignalExtractorBuilder {
    /// Replaces the embedder (e.g. one with a LoRA adapter merged: the heads are fitted on its
    /// embeddings, and cached per adapter).
    pub fn with_embedder(mut self, embedder: Embedder) -> Self {
        self.embedder = embedder;
        self
    }

    /// A classifier fitted by `augur fit` (LoRA adapter + head): clauses are embedded by its
    /// adapted encoder (the pack's heads are fitted on those embeddings), and its head decides
    /// every label that names a signal of the pack, plus sentiment through labels `positive` and
    /// `negative`. This is how a team improves a signal by adding examples.
    pub fn with_classifier(mut self, classifier: TextClassifier) -> Self {
        self.embedder = classifier.embedder().clone();
        self.classifier = Some(classifier);
        self
    }

    /// A clause keeps only signals whose probability is within `margin` of its most likely
    /// signal (default [`DEFAULT_MARGIN`]; 1.0 keeps every signal above the threshold).
    pub fn with_margin(mut self, margin: f32) -> Self {
        self.margin = margin;
        self
    }

    /// Adds the clause's vector pooled after `depth` layers to its features, beside the last
    /// layer's: a middle layer keeps more of the wording (default: half the model's layers);
    /// `None` uses the last layer only.
    pub fn with_middle_layer(mut self, depth: Option<usize>) -> Self {
        self.middle_depth = Some(depth);
        self
    }

    /// Weight of the clause's context among its features: the mean embedding of the clauses
    /// before and after it in the same note, which tells "两点可以" in a scheduling exchange from
    /// the same words elsewhere (default [`DEFAULT_CONTEXT_WEIGHT`]; 0 leaves context out).
    pub fn with_context_weight(mut self, weight: f32) -> Self {
        self.context_weight = weight;
        self
    }

    /// Where fitted heads are cached (default: `$AUGUR_CACHE_DIR` or `~/.cache/augur`);
    /// `None` fits them on every build.
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Lexical n-gram features beside the embedding, scaled by `weight` (default: 4096 buckets,
    /// weight 1.0); `None` uses the embedding alone.
    pub fn with_lexical_features(mut self, lexical: Option<(LexicalHasher, f32)>) -> Self {
        self.lexical = lexical;
        self
    }

    /// The signal pack (default: the built-in B2B pack).
    pub fn with_pack(mut self, pack: SignalPack) -> Self {
        self.pack = pack;
        self
    }

    /// How texts are split into clauses (default: [`ClauseSegmenter`]).
    pub fn with_segmenter(mut self, segmenter: impl Segmenter + 'static) -> Self {
        self.segmenter = Box::new(segmenter);
        self
    }

    /// Probability above which a signal fires when the pack sets no threshold
    /// (default [`DEFAULT_THRESHOLD`]).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Optimiser settings of the few-shot heads.
    pub fn with_fit_settings(mut self, fit: FitSettings) -> Self {
        self.fit = fit;
        self
    }

    /// Embeds the pack's examples and fits the heads.
    pub fn build(mut self) -> Result<SignalExtractor> {
        let layers = self.embedder.layer_count();
        // A one-layer model has no middle layer to add.
        let middle = self
            .middle_depth
            .unwrap_or((layers >= 2).then_some(layers / 2));
        if let Some(depth) = middle.filter(|&d| d == 0 || d >= layers) {
            return Err(SignalError::Setting(format!(
                "middle layer {depth} must lie between 1 and {} (the model has {layers} layers)",
                layers - 1
            )));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(SignalError::Setting(format!(
                "threshold {} must be a probability between 0 and 1",
                self.threshold
            )));
        }
        if self.margin.is_nan() || self.margin < 0.0 {
            return Err(SignalError::Setting(format!(
                "margin {} must be 0 (only the most likely signal) or positive",
                self.margin
            )));
        }
        if self.context_weight.is_nan() || self.context_weight < 0.0 {
            return Err(SignalError::Setting(format!(
                "context weight {} must be 0 (no context) or positive",
                self.context_weight
            )));
        }
        let features = ClauseFeatures {
            depths: std::iter::once(layers).chain(middle).collect(),
            context_weight: self.context_weight,
            lexical: self.lexical,
        };
        let (training, sentiment_heads) = training_data(&self.pack, self.segmenter.as_ref());
        let heads_count = self.pack.signals.len() + sentiment_heads;
        let key = self.cache_key(&training, &features)?;
        let classifier = match self.classifier.take() {
            None => None,
            Some(classifier) => Some(self.route(classifier)?),
        };
        let mut identity = CacheKey::new();
        identity.add_bytes(key.as_bytes());
        identity.add_bytes(
            format!(
                "{:?} threshold={} margin={}",
                self.pack, self.threshold, self.margin
            )
            .as_bytes(),
        );
        let cached = self
            .cache_dir
            .as_deref()
            .and_then(|dir| cache::load(dir, &key))
            .filter(|h| h.len() == heads_count);
        let heads = match cached {
            Some(heads) => heads,
            None => {
                let heads = self.fit(&training, heads_count, &features)?;
                if let Some(dir) = &self.cache_dir {
                    cache::store(dir, &key, &heads);
                }
                heads
            }
        };
        Ok(SignalExtractor {
            embedder: self.embedder,
            pack: self.pack,
            segmenter: self.segmenter,
            heads,
            fingerprint: identity.digest(),
            threshold: self.threshold,
            dates: DateResolver::default(),
            features,
            margin: self.margin,
            classifier,
        })
    }

    /// Matches the classifier's labels to the pack's signals and to sentiment. Refuses a head
    /// none of whose labels is used, a single-label head without a label for "none of these"
    /// (its probabilities sum to 1, so some signal would fire on every clause), and a classifier
    /// whose adapter is not the embedder's (e.g. `with_embedder` called after it).
    fn route(&self, classifier: TextClassifier) -> Result<FittedClassifier> {
        if classifier.embedder().adapter_fingerprints() != self.embedder.adapter_fingerprints() {
            return Err(SignalError::Classifier(
                "the embedder is not the classifier's adapted one: call with_classifier after with_embedder".into(),
            ));
        }
        let routes: Vec<(usize, LabelRoute)> = classifier
            .labels
            .iter()
            .enumerate()
            .filter_map(|(i, label)| {
                let route = match label.as_str() {
                    "positive" => LabelRoute::Positive,
                    "negative" => LabelRoute::Negative,
                    id => LabelRoute::Signal(self.pack.signals.iter().position(|s| s.id == id)?),
                };
                Some((i, route))
            })
            .collect();
        if routes.is_empty() {
            return Err(SignalError::Classifier(format!(
                "none of the adapter's labels {:?} is a signal id of pack `{}` or `positive` / `negative`; label the examples with signal ids (e.g. {})",
                classifier.labels,
                self.pack.name,
                self.pack.signals.iter().take(3).map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let unrouted: Vec<String> = classifier
            .labels
            .iter()
            .enumerate()
            .filter(|(i, _)| routes.iter().all(|(routed, _)| routed != i))
            .map(|(_, label)| label.clone())
            .collect();
        if !classifier.multi_label && unrouted.is_empty() {
            return Err(SignalError::Classifier(format!(
                "the head is single-label and every label ({}) is a signal or a sentiment, so their probabilities sum to 1 and one would fire on every clause; add examples labelled `none` (clauses with none of these) and refit",
                classifier.labels.join(", ")
            )));
        }
        Ok(FittedClassifier {
            unnormalised: classifier.embedder().with_normalization(false),
            classifier,
            routes,
            unrouted,
        })
    }

    /// The cache file name for this training set, model and settings.
    fn cache_key(&self, training: &Training, features: &ClauseFeatures) -> Result<String> {
        let mut key = CacheKey::new();
        for fingerprint in self.embedder.adapter_fingerprints() {
            key.add_bytes(&fingerprint.to_le_bytes());
        }
        if let Some(classifier) = &self.classifier {
            key.add_bytes(&classifier.head_identity()?);
        }
        let files = self.embedder.files();
        for file in [&files.weights, &files.config, &files.tokenizer] {
            key.add_file_identity(file);
        }
        key.add_bytes(
            format!(
                "{:?} {:?} {:?} {} int8={} {:?} normalize={}",
                self.fit,
                features,
                self.embedder.long_text(),
                self.embedder.max_tokens(),
                self.embedder.int8(),
                self.embedder.pooling(),
                self.embedder.normalizes()
            )
            .as_bytes(),
        );
        for row in training {
            key.add_bytes(row.text.as_bytes());
            for &neighbour in &row.neighbours {
                key.add_bytes(&(neighbour as u64).to_le_bytes());
            }
            for (head, label, weight) in &row.roles {
                key.add_bytes(
                    &[
                        (*head as u32).to_le_bytes(),
                        label.to_le_bytes(),
                        weight.to_le_bytes(),
                    ]
                    .concat(),
                );
            }
        }
        Ok(key.file_name())
    }

    /// Embeds the training texts and fits the heads.
    fn fit(
        &self,
        training: &Training,
        heads_count: usize,
        features: &ClauseFeatures,
    ) -> Result<LogisticHeads> {
        let texts: Vec<&str> = training.iter().map(|row| row.text.as_str()).collect();
        let neighbours: Vec<Vec<usize>> =
            training.iter().map(|row| row.neighbours.clone()).collect();
        let layers = features.embed(&self.embedder, &texts)?;
        let standardize = features.dense_weights(self.embedder.dim());
        let rows = features.assemble(layers, &texts, &neighbours);
        let mut labels = vec![vec![0f32; texts.len()]; heads_count];
        let mut weights = vec![vec![0f32; texts.len()]; heads_count];
        for (i, row) in training.iter().enumerate() {
            for &(head, label, weight) in &row.roles {
                labels[head][i] = label;
                weights[head][i] = weight;
            }
        }
        balance(&mut weights, &labels);
        Ok(LogisticHeads::fit(
            &HeadTraining {
                features: rows,
                standardize,
                labels,
                weights,
            },
            self.fit,
        )?)
    }
}

/// What a clause's feature vector is made of: its embeddings at some depths of the encoder (the
/// last layer first), the mean of its neighbours' last-layer embeddings, and lexical n-grams.
#[derive(Debug, Clone)]
struct ClauseFeatures {
    /// Layers after which the clause is pooled; `depths[0]` is the last layer.
    depths: Vec<usize>,
    /// Weight of the neighbours' mean embedding after standardising (0: left out).
    context_weight: f32,
    /// Hashed n-grams and their scale.
    lexical: Option<(LexicalHasher, f32)>,
}

impl ClauseFeatures {
    /// Embeddings of `texts` at every depth: `result[d][i]`.
    fn embed(&self, embedder: &Embedder, texts: &[&str]) -> Result<Vec<Vec<Vec<f32>>>> {
        Ok(embedder.embed_at_depths(texts, InputKind::Query, &self.depths)?)
    }

    /// Weight of each dense dimension after standardising, for embeddings of width `dim`.
    fn dense_weights(&self, dim: usize) -> Vec<f32> {
        let mut weights = vec![1.0; dim * self.depths.len()];
        if self.context_weight > 0.0 {
            weights.extend(std::iter::repeat_n(self.context_weight, dim));
        }
        weights
    }

    /// One feature row per text from its embeddings (`layers[d][i]`, as [`ClauseFeatures::embed`]
    /// returns them); `neighbours[i]` are the indices of the texts around text `i` (none: the
    /// text is its own context).
    fn assemble(
        &self,
        layers: Vec<Vec<Vec<f32>>>,
        texts: &[&str],
        neighbours: &[Vec<usize>],
    ) -> Vec<Vec<f32>> {
        let last = &layers[0];
        let context = |i: usize| -> Vec<f32> {
            let around = &neighbours[i];
            if around.is_empty() {
                return last[i].clone();
            }
            let mut mean = vec![0f32; last[i].len()];
            for &j in around {
                mean.iter_mut().zip(&last[j]).for_each(|(m, x)| *m += x);
            }
            mean.iter_mut().for_each(|m| *m /= around.len() as f32);
            mean
        };
        (0..texts.len())
            .map(|i| {
                let mut row: Vec<f32> = layers.iter().flat_map(|l| l[i].iter().copied()).collect();
                if self.context_weight > 0.0 {
                    row.extend(context(i));
                }
                if let Some((hasher, weight)) = self.lexical {
                    row.extend(hasher.features(texts[i]).into_iter().map(|x| x * weight));
                }
                row
            })
            .collect()
    }
}

/// The clauses before and after each clause of one text, as indices into all clauses, the text's
/// first clause being at `offset`.
fn neighbours_in_text(offset: usize, clauses: usize) -> impl Iterator<Item = Vec<usize>> {
    (0..clauses).map(move |i| {
        let before = i.checked_sub(1).map(|j| offset + j);
        let after = (i + 1 < clauses).then_some(offset + i + 1);
        before.into_iter().chain(after).collect()
    })
}

/// One training text.
struct TrainingRow {
    text: String,
    /// `(head, label, weight)` for every head the text takes part in.
    roles: Vec<(usize, f32, f32)>,
    /// Indices of the rows around it in its note (empty for an example sentence).
    neighbours: Vec<usize>,
}

/// The training texts, in order.
type Training = Vec<TrainingRow>;

/// Weight of a signal's own hard negatives relative to other negatives.
const HARD_NEGATIVE_WEIGHT: f32 = 3.0;

/// Builds the training set: for each signal, its examples are positives; its hard negatives, the
/// other signals' examples and negatives, and neutral sentiment examples are negatives. Clauses
/// of the pack's labelled notes are positives for the signals whose spans they overlap and
/// negatives for the rest. The last two heads are positive and negative sentiment.
fn training_data(pack: &SignalPack, segmenter: &dyn Segmenter) -> (Training, usize) {
    let n = pack.signals.len();
    let (pos_head, neg_head) = (n, n + 1);
    let mut rows: Training = Vec::new();
    let sentence = |text: &String, roles| TrainingRow {
        text: text.clone(),
        roles,
        neighbours: Vec::new(),
    };
    for (s, signal) in pack.signals.iter().enumerate() {
        for text in &signal.examples {
            let roles = (0..n)
                .map(|h| if h == s { (h, 1.0, 1.0) } else { (h, 0.0, 1.0) })
                .collect();
            rows.push(sentence(text, roles));
        }
        for text in &signal.negatives {
            let roles = (0..n)
                .map(|h| (h, 0.0, if h == s { HARD_NEGATIVE_WEIGHT } else { 1.0 }))
                .collect();
            rows.push(sentence(text, roles));
        }
    }
    for note in &pack.labelled_notes {
        let segments = segmenter.segment(&note.text);
        let neighbours = neighbours_in_text(rows.len(), segments.len());
        for (segment, neighbours) in segments.into_iter().zip(neighbours) {
            let roles = pack
                .signals
                .iter()
                .enumerate()
                .map(|(h, signal)| {
                    let labelled = note.signals.iter().any(|g| {
                        g.signal == signal.id
                            && g.start < segment.char_end
                            && segment.char_start < g.end
                    });
                    (h, f32::from(labelled), 1.0)
                })
                .collect();
            rows.push(TrainingRow {
                text: segment.text,
                roles,
                neighbours,
            });
        }
    }
    let sentiment = &pack.sentiment;
    for (texts, pos, neg) in [
        (&sentiment.positive, 1.0, 0.0),
        (&sentiment.negative, 0.0, 1.0),
        (&sentiment.neutral, 0.0, 0.0),
    ] {
        for text in texts {
            let mut roles: Vec<(usize, f32, f32)> = (0..n).map(|h| (h, 0.0, 1.0)).collect();
            roles.push((pos_head, pos, 1.0));
            roles.push((neg_head, neg, 1.0));
            rows.push(sentence(text, roles));
        }
    }
    (rows, 2)
}

/// The pack's training texts as multi-label examples for `augur_core::finetune`: each signal
/// example carries its signal id; hard negatives and clauses of labelled notes outside every span
/// carry no label; a labelled clause carries the ids of the spans it overlaps. Sentiment examples
/// are left out (they train the sentiment heads only). This is what a fitted adapter for the
/// pack (`--adapter`) learns from.
pub fn pack_examples(pack: &SignalPack, segmenter: &dyn Segmenter) -> Vec<LabelledText> {
    let (rows, _) = training_data(pack, segmenter);
    let n = pack.signals.len();
    rows.into_iter()
        .filter(|row| row.roles.iter().all(|&(head, _, _)| head < n))
        .map(|row| LabelledText {
            text: row.text,
            labels: row
                .roles
                .iter()
                .filter(|&&(_, label, _)| label > 0.5)
                .map(|&(head, _, _)| pack.signals[head].id.clone())
                .collect(),
        })
        .collect()
}

/// Rescales each head's weights so positives and negatives count equally.
fn balance(weights: &mut [Vec<f32>], labels: &[Vec<f32>]) {
    for (w, y) in weights.iter_mut().zip(labels) {
        let pos: f32 = w
            .iter()
            .zip(y)
            .filter(|(_, y)| **y > 0.5)
            .map(|(w, _)| w)
            .sum();
        let neg: f32 = w
            .iter()
            .zip(y)
            .filter(|(_, y)| **y <= 0.5)
            .map(|(w, _)| w)
            .sum();
        for (wi, yi) in w.iter_mut().zip(y) {
            *wi /= if *yi > 0.5 {
                pos.max(f32::MIN_POSITIVE)
            } else {
                neg.max(f32::MIN_POSITIVE)
            };
        }
    }
}

/// The fitted classifier's probabilities, one row per clause (empty without a classifier).
type ClassifierRows = std::vec::IntoIter<Vec<f32>>;

/// Finds signals in notes. Load once, call from many threads (`&self`).
pub struct SignalExtractor {
    embedder: Embedder,
    pack: SignalPack,
    segmenter: Box<dyn Segmenter>,
    heads: LogisticHeads,
    fingerprint: String,
    threshold: f32,
    dates: DateResolver,
    features: ClauseFeatures,
    margin: f32,
    classifier: Option<FittedClassifier>,
}

impl SignalExtractor {
    /// Starts configuring an extractor on a loaded embedder.
    pub fn builder(embedder: Embedder) -> SignalExtractorBuilder {
        SignalExtractorBuilder {
            embedder,
            pack: SignalPack::builtin(),
            segmenter: Box::new(ClauseSegmenter::default()),
            threshold: DEFAULT_THRESHOLD,
            fit: FitSettings::default(),
            lexical: Some((LexicalHasher::default(), 1.0)),
            cache_dir: cache::default_cache_dir(),
            margin: DEFAULT_MARGIN,
            classifier: None,
            middle_depth: None,
            context_weight: DEFAULT_CONTEXT_WEIGHT,
        }
    }

    /// The pack in use.
    pub fn pack(&self) -> &SignalPack {
        &self.pack
    }

    /// Identifies everything the results depend on — model files, adapter, head, pack contents,
    /// fit settings, threshold and margin — so a resumed batch job can tell that they changed.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Labels of the fitted classifier that decide nothing here (neither a signal of the pack
    /// nor `positive` / `negative`), e.g. `none` or a misspelt signal id.
    pub fn unused_classifier_labels(&self) -> &[String] {
        self.classifier.as_ref().map_or(&[], |c| &c.unrouted)
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Signals in one note.
    pub fn extract(&self, note: &Note) -> Result<NoteSignals> {
        Ok(self.extract_batch(std::slice::from_ref(note))?.remove(0))
    }

    /// Signals in many notes; all clauses are embedded together in length-sorted batches.
    /// `result[i]` belongs to `notes[i]`.
    pub fn extract_batch(&self, notes: &[Note]) -> Result<Vec<NoteSignals>> {
        let segmented: Vec<Vec<Segment>> = notes
            .iter()
            .map(|n| self.segmenter.segment(&n.text))
            .collect();
        let clauses: Vec<&str> = segmented
            .iter()
            .flatten()
            .map(|s| s.text.as_str())
            .collect();
        let (layers, mut fitted) = self.embed_clauses(&clauses)?;
        let mut offset = 0;
        let neighbours: Vec<Vec<usize>> = segmented
            .iter()
            .flat_map(|segments| {
                let around = neighbours_in_text(offset, segments.len());
                offset += segments.len();
                around
            })
            .collect();
        let mut vectors = self
            .features
            .assemble(layers, &clauses, &neighbours)
            .into_iter();
        let n_signals = self.pack.signals.len();
        let mut out = Vec::with_capacity(notes.len());
        for (note, segments) in notes.iter().zip(segmented) {
            let mut hits = Vec::new();
            let mut clause_scores = Vec::with_capacity(segments.len());
            let mut sentiment_sum = 0f32;
            let mut sentiment_count = 0usize;
            for segment in &segments {
                let mut probabilities = self
                    .heads
                    .probabilities(&vectors.next().expect("one vector per clause"));
                if let (Some(fitted), Some(row)) = (&self.classifier, fitted.next()) {
                    for &(label, route) in &fitted.routes {
                        let slot = match route {
                            LabelRoute::Signal(s) => s,
                            LabelRoute::Positive => n_signals,
                            LabelRoute::Negative => n_signals + 1,
                        };
                        probabilities[slot] = row[label];
                    }
                }
                clause_scores.push(ClauseScores {
                    char_start: segment.char_start,
                    char_end: segment.char_end,
                    signals: probabilities[..n_signals].to_vec(),
                });
                let best = probabilities[..n_signals]
                    .iter()
                    .copied()
                    .fold(0f32, f32::max);
                if segment.speaker != Speaker::Rep {
                    sentiment_sum += probabilities[n_signals] - probabilities[n_signals + 1];
                    sentiment_count += 1;
                }
                for (signal, &p) in self.pack.signals.iter().zip(&probabilities[..n_signals]) {
                    if p < signal.threshold.unwrap_or(self.threshold) || p < best - self.margin {
                        continue;
                    }
                    if signal.speaker == SpeakerScope::Customer && segment.speaker == Speaker::Rep {
                        continue;
                    }
                    let mut attributes: BTreeMap<String, String> = signal
                        .attributes
                        .iter()
                        .filter_map(|a| a.extract(&segment.text).map(|v| (a.name().to_string(), v)))
                        .collect();
                    if let Some(anchor) = note.date {
                        if let Some(when) = self.dates.resolve(&segment.text, anchor) {
                            attributes.insert("when".into(), when.date.to_string());
                            attributes.insert("when_text".into(), when.text);
                        }
                    }
                    hits.push(Hit {
                        note_id: note.id.clone(),
                        account_id: note.account_id.clone(),
                        signal: signal.id.clone(),
                        kind: signal.kind,
                        probability: p,
                        evidence: segment.text.clone(),
                        char_start: segment.char_start,
                        char_end: segment.char_end,
                        byte_start: segment.byte_start,
                        byte_end: segment.byte_end,
                        speaker: segment.speaker,
                        attributes,
                    });
                }
            }
            out.push(NoteSignals {
                note_id: note.id.clone(),
                hits,
                sentiment: if sentiment_count == 0 {
                    0.0
                } else {
                    sentiment_sum / sentiment_count as f32
                },
                segments: segments.len(),
                clause_scores,
            });
        }
        Ok(out)
    }

    /// Clause embeddings at every depth the heads use (`result[d][i]`) and, with a fitted
    /// classifier, its probabilities per clause: both from one pass of the (adapted) encoder.
    fn embed_clauses(&self, clauses: &[&str]) -> Result<(Vec<Vec<Vec<f32>>>, ClassifierRows)> {
        let Some(fitted) = &self.classifier else {
            return Ok((
                self.features.embed(&self.embedder, clauses)?,
                Vec::new().into_iter(),
            ));
        };
        let mut layers = self.features.embed(&fitted.unnormalised, clauses)?;
        let probabilities = fitted.classifier.probabilities_of_pooled(&layers[0])?;
        if self.embedder.normalizes() {
            layers
                .iter_mut()
                .flatten()
                .for_each(|v| augur_core::embed::l2_normalize(v));
        }
        Ok((layers, probabilities.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_stay_inside_their_text() {
        let around: Vec<Vec<usize>> = neighbours_in_text(5, 3).collect();
        assert_eq!(around, vec![vec![6], vec![5, 7], vec![6]]);
        let alone: Vec<Vec<usize>> = neighbours_in_text(9, 1).collect();
        assert_eq!(alone, vec![Vec::<usize>::new()]);
    }
}
