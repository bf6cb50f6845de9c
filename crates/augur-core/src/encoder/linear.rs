//! The linear layer every projection of the encoder uses: `y = x·Wᵀ + b`, with room for a LoRA
//! pair (`y += (alpha/r)·x·Aᵀ·Bᵀ`) that can be merged into `W` for inference.

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

use crate::error::{CandleContext, Result};

/// A low-rank update `ΔW = scale · B·A`, with `A: [r, in]`, `B: [out, r]`, `scale = alpha / r`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Down-projection `A`, shape `[r, in]` (PEFT's `lora_A.weight`).
    pub a: Tensor,
    /// Up-projection `B`, shape `[out, r]` (PEFT's `lora_B.weight`).
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

/// A dense layer with optional bias and an optional, unmerged LoRA pair.
#[derive(Debug, Clone)]
pub struct LoraLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraPair>,
}

impl LoraLinear {
    /// Wraps an existing weight `[out, in]` and bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// Loads `weight` and `bias` under the prefix of `vb` (Hugging Face names, e.g.
    /// `encoder.layer.0.attention.self.query`).
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let prefix = vb.prefix();
        let weight = vb
            .get((out_dim, in_dim), "weight")
            .with_context(|| format!("loading {prefix}.weight"))?;
        let bias = vb
            .get(out_dim, "bias")
            .with_context(|| format!("loading {prefix}.bias"))?;
        Ok(Self::new(weight, Some(bias)))
    }

    /// Attaches a LoRA pair (replacing any previous one).
    pub fn with_lora(mut self, lora: LoraPair) -> Self {
        self.lora = Some(lora);
        self
    }

    /// `x·Wᵀ + b` with the base weight only (any unmerged pair ignored).
    pub fn forward_frozen(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Self::new(self.weight.clone(), self.bias.clone()).forward(x)
    }

    /// The base weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The attached LoRA pair, if any.
    pub fn lora(&self) -> Option<&LoraPair> {
        self.lora.as_ref()
    }

    /// A copy with the LoRA pair folded into the weight (`W + scale·B·A`), so inference costs
    /// nothing extra. Without a pair, returns a plain copy.
    pub fn merged(&self) -> Result<Self> {
        let Some(lora) = &self.lora else {
            return Ok(self.clone());
        };
        let delta =
            (lora.b.matmul(&lora.a).context("LoRA B·A")? * lora.scale).context("LoRA scale")?;
        let weight = (&self.weight + delta).context("merging LoRA into weight")?;
        Ok(Self {
            weight,
            bias: self.bias.clone(),
            lora: None,
        })
    }
}

impl Module for LoraLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = x2.matmul(&self.weight.t()?)?;
        if let Some(lora) = &self.lora {
            let low = x2.matmul(&lora.a.t()?)?.matmul(&lora.b.t()?)?;
            y = (y + (low * lora.scale)?)?;
        }
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = y.dim(D::Minus1)?;
        y.reshape(out_dims)
    }
}
