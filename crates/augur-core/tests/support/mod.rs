//! Shared test helpers: the real provisioned models (loaded once per test binary) and a tiny
//! BERT directory writer for error-path tests (where behaviour of a real model is not the point).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use augur_core::{Embedder, ModelLocator};
use candle_core::{DType, Device, Tensor};

/// `models/` at the repository root, where `models/fetch` provisions real weights.
pub fn repo_models_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join("../../models")
}

/// A real provisioned model directory; panics with the fix when it is missing.
pub fn real_model_dir(name: &str) -> PathBuf {
    let dir = repo_models_dir().join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is not provisioned: run `models/fetch` first (tests use the real weights)",
        dir.display()
    );
    dir
}

fn load(name: &str) -> Embedder {
    Embedder::builder(real_model_dir(name).display().to_string())
        .with_locator(ModelLocator::empty())
        .build()
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// multilingual-e5-small, loaded once.
pub fn e5() -> &'static Embedder {
    static MODEL: OnceLock<Embedder> = OnceLock::new();
    MODEL.get_or_init(|| load("multilingual-e5-small"))
}

/// all-MiniLM-L6-v2, loaded once.
pub fn minilm() -> &'static Embedder {
    static MODEL: OnceLock<Embedder> = OnceLock::new();
    MODEL.get_or_init(|| load("all-MiniLM-L6-v2"))
}

/// Words of the tiny model's whitespace word-level vocabulary.
pub const TINY_WORDS: &[&str] = &[
    "[UNK]", "[CLS]", "[SEP]", "[PAD]", "budget", "approved", "next", "quarter",
];

/// Settings for [`write_tiny_model`], to break one thing at a time.
pub struct TinySpec {
    pub hidden: usize,
    pub layers: usize,
    pub vocab_size: usize,
    pub hidden_act: &'static str,
    /// A tensor to store with a wrong shape.
    pub misshapen: Option<&'static str>,
    /// A tensor to leave out.
    pub missing: Option<&'static str>,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            hidden: 8,
            layers: 1,
            vocab_size: TINY_WORDS.len(),
            hidden_act: "gelu",
            misshapen: None,
            missing: None,
        }
    }
}

/// Writes a complete tiny BERT directory (config, tokenizer, random safetensors) into `dir`.
pub fn write_tiny_model(dir: &Path, spec: &TinySpec) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "vocab_size": spec.vocab_size, "hidden_size": spec.hidden, "num_hidden_layers": spec.layers,
        "num_attention_heads": 2, "intermediate_size": 2 * spec.hidden, "max_position_embeddings": 32,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": spec.hidden_act, "pad_token_id": 3,
        "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = TINY_WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let cfg = augur_core::EncoderConfig::from_file(&dir.join("config.json"))
        .unwrap_or_else(|_| serde_json::from_value(config.clone()).unwrap());
    let mut tensors = std::collections::HashMap::new();
    for (name, mut shape) in augur_core::model::weights::bert_tensor_shapes(&cfg) {
        if spec.missing == Some(name.as_str()) {
            continue;
        }
        if spec.misshapen == Some(name.as_str()) {
            shape[0] += 1;
        }
        let t = Tensor::randn(0f32, 0.1, shape.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        tensors.insert(name, t);
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}
