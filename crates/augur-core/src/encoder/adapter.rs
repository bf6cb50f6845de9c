//! LoRA adapters in Hugging Face PEFT's format: `adapter_config.json` + `adapter_model.safetensors`
//! with keys such as `base_model.model.encoder.layer.0.attention.self.query.lora_A.weight`.
//! Loading checks the adapter against the model; applying merges `W + (alpha/r)·B·A`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoder::linear::LoraPair;
use crate::error::{io_error, AugurError, CandleContext, Result};

/// The fields of PEFT's `adapter_config.json` Augur reads and writes (others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Must be `LORA`.
    pub peft_type: String,
    /// Rank.
    pub r: usize,
    /// Scaling numerator.
    pub lora_alpha: f64,
    /// Module names the adapter targets (`query`, `value`, ...).
    pub target_modules: Vec<String>,
    /// The base model it was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Dropout used in training (no effect at inference).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Rank-stabilised scaling (`alpha / √r`).
    #[serde(default)]
    pub use_rslora: bool,
    /// Weights stored transposed (not supported for BERT linears).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Bias training mode; only `none` is supported.
    #[serde(default = "bias_none")]
    pub bias: String,
    /// The layers that carry pairs (all layers when absent), as in PEFT, which also writes a
    /// single layer as a bare number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "layer_list"
    )]
    pub layers_to_transform: Option<Vec<usize>>,
}

/// PEFT's `layers_to_transform`: a list of layer indices or one index.
fn layer_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Vec<usize>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Layers {
        One(usize),
        Many(Vec<usize>),
    }
    Ok(
        Option::<Layers>::deserialize(deserializer)?.map(|layers| match layers {
            Layers::One(layer) => vec![layer],
            Layers::Many(layers) => layers,
        }),
    )
}

fn bias_none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// The factor the update `B·A` is scaled by.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// A LoRA adapter: its config and one `(A, B)` pair per targeted linear layer, keyed by the
/// layer's Hugging Face module path (`encoder.layer.0.attention.self.query`).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// The adapter's config.
    pub config: AdapterConfig,
    /// Pairs by module path.
    pub pairs: BTreeMap<String, LoraPair>,
}

const PEFT_PREFIX: &str = "base_model.model.";

/// Maps a PEFT key to `(module path, "A" | "B")`.
fn parse_key(key: &str) -> Option<(String, &'static str)> {
    let rest = key.strip_prefix(PEFT_PREFIX).unwrap_or(key);
    let rest = rest.strip_prefix("bert.").unwrap_or(rest);
    if let Some(module) = rest.strip_suffix(".lora_A.weight") {
        Some((module.to_string(), "A"))
    } else {
        rest.strip_suffix(".lora_B.weight")
            .map(|m| (m.to_string(), "B"))
    }
}

impl LoraAdapter {
    /// Reads a PEFT adapter directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
        let config: AdapterConfig =
            serde_json::from_str(&text).map_err(|source| AugurError::Json {
                path: config_path.clone(),
                source,
            })?;
        let invalid = |message: String| AugurError::Adapter {
            path: config_path.clone(),
            message,
        };
        if config.peft_type != "LORA" {
            return Err(invalid(format!(
                "peft_type is `{}`; only LORA adapters are supported",
                config.peft_type
            )));
        }
        if config.fan_in_fan_out || config.bias != "none" {
            return Err(invalid(
                "fan_in_fan_out and bias training are not supported for BERT adapters".into(),
            ));
        }
        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                " (found adapter_model.bin: only safetensors are loaded)"
            } else {
                ""
            };
            return Err(AugurError::MissingModelFile {
                dir: dir.to_path_buf(),
                file: "adapter_model.safetensors".into(),
                hint: format!("the adapter weights{hint}"),
            });
        }
        let tensors = candle_core::safetensors::load(&weights_path, device)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let mut halves: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (key, tensor) in tensors {
            let Some((module, half)) = parse_key(&key) else {
                return Err(AugurError::Adapter {
                    path: weights_path.clone(),
                    message: format!("unexpected tensor `{key}` (not a lora_A / lora_B weight)"),
                });
            };
            let tensor = tensor
                .to_dtype(DType::F32)
                .context("adapter tensor to f32")?;
            let entry = halves.entry(module).or_default();
            if half == "A" {
                entry.0 = Some(tensor)
            } else {
                entry.1 = Some(tensor)
            }
        }
        let scale = config.scale();
        let mut pairs = BTreeMap::new();
        for (module, (a, b)) in halves {
            let layer = module
                .strip_prefix("encoder.layer.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|index| index.parse::<usize>().ok());
            if let (Some(listed), Some(layer)) = (&config.layers_to_transform, layer) {
                if !listed.contains(&layer) {
                    return Err(AugurError::Adapter {
                        path: weights_path.clone(),
                        message: format!("`{module}` is in layer {layer}, but adapter_config.json lists layers_to_transform {listed:?}"),
                    });
                }
            }
            let (Some(a), Some(b)) = (a, b) else {
                return Err(AugurError::Adapter {
                    path: weights_path.clone(),
                    message: format!("`{module}` has only one of lora_A / lora_B"),
                });
            };
            let (ra, rb) = (a.dim(0).context("lora_A")?, b.dim(1).context("lora_B")?);
            if ra != config.r || rb != config.r {
                return Err(AugurError::Adapter {
                    path: weights_path.clone(),
                    message: format!("`{module}`: lora_A has rank {ra} and lora_B rank {rb}, adapter_config.json says r = {}", config.r),
                });
            }
            pairs.insert(module, LoraPair { a, b, scale });
        }
        if pairs.is_empty() {
            return Err(AugurError::Adapter {
                path: weights_path,
                message: "no LoRA pairs found".into(),
            });
        }
        Ok(Self { config, pairs })
    }

    /// Writes the adapter in PEFT's format (loadable by `PeftModel.from_pretrained`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (module, pair) in &self.pairs {
            tensors.insert(
                format!("{PEFT_PREFIX}{module}.lora_A.weight"),
                pair.a.clone(),
            );
            tensors.insert(
                format!("{PEFT_PREFIX}{module}.lora_B.weight"),
                pair.b.clone(),
            );
        }
        let weights = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&tensors, &weights)
            .with_context(|| format!("writing {}", weights.display()))?;
        let mut config = serde_json::to_value(&self.config).expect("config serialises");
        config["task_type"] = serde_json::Value::Null;
        config["inference_mode"] = serde_json::Value::Bool(true);
        let path = dir.join("adapter_config.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&config).expect("json") + "\n",
        )
        .map_err(io_error(&path))
    }

    /// A 64-bit FNV-1a hash of the module names, scales and pair values: tells adapters apart in
    /// cache keys.
    pub fn fingerprint(&self) -> Result<u64> {
        let mut hash: u64 = 0xcbf29ce484222325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
        };
        for (module, pair) in &self.pairs {
            feed(&(module.len() as u64).to_le_bytes());
            feed(module.as_bytes());
            feed(&pair.scale.to_le_bytes());
            for tensor in [&pair.a, &pair.b] {
                let values = tensor
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .context("reading adapter values")?;
                values.iter().for_each(|v| feed(&v.to_le_bytes()));
            }
        }
        Ok(hash)
    }

    /// The encoder layers the adapter changes, or `None` when a pair sits outside
    /// `encoder.layer.N` (then every layer counts as changed).
    pub fn layers(&self) -> Option<std::collections::BTreeSet<usize>> {
        self.pairs
            .keys()
            .map(|module| {
                module
                    .strip_prefix("encoder.layer.")?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Refuses an adapter trained on another base model. Names are compared by their last path
    /// segment (`sentence-transformers/all-MiniLM-L6-v2` matches a local `all-MiniLM-L6-v2`).
    pub fn check_base(&self, model_name: &str) -> Result<()> {
        let Some(base) = &self.config.base_model_name_or_path else {
            return Ok(());
        };
        // Adapters fitted before ids were recorded name the model's folder, which in the Hugging
        // Face cache is a snapshot hash: its repo id is in the path.
        let base = &crate::model::repo_id_in_cache_path(std::path::Path::new(base))
            .unwrap_or_else(|| base.clone());
        let last = |s: &str| {
            s.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(s)
                .to_lowercase()
        };
        if last(base) != last(model_name) {
            return Err(AugurError::Adapter {
                path: "adapter_config.json".into(),
                message: format!(
                    "adapter was trained on `{base}`, but the model is `{model_name}`; load it on `{base}`"
                ),
            });
        }
        Ok(())
    }
}
