//! The inference path on CPU: a batch is a list of sequences of different lengths, laid end to
//! end (no padding, so no work is spent on it), run through the same BERT arithmetic as
//! [`BertEncoder::forward`] with fused query/key/value projections and the kernels of
//! [`kernels`](super::kernels). Training runs the frozen layers below the adapted ones here, once,
//! and the adapted layers on [`BertEncoder`] (candle autograd).

use std::ops::Range;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::encoder::bert::BertEncoder;
use crate::encoder::int8::Int8Dense;
use crate::encoder::kernels;
use crate::encoder::linear::LoraLinear;
use crate::error::{AugurError, CandleContext, Result};
use crate::model::config::Activation;

/// A dense layer's weight `[out, in]` (row-major) and bias `[out]`, as plain memory, and
/// optionally its int8 form (used instead when present).
#[derive(Debug, Clone)]
struct DenseWeights {
    weight: Vec<f32>,
    bias: Vec<f32>,
    int8: Option<Int8Dense>,
}

impl DenseWeights {
    /// Stacks the output rows of `linears` (each with its adapter already merged) into one layer.
    fn stacked(linears: &[&LoraLinear]) -> Result<Self> {
        let mut weight = Vec::new();
        let mut bias = Vec::new();
        for linear in linears {
            let merged = linear.merged()?;
            weight.extend(flat_f32(merged.weight(), "linear weight")?);
            match merged.bias() {
                Some(b) => bias.extend(flat_f32(b, "linear bias")?),
                None => {
                    let out = merged.weight().dim(0).context("linear weight")?;
                    bias.extend(std::iter::repeat_n(0.0, out));
                }
            }
        }
        Ok(Self {
            weight,
            bias,
            int8: None,
        })
    }

    /// `out = x·Wᵀ + b` for the rows of `x`.
    fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        if let Some(int8) = &self.int8 {
            return int8.apply(x, out);
        }
        let rows = x.len() / (self.weight.len() / self.bias.len());
        out.resize(rows * self.bias.len(), 0.0);
        kernels::linear(x, &self.weight, &self.bias, out);
    }
}

/// A layer norm's scale and shift.
#[derive(Debug, Clone)]
struct NormWeights {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl NormWeights {
    fn new(norm: &candle_nn::LayerNorm, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: flat_f32(norm.weight(), "layer norm weight")?,
            beta: match norm.bias() {
                Some(b) => flat_f32(b, "layer norm bias")?,
                None => vec![0.0; norm.weight().elem_count()],
            },
            eps: eps as f32,
        })
    }
}

/// One transformer layer with query, key and value fused into a single projection.
#[derive(Debug, Clone)]
struct RaggedLayer {
    query_key_value: DenseWeights,
    attention_output: DenseWeights,
    attention_norm: NormWeights,
    intermediate: DenseWeights,
    output: DenseWeights,
    output_norm: NormWeights,
}

impl RaggedLayer {
    /// Layer `index` of `encoder` in the fused layout, int8 when `int8`.
    fn of(encoder: &BertEncoder, index: usize, int8: bool) -> Result<Self> {
        let layer = &encoder.layers()[index];
        let eps = encoder.config().layer_norm_eps;
        let [query, key, value, attention_output, intermediate, output] = layer.linears();
        let (attention_norm, output_norm) = layer.norms();
        let mut fused = Self {
            query_key_value: DenseWeights::stacked(&[query, key, value])?,
            attention_output: DenseWeights::stacked(&[attention_output])?,
            attention_norm: NormWeights::new(attention_norm, eps)?,
            intermediate: DenseWeights::stacked(&[intermediate])?,
            output: DenseWeights::stacked(&[output])?,
            output_norm: NormWeights::new(output_norm, eps)?,
        };
        if int8 {
            fused.quantize();
        }
        Ok(fused)
    }

    /// Switches the dense layers to int8 weights (the f32 weights are dropped).
    fn quantize(&mut self) {
        for dense in [
            &mut self.query_key_value,
            &mut self.attention_output,
            &mut self.intermediate,
            &mut self.output,
        ] {
            dense.int8 = Some(Int8Dense::new(&dense.weight, &dense.bias));
            dense.weight = Vec::new();
        }
    }
}

/// Reusable buffers of one forward pass.
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
}

/// Hidden states of a ragged batch: the rows of sequence `i` are
/// `states[offsets[i]·hidden .. offsets[i+1]·hidden]`.
#[derive(Debug, Clone)]
pub struct RaggedStates {
    /// All token states, row-major `[total_tokens, hidden]`.
    pub states: Vec<f32>,
    /// Token offsets of each sequence (`len = sequences + 1`).
    pub offsets: Vec<usize>,
    /// Width of a state.
    pub hidden: usize,
}

impl RaggedStates {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token states of sequence `i`, row-major `[tokens, hidden]`.
    pub fn sequence(&self, i: usize) -> &[f32] {
        &self.states[self.offsets[i] * self.hidden..self.offsets[i + 1] * self.hidden]
    }
}

/// The inference-only CPU encoder over ragged batches, built from a [`BertEncoder`] (adapters
/// merged). Results equal [`BertEncoder::forward`] on the unpadded positions up to float rounding.
#[derive(Debug, Clone)]
pub struct RaggedEncoder {
    word_embeddings: Tensor,
    position_embeddings: Vec<f32>,
    token_type_embedding: Vec<f32>,
    embedding_norm: NormWeights,
    /// Shared between an encoder and its adapted copies where an adapter leaves a layer as is.
    layers: Vec<Arc<RaggedLayer>>,
    hidden: usize,
    heads: usize,
    vocab_size: usize,
    max_positions: usize,
    activation: Activation,
}

impl RaggedEncoder {
    /// Copies the weights of `encoder` (on the CPU) into the fused layout.
    pub fn new(encoder: &BertEncoder) -> Result<Self> {
        let config = encoder.config();
        let eps = config.layer_norm_eps;
        let (word, position, token_type, norm) = encoder.embedding_tensors();
        let layers = (0..encoder.layers().len())
            .map(|index| RaggedLayer::of(encoder, index, false).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings: word
                .to_dtype(DType::F32)
                .context("word embeddings")?
                .contiguous()
                .context("word embeddings")?,
            position_embeddings: flat_f32(position, "position embeddings")?,
            token_type_embedding: flat_f32(
                &token_type.get(0).context("token type embeddings")?,
                "token type embeddings",
            )?,
            embedding_norm: NormWeights::new(norm, eps)?,
            layers,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
            activation: encoder.activation(),
        })
    }

    /// A copy for `encoder` (this encoder's model with an adapter merged into the layers that
    /// `changed` names): those layers are rebuilt from `encoder` (int8 when this encoder is), the
    /// others and the embeddings are shared with this one.
    pub fn with_changed_layers(
        &self,
        encoder: &BertEncoder,
        changed: impl Fn(usize) -> bool,
    ) -> Result<Self> {
        let int8 = self.is_quantized();
        let mut adapted = self.clone();
        for (index, layer) in adapted.layers.iter_mut().enumerate() {
            if changed(index) {
                *layer = Arc::new(RaggedLayer::of(encoder, index, int8)?);
            }
        }
        Ok(adapted)
    }

    /// Indices of the layers held in the same memory as `other`'s.
    pub fn shared_layers(&self, other: &RaggedEncoder) -> Vec<usize> {
        self.layers
            .iter()
            .zip(&other.layers)
            .enumerate()
            .filter(|(_, (mine, theirs))| Arc::ptr_eq(mine, theirs))
            .map(|(index, _)| index)
            .collect()
    }

    /// True when the dense layers run in int8 ([`RaggedEncoder::quantized`]).
    fn is_quantized(&self) -> bool {
        self.layers
            .first()
            .is_some_and(|layer| layer.query_key_value.int8.is_some())
    }

    /// A copy whose dense layers run with int8 weights and dynamically quantised activations
    /// (per-row u8): about a quarter of the weight memory and, on CPUs with AVX-512 VNNI, faster;
    /// states differ from f32 by quantisation error (see `benches/README.md` for measured cosines).
    pub fn quantized(&self) -> Self {
        let mut quantized = self.clone();
        for layer in &mut quantized.layers {
            Arc::make_mut(layer).quantize();
        }
        quantized
    }

    /// Runs the encoder over `sequences` (token ids, each with its special tokens) and returns
    /// the last hidden state of every token.
    pub fn forward(&self, sequences: &[&[u32]]) -> Result<RaggedStates> {
        self.states_before_layer(sequences, self.layers.len())
    }

    /// The token states that enter layer `layer` (after the embeddings and layers `0..layer`);
    /// `layer` = the number of layers gives the last hidden state. Training caches these for the
    /// frozen layers below the adapted ones.
    pub fn states_before_layer(&self, sequences: &[&[u32]], layer: usize) -> Result<RaggedStates> {
        let mut offsets = Vec::with_capacity(sequences.len() + 1);
        offsets.push(0);
        for (i, ids) in sequences.iter().enumerate() {
            if ids.len() > self.max_positions {
                return Err(AugurError::InvalidArgument(format!(
                    "sequence #{i} has {} tokens; the model takes at most {}",
                    ids.len(),
                    self.max_positions
                )));
            }
            offsets.push(offsets[i] + ids.len());
        }
        let states = RaggedStates {
            states: self.embed(sequences)?,
            offsets,
            hidden: self.hidden,
        };
        Ok(self.run_layers(states, 0..layer))
    }

    /// Runs layers `layers` (clamped to the model's) on `states`, the states entering
    /// `layers.start`: with [`RaggedEncoder::states_before_layer`], a forward in two parts.
    pub fn run_layers(&self, mut states: RaggedStates, layers: Range<usize>) -> RaggedStates {
        let count = self.layers.len();
        let mut scratch = Scratch::default();
        let end = layers.end.min(count);
        for layer in &self.layers[layers.start.min(end)..end] {
            self.layer_forward(layer, &mut states.states, &states.offsets, &mut scratch);
        }
        states
    }

    /// Width of a token state.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Number of transformer layers.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Word + position + token-type embeddings, layer-normalised, for every token.
    fn embed(&self, sequences: &[&[u32]]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let tokens: usize = sequences.iter().map(|s| s.len()).sum();
        let mut out = Vec::with_capacity(tokens * h);
        let (storage, layout) = self.word_embeddings.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(AugurError::InvalidArgument(
                "the ragged encoder runs on the CPU only".into(),
            ));
        };
        let table = cpu.as_slice::<f32>().context("word embeddings")?;
        let table = &table[layout.start_offset()..];
        for (s, ids) in sequences.iter().enumerate() {
            for (position, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab_size {
                    return Err(AugurError::InvalidArgument(format!(
                        "sequence #{s}: token id {id} is outside the vocabulary of {}",
                        self.vocab_size
                    )));
                }
                let word = &table[id * h..][..h];
                let pos = &self.position_embeddings[position * h..][..h];
                out.extend(
                    word.iter()
                        .zip(pos)
                        .zip(&self.token_type_embedding)
                        .map(|((w, p), t)| w + p + t),
                );
            }
        }
        drop(storage);
        let norm = &self.embedding_norm;
        kernels::layer_norm(&mut out, &norm.gamma, &norm.beta, norm.eps);
        Ok(out)
    }

    fn layer_forward(
        &self,
        layer: &RaggedLayer,
        hidden: &mut Vec<f32>,
        offsets: &[usize],
        scratch: &mut Scratch,
    ) {
        let h = self.hidden;
        layer.query_key_value.apply(hidden, &mut scratch.qkv);
        scratch.context.resize(hidden.len(), 0.0);
        kernels::attention(
            &scratch.qkv,
            &mut scratch.context,
            offsets,
            self.heads,
            h / self.heads,
        );
        layer
            .attention_output
            .apply(&scratch.context, &mut scratch.attended);
        let norm = &layer.attention_norm;
        kernels::add_layer_norm(
            &mut scratch.attended,
            hidden,
            &norm.gamma,
            &norm.beta,
            norm.eps,
        );
        layer
            .intermediate
            .apply(&scratch.attended, &mut scratch.inner);
        kernels::activate(&mut scratch.inner, self.activation);
        layer.output.apply(&scratch.inner, hidden);
        let norm = &layer.output_norm;
        kernels::add_layer_norm(hidden, &scratch.attended, &norm.gamma, &norm.beta, norm.eps);
    }
}

/// The values of a CPU tensor, flattened, as `f32`.
fn flat_f32(tensor: &Tensor, what: &str) -> Result<Vec<f32>> {
    tensor
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .with_context(|| format!("reading {what}"))
}
