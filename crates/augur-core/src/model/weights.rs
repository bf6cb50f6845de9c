//! The tensors a BERT checkpoint must hold, by Hugging Face name, and a check of a
//! `.safetensors` file against them that names the offending tensor.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::error::{io_error, AugurError, Result};
use crate::model::config::EncoderConfig;

/// Every tensor of a `BertModel` (no pooler) with the shape `config` implies, in load order.
/// Names are exactly the Hugging Face ones, so checkpoints and PEFT adapters map without renaming.
pub fn bert_tensor_shapes(config: &EncoderConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut shapes = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![config.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![config.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![config.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        for (module, out_dim, in_dim) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            shapes.push((format!("{p}.{module}.weight"), vec![out_dim, in_dim]));
            shapes.push((format!("{p}.{module}.bias"), vec![out_dim]));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}.{norm}.weight"), vec![h]));
            shapes.push((format!("{p}.{norm}.bias"), vec![h]));
        }
    }
    shapes
}

#[derive(Deserialize)]
struct HeaderEntry {
    shape: Vec<usize>,
}

/// Reads the shapes recorded in a `.safetensors` header without loading any data.
pub fn read_safetensors_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io_error(path))?;
    let header_len = u64::from_le_bytes(len_bytes);
    let file_len = file.metadata().map_err(io_error(path))?.len();
    if header_len > file_len.saturating_sub(8) || header_len > 100 << 20 {
        return Err(AugurError::Format {
            path: path.to_path_buf(),
            offset: 0,
            message: format!(
                "not a safetensors file: header length {header_len} for a file of {file_len} bytes"
            ),
        });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_error(path))?;
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|source| AugurError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let mut shapes = BTreeMap::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|source| AugurError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        shapes.insert(name, entry.shape);
    }
    Ok(shapes)
}

/// Checks that `weights` holds every tensor `config` calls for, with the right shape.
/// Returns the name prefix the checkpoint uses (`""` or `"bert."`).
pub fn check_weights(weights: &Path, config: &EncoderConfig) -> Result<String> {
    let stored = read_safetensors_shapes(weights)?;
    let prefix = if stored.contains_key("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    for (name, expected) in bert_tensor_shapes(config) {
        let full = format!("{prefix}{name}");
        match stored.get(&full) {
            None => {
                return Err(AugurError::MissingTensor {
                    file: weights.to_path_buf(),
                    tensor: full,
                    expected,
                });
            }
            Some(found) if *found != expected => {
                return Err(AugurError::ShapeMismatch {
                    file: weights.to_path_buf(),
                    tensor: full,
                    expected,
                    found: found.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(prefix.to_string())
}
