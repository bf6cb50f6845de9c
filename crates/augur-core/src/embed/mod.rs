//! Text in, vectors out: prefix → tokenize (in parallel) → split into windows → length-bucketed
//! batches through the encoder (unpadded on the CPU) → pool → merge windows → L2-normalise. Output order is input order.

pub mod pool;
pub mod window;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::encoder::{BertEncoder, RaggedEncoder};
use crate::error::{AugurError, CandleContext, Result};
use crate::model::{InputKind, ModelCardSettings, ModelFiles, ModelLocator, PoolingMode};

pub use pool::{cosine, l2_normalize, ClsPooling, MeanPooling, Pooler};
pub use window::{split_windows, LongTextPolicy, TokenWindow};

/// Configures and loads an [`Embedder`]; start with [`Embedder::builder`].
#[derive(Debug, Clone)]
pub struct EmbedderBuilder {
    model: String,
    locator: ModelLocator,
    device: Device,
    pooling: Option<PoolingMode>,
    normalize: bool,
    long_text: LongTextPolicy,
    max_tokens: Option<usize>,
    batch_size: usize,
    int8: bool,
}

impl EmbedderBuilder {
    /// Where to look for the model (default: [`ModelLocator::from_env`]).
    pub fn with_locator(mut self, locator: ModelLocator) -> Self {
        self.locator = locator;
        self
    }

    /// Device to run on (default: CPU).
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Overrides the pooling the model card asks for.
    pub fn with_pooling(mut self, pooling: PoolingMode) -> Self {
        self.pooling = Some(pooling);
        self
    }

    /// Whether output vectors are scaled to unit length (default: true).
    pub fn with_normalize(mut self, normalize: bool) -> Self {
        self.normalize = normalize;
        self
    }

    /// What happens to texts longer than one window (default: overlapping chunks of 64 tokens).
    pub fn with_long_text(mut self, policy: LongTextPolicy) -> Self {
        self.long_text = policy;
        self
    }

    /// Tokens per window, special tokens included (default: the model card's `max_seq_length`,
    /// else `max_position_embeddings`).
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Runs the dense layers with int8 weights and quantised activations on the CPU (see
    /// [`RaggedEncoder::quantized`]); default: f32.
    pub fn with_int8(mut self, int8: bool) -> Self {
        self.int8 = int8;
        self
    }

    /// Windows per encoder call (default: 32).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Resolves the model, checks tokenizer against weights, and loads both.
    pub fn build(self) -> Result<Embedder> {
        let files = self.locator.resolve(&self.model)?;
        let encoder = BertEncoder::from_files(&files, &self.device)?;
        let tokenizer = load_tokenizer(&files, encoder.config().vocab_size)?;
        let card = ModelCardSettings::from_dir(&files.dir)?;
        let model_max = encoder.config().max_position_embeddings;
        let max_tokens = self
            .max_tokens
            .or(card.max_seq_length)
            .unwrap_or(model_max)
            .min(model_max);
        Ok(Embedder {
            pooling: self.pooling.unwrap_or(card.pooling),
            normalize: self.normalize,
            long_text: self.long_text,
            max_tokens,
            batch_size: self.batch_size,
            ragged: ragged_for(&encoder, self.int8)?,
            int8: self.int8,
            adapters: Vec::new(),
            encoder,
            tokenizer: Arc::new(tokenizer),
            card,
            files,
        })
    }
}

/// Loads `tokenizer.json` with its own truncation and padding switched off (windows and padding
/// are Augur's job) and checks that every id it can produce has an embedding row.
fn load_tokenizer(files: &ModelFiles, model_vocab: usize) -> Result<Tokenizer> {
    let mut tokenizer =
        Tokenizer::from_file(&files.tokenizer).map_err(|e| AugurError::Tokenizer {
            context: files.tokenizer.display().to_string(),
            message: e.to_string(),
        })?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| AugurError::Tokenizer {
            context: files.tokenizer.display().to_string(),
            message: e.to_string(),
        })?;
    tokenizer.with_padding(None);
    let tokenizer_vocab = tokenizer.get_vocab_size(true);
    if tokenizer_vocab > model_vocab {
        return Err(AugurError::VocabMismatch {
            file: files.tokenizer.clone(),
            tokenizer_vocab,
            model_vocab,
        });
    }
    Ok(tokenizer)
}

/// A loaded model that turns texts into vectors. Cheap to share across threads (`&self` only);
/// cloning shares the weights.
#[derive(Clone)]
pub struct Embedder {
    encoder: BertEncoder,
    /// The unpadded CPU inference path (absent when the weights live on another device).
    ragged: Option<Arc<RaggedEncoder>>,
    tokenizer: Arc<Tokenizer>,
    card: ModelCardSettings,
    files: ModelFiles,
    pooling: PoolingMode,
    normalize: bool,
    long_text: LongTextPolicy,
    max_tokens: usize,
    batch_size: usize,
    /// Whether the CPU path runs int8 dense layers.
    int8: bool,
    /// Fingerprints of the adapters merged into the weights, in order.
    adapters: Vec<u64>,
}

impl Embedder {
    /// Starts configuring an embedder for `model` (a directory, short name or repo id).
    pub fn builder(model: impl Into<String>) -> EmbedderBuilder {
        EmbedderBuilder {
            model: model.into(),
            locator: ModelLocator::from_env(),
            device: Device::Cpu,
            pooling: None,
            normalize: true,
            long_text: LongTextPolicy::default(),
            max_tokens: None,
            batch_size: 32,
            int8: false,
        }
    }

    /// A copy of this embedder with a LoRA adapter merged in, so several adapters can be held and
    /// switched without reloading the model. The copy shares the tokenizer, the embedding tables
    /// and the layers the adapter does not touch ([`Embedder::layers_shared_with`]); each adapted
    /// layer is its own: about 7 MB in f32 for multilingual-e5-small on the CPU path, plus the
    /// merged copies of its targeted linears (up to 7 MB more when all six are targeted).
    pub fn with_adapter(&self, adapter: &crate::encoder::LoraAdapter) -> Result<Self> {
        adapter.check_base(&self.files.model_id())?;
        self.with_adapter_unchecked(adapter)
    }

    /// Like [`Embedder::with_adapter`] without the base-model name check (for adapters being trained).
    pub(crate) fn with_adapter_unchecked(
        &self,
        adapter: &crate::encoder::LoraAdapter,
    ) -> Result<Self> {
        let mut adapted = self.clone();
        adapted.encoder = self.encoder.with_adapter(adapter)?;
        adapted.adapters.push(adapter.fingerprint()?);
        adapted.ragged = match &self.ragged {
            // Layers the adapter leaves alone are shared with this embedder.
            Some(ragged) => {
                let changed = adapter.layers();
                Some(Arc::new(
                    ragged.with_changed_layers(&adapted.encoder, |layer| {
                        changed.as_ref().is_none_or(|c| c.contains(&layer))
                    })?,
                ))
            }
            None => None,
        };
        Ok(adapted)
    }

    /// The same embedder (sharing the weights) with L2 normalisation of the output on or off.
    pub fn with_normalization(&self, normalize: bool) -> Self {
        Self {
            normalize,
            ..self.clone()
        }
    }

    /// Fingerprints of the adapters merged into this embedder's weights (empty for the base
    /// model): part of any cache key derived from its embeddings.
    pub fn adapter_fingerprints(&self) -> &[u64] {
        &self.adapters
    }

    /// Whether output vectors are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The unpadded CPU encoder (int8 when built so); `None` off the CPU.
    pub(crate) fn ragged(&self) -> Option<&RaggedEncoder> {
        self.ragged.as_deref()
    }

    /// Width of the output vectors.
    pub fn dim(&self) -> usize {
        self.encoder.config().hidden_size
    }

    /// The files the model was loaded from.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    /// The encoder.
    pub fn encoder(&self) -> &BertEncoder {
        &self.encoder
    }

    /// Layers of the fast CPU path this embedder shares with `other` (the same memory, not a
    /// copy): an adapted copy shares every layer its adapter leaves alone with its base.
    pub fn layers_shared_with(&self, other: &Embedder) -> Vec<usize> {
        match (&self.ragged, &other.ragged) {
            (Some(mine), Some(theirs)) => mine.shared_layers(theirs),
            _ => Vec::new(),
        }
    }

    /// The tokenizer (truncation and padding off).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The settings read from the model card files.
    pub fn card(&self) -> &ModelCardSettings {
        &self.card
    }

    /// Pooling in use.
    pub fn pooling(&self) -> PoolingMode {
        self.pooling
    }

    /// Long-text policy in use.
    pub fn long_text(&self) -> LongTextPolicy {
        self.long_text
    }

    /// Whether the dense layers run in int8 (see [`EmbedderBuilder::with_int8`]).
    pub fn int8(&self) -> bool {
        self.int8
    }

    /// Tokens per window.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenizes `texts` (with the model's prefix for `kind`) in parallel and splits each into
    /// windows. `result[i]` holds the windows of `texts[i]`.
    pub fn windows<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        kind: InputKind,
    ) -> Result<Vec<Vec<TokenWindow>>> {
        let prefix = self.card.prefix(kind);
        texts
            .par_iter()
            .enumerate()
            .map(|(i, text)| {
                let input = format!("{prefix}{}", text.as_ref());
                let encoding =
                    self.tokenizer
                        .encode(input, true)
                        .map_err(|e| AugurError::Tokenizer {
                            context: format!("encoding text #{i}"),
                            message: e.to_string(),
                        })?;
                split_windows(
                    i,
                    encoding.get_ids(),
                    encoding.get_special_tokens_mask(),
                    self.max_tokens,
                    self.long_text,
                )
            })
            .collect()
    }

    /// Embeds `texts` as `kind`; `result[i]` is the vector of `texts[i]`.
    pub fn embed<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        kind: InputKind,
    ) -> Result<Vec<Vec<f32>>> {
        let last = self.layer_count();
        Ok(self.embed_at_depths(texts, kind, &[last])?.remove(0))
    }

    /// Number of transformer layers.
    pub fn layer_count(&self) -> usize {
        self.encoder.config().num_hidden_layers
    }

    /// Embeds `texts` as `kind` from the states after each of `depths` layers (the layer count
    /// gives [`Embedder::embed`]'s vectors; a middle layer keeps more of the wording), all from one
    /// pass: `result[d][i]` is the vector of `texts[i]` at `depths[d]`, pooled, long texts
    /// averaged over their windows, and normalised like [`Embedder::embed`]'s.
    pub fn embed_at_depths<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        kind: InputKind,
        depths: &[usize],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let windows: Vec<TokenWindow> = self.windows(texts, kind)?.into_iter().flatten().collect();
        let dim = self.dim();
        let mut weights = vec![0f32; texts.len()];
        for window in &windows {
            weights[window.text_index] += window.ids.len() as f32;
        }
        let per_depth = self.encode_windows_at(&windows, depths)?;
        Ok(per_depth
            .into_iter()
            .map(|window_vectors| {
                let mut sums = vec![vec![0f32; dim]; texts.len()];
                for (window, vector) in windows.iter().zip(&window_vectors) {
                    let weight = window.ids.len() as f32;
                    for (s, v) in sums[window.text_index].iter_mut().zip(vector) {
                        *s += weight * v;
                    }
                }
                for (sum, weight) in sums.iter_mut().zip(&weights) {
                    sum.iter_mut()
                        .for_each(|x| *x /= weight.max(f32::MIN_POSITIVE));
                    if self.normalize {
                        l2_normalize(sum);
                    }
                }
                sums
            })
            .collect())
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str, kind: InputKind) -> Result<Vec<f32>> {
        Ok(self.embed(&[text], kind)?.remove(0))
    }

    /// Pools each window (un-normalised). Windows are sorted by length and run in buckets of
    /// `batch_size` (unpadded on the CPU; elsewhere each bucket is padded only to its own longest
    /// window); results come back in input order.
    pub fn encode_windows(&self, windows: &[TokenWindow]) -> Result<Vec<Vec<f32>>> {
        let last = self.layer_count();
        Ok(self.encode_windows_at(windows, &[last])?.remove(0))
    }

    /// [`Embedder::encode_windows`] at each of `depths` layers: `result[d][w]`. A depth past
    /// the last layer is refused.
    pub fn encode_windows_at(
        &self,
        windows: &[TokenWindow],
        depths: &[usize],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        if let Some(depth) = depths.iter().find(|&&d| d > self.layer_count()) {
            return Err(AugurError::InvalidArgument(format!(
                "depth {depth} asked of a model with {} layers",
                self.layer_count()
            )));
        }
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].ids.len());
        let mut out = vec![vec![Vec::new(); windows.len()]; depths.len()];
        for bucket in order.chunks(self.batch_size) {
            let rows: Vec<&[u32]> = bucket.iter().map(|&i| windows[i].ids.as_slice()).collect();
            for (depth_out, pooled) in out.iter_mut().zip(self.encode_batch(&rows, depths)?) {
                for (&i, vector) in bucket.iter().zip(pooled) {
                    depth_out[i] = vector;
                }
            }
        }
        Ok(out)
    }

    /// Runs one batch through the encoder and pooler, pooling at each of `depths`: unpadded on
    /// the CPU, padded elsewhere. `result[d][row]`.
    fn encode_batch(&self, rows: &[&[u32]], depths: &[usize]) -> Result<Vec<Vec<Vec<f32>>>> {
        let Some(ragged) = &self.ragged else {
            return self.encode_padded(rows, depths);
        };
        let pooler = pool::pooler_for(self.pooling);
        let mut ascending: Vec<usize> = (0..depths.len()).collect();
        ascending.sort_by_key(|&d| depths[d]);
        let mut out = vec![Vec::new(); depths.len()];
        let mut states = ragged.states_before_layer(rows, 0)?;
        let mut reached = 0;
        for d in ascending {
            states = ragged.run_layers(states, reached..depths[d]);
            reached = depths[d];
            out[d] = (0..states.len())
                .map(|i| pooler.pool_tokens(states.sequence(i), states.hidden))
                .collect();
        }
        Ok(out)
    }

    /// Runs one padded batch through the encoder and pooler.
    fn encode_padded(&self, rows: &[&[u32]], depths: &[usize]) -> Result<Vec<Vec<Vec<f32>>>> {
        let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let pad = self.encoder.config().pad_token_id;
        let mut ids = Vec::with_capacity(rows.len() * seq);
        let mut mask = Vec::with_capacity(rows.len() * seq);
        for row in rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad, seq - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, seq - row.len()));
        }
        let device = self.encoder.device();
        let ids = Tensor::from_vec(ids, (rows.len(), seq), device).context("building input_ids")?;
        let mask =
            Tensor::from_vec(mask, (rows.len(), seq), device).context("building attention_mask")?;
        let pooler = pool::pooler_for(self.pooling);
        self.encoder
            .forward_to_depths(&ids, &mask, depths)?
            .iter()
            .map(|hidden| {
                let pooled = pooler.pool(hidden, &mask)?;
                pooled.to_vec2::<f32>().context("reading pooled vectors")
            })
            .collect()
    }
}

/// The unpadded inference path for an encoder whose weights are on the CPU (int8 on request).
fn ragged_for(encoder: &BertEncoder, int8: bool) -> Result<Option<Arc<RaggedEncoder>>> {
    if !encoder.device().is_cpu() {
        return Ok(None);
    }
    let ragged = RaggedEncoder::new(encoder)?;
    Ok(Some(Arc::new(if int8 {
        ragged.quantized()
    } else {
        ragged
    })))
}
