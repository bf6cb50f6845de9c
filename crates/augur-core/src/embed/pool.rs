//! Pooling: from token states `[batch, seq, hidden]` to one vector per sequence `[batch, hidden]`.

use candle_core::{DType, IndexOp, Tensor};

use crate::error::{CandleContext, Result};
use crate::model::config::PoolingMode;

/// Reduces token states to one vector per sequence; `mask` is `[batch, seq]` with 1 for real tokens.
pub trait Pooler: Send + Sync {
    /// Pools `hidden` `[batch, seq, hidden]` under `mask` `[batch, seq]` into `[batch, hidden]`.
    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor>;
    /// Pools the token states of one unpadded sequence, row-major `[tokens, hidden]`.
    fn pool_tokens(&self, states: &[f32], hidden: usize) -> Vec<f32>;
}

/// Mean of the token states, padding excluded (sentence-transformers' `mean_tokens`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MeanPooling;

/// The first token's state (`[CLS]` / `<s>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClsPooling;

impl Pooler for MeanPooling {
    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mask = mask.to_dtype(DType::F32).context("mean pooling: mask")?;
        let summed = hidden
            .broadcast_mul(&mask.unsqueeze(2).context("mean pooling")?)
            .and_then(|m| m.sum(1))
            .context("mean pooling: masked sum")?;
        let counts = mask
            .sum_keepdim(1)
            .and_then(|c| c.clamp(1e-9, f64::MAX))
            .context("mean pooling: counts")?;
        summed
            .broadcast_div(&counts)
            .context("mean pooling: divide")
    }

    fn pool_tokens(&self, states: &[f32], hidden: usize) -> Vec<f32> {
        let mut mean = vec![0f32; hidden];
        for row in states.chunks_exact(hidden) {
            mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
        }
        let count = (states.len() / hidden).max(1) as f32;
        mean.iter_mut().for_each(|m| *m /= count);
        mean
    }
}

impl Pooler for ClsPooling {
    fn pool(&self, hidden: &Tensor, _mask: &Tensor) -> Result<Tensor> {
        hidden
            .i((.., 0, ..))
            .and_then(|t| t.contiguous())
            .context("CLS pooling")
    }

    fn pool_tokens(&self, states: &[f32], hidden: usize) -> Vec<f32> {
        states
            .get(..hidden)
            .map_or(vec![0.0; hidden], <[f32]>::to_vec)
    }
}

/// The pooler for a [`PoolingMode`].
pub fn pooler_for(mode: PoolingMode) -> Box<dyn Pooler> {
    match mode {
        PoolingMode::Mean => Box::new(MeanPooling),
        PoolingMode::Cls => Box::new(ClsPooling),
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors of equal length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
