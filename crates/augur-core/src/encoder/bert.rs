//! A BERT encoder written against Hugging Face weight names: every tensor is loaded through a
//! `VarBuilder` prefix path (`embeddings.…`, `encoder.layer.N.attention.self.query.weight`, …), and
//! every projection is a [`LoraLinear`] so adapters attach without renaming anything.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::encoder::adapter::LoraAdapter;
use crate::encoder::linear::LoraLinear;
use crate::error::{AugurError, CandleContext, Result};
use crate::model::config::{Activation, EncoderConfig};
use crate::model::weights::check_weights;
use crate::model::ModelFiles;

/// Word, position and token-type embeddings followed by a layer norm.
#[derive(Debug, Clone)]
struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
}

/// One transformer layer: self-attention and feed-forward, each with a residual and a layer norm.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    /// `attention.self.query`.
    pub query: LoraLinear,
    /// `attention.self.key`.
    pub key: LoraLinear,
    /// `attention.self.value`.
    pub value: LoraLinear,
    /// `attention.output.dense`.
    pub attention_output: LoraLinear,
    attention_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: LoraLinear,
    /// `output.dense`.
    pub output: LoraLinear,
    output_norm: LayerNorm,
}

/// A BERT-family encoder (BERT, MiniLM, XLM-R/e5) producing the last hidden state.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    config: EncoderConfig,
    activation: Activation,
    device: Device,
}

fn load_norm(vb: &VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    let prefix = vb.prefix();
    let weight = vb
        .get(size, "weight")
        .with_context(|| format!("loading {prefix}.weight"))?;
    let bias = vb
        .get(size, "bias")
        .with_context(|| format!("loading {prefix}.bias"))?;
    Ok(LayerNorm::new(weight, bias, eps))
}

impl EncoderLayer {
    /// Hugging Face names of the layer's linear modules, in the order of [`EncoderLayer::linears`].
    pub const LINEAR_MODULES: [&'static str; 6] = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];

    /// The linear layers, in the order of [`EncoderLayer::LINEAR_MODULES`].
    pub fn linears(&self) -> [&LoraLinear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
    }

    fn linears_mut(&mut self) -> [&mut LoraLinear; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_output,
            &mut self.intermediate,
            &mut self.output,
        ]
    }

    /// The linear layer called `module` (`attention.self.query`, ..., `output.dense`).
    pub fn linear(&self, module: &str) -> Option<&LoraLinear> {
        let index = Self::LINEAR_MODULES.iter().position(|m| *m == module)?;
        Some(self.linears()[index])
    }

    /// The layer norms after attention and after the feed-forward block.
    pub(crate) fn norms(&self) -> (&LayerNorm, &LayerNorm) {
        (&self.attention_norm, &self.output_norm)
    }

    fn linear_mut(&mut self, module: &str) -> Option<&mut LoraLinear> {
        let index = Self::LINEAR_MODULES.iter().position(|m| *m == module)?;
        self.linears_mut().into_iter().nth(index)
    }
}

impl BertEncoder {
    /// Loads the encoder from resolved model files after checking the weights against the config.
    pub fn from_files(files: &ModelFiles, device: &Device) -> Result<Self> {
        let config = EncoderConfig::from_file(&files.config)?;
        let prefix = check_weights(&files.weights, &config)?;
        Self::from_safetensors(&files.weights, &files.config, config, &prefix, device)
    }

    fn from_safetensors(
        weights: &Path,
        config_path: &Path,
        config: EncoderConfig,
        prefix: &str,
        device: &Device,
    ) -> Result<Self> {
        // SAFETY: the file is memory-mapped read-only; Augur never writes model files while loading.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device) }
            .with_context(|| format!("opening {}", weights.display()))?;
        let vb = match prefix.trim_end_matches('.') {
            "" => vb,
            p => vb.pp(p),
        };
        let activation = config.activation(config_path)?;
        Self::load(vb, config, activation)
    }

    /// Loads from a `VarBuilder` rooted where `embeddings.*` and `encoder.*` live.
    pub fn load(vb: VarBuilder, config: EncoderConfig, activation: Activation) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            word: e
                .get((config.vocab_size, h), "word_embeddings.weight")
                .context("loading embeddings.word_embeddings.weight")?,
            position: e
                .get(
                    (config.max_position_embeddings, h),
                    "position_embeddings.weight",
                )
                .context("loading embeddings.position_embeddings.weight")?,
            token_type: e
                .get((config.type_vocab_size, h), "token_type_embeddings.weight")
                .context("loading embeddings.token_type_embeddings.weight")?,
            norm: load_norm(&e.pp("LayerNorm"), h, eps)?,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let i_dim = config.intermediate_size;
                Ok(EncoderLayer {
                    query: LoraLinear::load(l.pp("attention.self.query"), h, h)?,
                    key: LoraLinear::load(l.pp("attention.self.key"), h, h)?,
                    value: LoraLinear::load(l.pp("attention.self.value"), h, h)?,
                    attention_output: LoraLinear::load(l.pp("attention.output.dense"), h, h)?,
                    attention_norm: load_norm(&l.pp("attention.output.LayerNorm"), h, eps)?,
                    intermediate: LoraLinear::load(l.pp("intermediate.dense"), h, i_dim)?,
                    output: LoraLinear::load(l.pp("output.dense"), i_dim, h)?,
                    output_norm: load_norm(&l.pp("output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            config,
            activation,
            device: vb.device().clone(),
        })
    }

    /// The architecture this encoder was loaded with.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The feed-forward activation.
    pub(crate) fn activation(&self) -> Activation {
        self.activation
    }

    /// Word, position and token-type embedding tables and the embedding layer norm.
    pub(crate) fn embedding_tensors(&self) -> (&Tensor, &Tensor, &Tensor, &LayerNorm) {
        let e = &self.embeddings;
        (&e.word, &e.position, &e.token_type, &e.norm)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A copy with `adapter` merged into the targeted layers (`W + scale·B·A`), sharing every
    /// other weight with `self`. Refuses adapters whose modules or shapes do not fit.
    pub fn with_adapter(&self, adapter: &LoraAdapter) -> Result<Self> {
        let mut merged = self.clone();
        for (module, pair) in &adapter.pairs {
            let linear = merged
                .linear_mut(module)
                .ok_or_else(|| AugurError::Adapter {
                    path: "adapter_model.safetensors".into(),
                    message: format!(
                        "adapter targets `{module}`, which this {}-layer BERT does not have",
                        self.config.num_hidden_layers
                    ),
                })?;
            let (out_dim, in_dim) = linear.weight().dims2().context("linear weight")?;
            let (a_shape, b_shape) = (pair.a.dims().to_vec(), pair.b.dims().to_vec());
            if a_shape != [adapter.config.r, in_dim] || b_shape != [out_dim, adapter.config.r] {
                return Err(AugurError::Adapter {
                    path: "adapter_model.safetensors".into(),
                    message: format!(
                        "`{module}`: lora_A {a_shape:?} / lora_B {b_shape:?} do not fit a [{out_dim}, {in_dim}] weight (expected [{r}, {in_dim}] / [{out_dim}, {r}])",
                        r = adapter.config.r
                    ),
                });
            }
            *linear = linear.clone().with_lora(pair.clone()).merged()?;
        }
        Ok(merged)
    }

    /// The linear layer at a Hugging Face module path (`encoder.layer.3.attention.self.value`).
    fn linear_mut(&mut self, module: &str) -> Option<&mut LoraLinear> {
        let (index, name) = module.strip_prefix("encoder.layer.")?.split_once('.')?;
        self.layers
            .get_mut(index.parse::<usize>().ok()?)?
            .linear_mut(name)
    }

    /// The transformer layers, in order.
    pub fn layers(&self) -> &[EncoderLayer] {
        &self.layers
    }

    /// Runs the encoder. `input_ids` and `attention_mask` are `[batch, seq]` (u32); positions whose
    /// mask is 0 are never attended to, so padding does not change the other positions' states.
    /// Returns the last hidden state `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let depth = self.layers.len();
        Ok(self
            .forward_to_depths(input_ids, attention_mask, &[depth])?
            .remove(0))
    }

    /// Like [`BertEncoder::forward`], but returns the hidden states after each of `depths` layers
    /// (0: the embeddings; the layer count: the last hidden state), in the order asked, from one
    /// pass. Intermediate layers keep more of a text's wording than the last one.
    pub fn forward_to_depths(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        depths: &[usize],
    ) -> Result<Vec<Tensor>> {
        let ops = &Inference;
        let (batch, seq) = input_ids
            .dims2()
            .context("input_ids must be [batch, seq]")?;
        if seq > self.config.max_position_embeddings {
            return Err(AugurError::InvalidArgument(format!(
                "sequence of {seq} tokens exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        if let Some(&too_deep) = depths.iter().find(|&&d| d > self.layers.len()) {
            return Err(AugurError::InvalidArgument(format!(
                "depth {too_deep} asked of an encoder with {} layers",
                self.layers.len()
            )));
        }
        let hidden = self
            .embed(ops, input_ids, batch, seq)
            .context("embeddings")?;
        self.run_layers(ops, hidden, attention_mask, 0, depths)
    }

    /// Runs layers `first..` on `hidden` (`[batch, seq, hidden]`, the input of layer `first`), with
    /// the same masking as [`BertEncoder::forward`]. Training starts here from cached states of the
    /// frozen layers below the adapted ones.
    pub(crate) fn forward_layers_with(
        &self,
        ops: &dyn ForwardOps,
        hidden: Tensor,
        attention_mask: &Tensor,
        first: usize,
    ) -> Result<Tensor> {
        let depth = self.layers.len();
        Ok(self
            .run_layers(ops, hidden, attention_mask, first, &[depth])?
            .remove(0))
    }

    /// Runs layers `first..` up to the deepest of `depths`, keeping the states after each depth.
    fn run_layers(
        &self,
        ops: &dyn ForwardOps,
        mut hidden: Tensor,
        attention_mask: &Tensor,
        first: usize,
        depths: &[usize],
    ) -> Result<Vec<Tensor>> {
        let (batch, seq) = attention_mask
            .dims2()
            .context("attention_mask must be [batch, seq]")?;
        // Additive mask: 0 where attended, the most negative float where padding.
        let mask = attention_mask
            .to_dtype(DType::F32)
            .context("attention mask")?;
        let mask_bias = ((mask - 1.0).context("attention mask")? * f64::from(f32::MAX))
            .and_then(|m| m.reshape((batch, 1, 1, seq)))
            .context("attention mask")?;
        let deepest = depths.iter().copied().max().unwrap_or(first);
        let mut kept: Vec<Option<Tensor>> = vec![None; depths.len()];
        let mut keep = |depth: usize, hidden: &Tensor| {
            for (slot, _) in kept.iter_mut().zip(depths).filter(|(_, &d)| d == depth) {
                *slot = Some(hidden.clone());
            }
        };
        keep(first, &hidden);
        for (i, layer) in self.layers.iter().enumerate().take(deepest).skip(first) {
            hidden = self
                .layer_forward(ops, i, layer, &hidden, &mask_bias)
                .with_context(|| format!("encoder.layer.{i}"))?;
            keep(i + 1, &hidden);
        }
        kept.into_iter()
            .zip(depths)
            .map(|(states, depth)| {
                states.ok_or_else(|| {
                    AugurError::InvalidArgument(format!(
                        "depth {depth} lies below the first layer run ({first})"
                    ))
                })
            })
            .collect()
    }

    fn embed(
        &self,
        ops: &dyn ForwardOps,
        input_ids: &Tensor,
        batch: usize,
        seq: usize,
    ) -> candle_core::Result<Tensor> {
        let h = self.config.hidden_size;
        let words = self
            .embeddings
            .word
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((batch, seq, h))?;
        let positions = self.embeddings.position.narrow(0, 0, seq)?;
        let token_type = self.embeddings.token_type.get(0)?;
        let summed = words
            .broadcast_add(&positions)?
            .broadcast_add(&token_type)?;
        ops.norm(&self.embeddings.norm, &summed)
    }

    fn layer_forward(
        &self,
        ops: &dyn ForwardOps,
        index: usize,
        layer: &EncoderLayer,
        hidden: &Tensor,
        mask_bias: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, h) = hidden.dims3()?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        let split_heads = |x: Tensor| -> candle_core::Result<Tensor> {
            x.reshape((batch, seq, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split_heads(ops.linear(&layer.query, index, "attention.self.query", hidden)?)?;
        let k = split_heads(ops.linear(&layer.key, index, "attention.self.key", hidden)?)?;
        let v = split_heads(ops.linear(&layer.value, index, "attention.self.value", hidden)?)?;
        let scores =
            (q.matmul(&k.t()?)? * (1.0 / (head_dim as f64).sqrt()))?.broadcast_add(mask_bias)?;
        let probs = ops.softmax(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, seq, h))?;
        let projected = ops.linear(
            &layer.attention_output,
            index,
            "attention.output.dense",
            &context,
        )?;
        let attended = ops.norm(&layer.attention_norm, &(projected + hidden)?)?;
        let inner = ops.linear(&layer.intermediate, index, "intermediate.dense", &attended)?;
        let inner = match self.activation {
            Activation::GeluErf => inner.gelu_erf()?,
            Activation::GeluTanh => inner.gelu()?,
            Activation::Relu => inner.relu()?,
        };
        let out = ops.linear(&layer.output, index, "output.dense", &inner)?;
        ops.norm(&layer.output_norm, &(out + attended)?)
    }
}

/// The steps of the forward pass that differ between inference and training.
pub(crate) trait ForwardOps {
    /// `linear` applied to `x`; `layer` and `module` name it (`encoder.layer.{layer}.{module}`).
    fn linear(
        &self,
        linear: &LoraLinear,
        layer: usize,
        module: &str,
        x: &Tensor,
    ) -> candle_core::Result<Tensor>;
    /// A layer norm over the last dimension.
    fn norm(&self, norm: &LayerNorm, x: &Tensor) -> candle_core::Result<Tensor>;
    /// Softmax over the last dimension.
    fn softmax(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// Inference: fused kernels, weights as loaded (adapters already merged).
struct Inference;

impl ForwardOps for Inference {
    fn linear(
        &self,
        linear: &LoraLinear,
        _layer: usize,
        _module: &str,
        x: &Tensor,
    ) -> candle_core::Result<Tensor> {
        linear.forward(x)
    }
    fn norm(&self, norm: &LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
        norm.forward(x)
    }
    fn softmax(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax_last_dim(x)
    }
}
