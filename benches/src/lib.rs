//! The baseline Augur is measured against: stock `candle_transformers::models::bert::BertModel`
//! loaded from the same model directory and fed the same token ids.

#![warn(missing_docs)]

pub mod snownlp;

use std::path::Path;

use anyhow::{Context, Result};
use augur_core::embed::TokenWindow;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

/// The stock candle BERT, loaded from a Hugging Face model directory.
pub struct CandleBaseline {
    model: BertModel,
    pad_token_id: u32,
}

impl CandleBaseline {
    /// Loads `dir/config.json` and `dir/model.safetensors`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_text = std::fs::read_to_string(dir.join("config.json"))?;
        let config: Config =
            serde_json::from_str(&config_text).context("candle-transformers bert::Config")?;
        let pad_token_id = config.pad_token_id as u32;
        // SAFETY: read-only memory map of a file nobody writes while the benchmark runs.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &Device::Cpu,
            )?
        };
        Ok(Self {
            model: BertModel::load(vb, &config)?,
            pad_token_id,
        })
    }

    /// Last hidden state `[batch, seq, hidden]` for padded ids and mask.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let token_types = ids.zeros_like()?;
        Ok(self.model.forward(ids, &token_types, Some(mask))?)
    }

    /// Mean-pooled vectors of `rows` run as one padded batch.
    pub fn embed_rows(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (ids, mask) = pad_batch(rows, self.pad_token_id)?;
        let hidden = self.forward(&ids, &mask)?;
        let mask = mask.to_dtype(DType::F32)?;
        let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
        let pooled = summed.broadcast_div(&mask.sum_keepdim(1)?)?;
        Ok(pooled.to_vec2()?)
    }
}

/// Pads `rows` to their longest with `pad` and returns `(input_ids, attention_mask)` as u32.
pub fn pad_batch(rows: &[&[u32]], pad: u32) -> Result<(Tensor, Tensor)> {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * seq);
    let mut mask = Vec::with_capacity(rows.len() * seq);
    for row in rows {
        ids.extend_from_slice(row);
        ids.resize(ids.len() + seq - row.len(), pad);
        mask.extend((0..seq).map(|i| u32::from(i < row.len())));
    }
    Ok((
        Tensor::from_vec(ids, (rows.len(), seq), &Device::Cpu)?,
        Tensor::from_vec(mask, (rows.len(), seq), &Device::Cpu)?,
    ))
}

/// Token ids of single-window texts (the benchmark truncates, as the comparison requires).
pub fn first_windows(windows: Vec<Vec<TokenWindow>>) -> Vec<Vec<u32>> {
    windows
        .into_iter()
        .map(|mut w| w.swap_remove(0).ids)
        .collect()
}
