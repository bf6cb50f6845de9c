//! The E5S1 converter: a tiny container written here round-trips to Hugging Face names and exact
//! values; malformed containers are refused with the offset.

use std::collections::BTreeMap;
use std::path::Path;

use augur_core::provision::convert_e5s1;
use augur_core::AugurError;
use candle_core::Device;

const H: usize = 32;
const FFN: usize = 64;
const VOCAB: usize = 8;
const MAX_POS: usize = 16;

/// Deterministic pseudo-random numbers (no dependency needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A tensor to write: name, values, and whether to store it as Q4_0.
struct Entry {
    name: &'static str,
    hf: String,
    values: Vec<f32>,
    bytes: Vec<u8>,
}

fn f32_entry(name: &'static str, hf: &str, n: usize, rng: &mut Lcg) -> Entry {
    let values: Vec<f32> = (0..n)
        .map(|_| (rng.next() % 1000) as f32 / 250.0 - 2.0)
        .collect();
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Entry {
        name,
        hf: hf.to_string(),
        values,
        bytes,
    }
}

/// Q4_0 with scales that f16 holds exactly, so dequantised values are exact.
fn q4_entry(name: &'static str, hf: &str, n: usize, rng: &mut Lcg) -> Entry {
    let mut values = vec![0f32; n];
    let mut bytes = Vec::new();
    for (b, block) in values.chunks_mut(32).enumerate() {
        let d = [0.25f32, 0.5, 0.125, 1.0][b % 4];
        bytes.extend(half::f16::from_f32(d).to_le_bytes());
        let nibbles: Vec<u8> = (0..32).map(|_| (rng.next() % 16) as u8).collect();
        for j in 0..16 {
            bytes.push(nibbles[j] | (nibbles[j + 16] << 4));
        }
        for (v, q) in block.iter_mut().zip(&nibbles) {
            *v = (f32::from(*q) - 8.0) * d;
        }
    }
    Entry {
        name,
        hf: hf.to_string(),
        values,
        bytes,
    }
}

fn entries() -> Vec<Entry> {
    let mut rng = Lcg(42);
    let l = "encoder.layer.0";
    vec![
        q4_entry(
            "emb.word",
            "embeddings.word_embeddings.weight",
            VOCAB * H,
            &mut rng,
        ),
        f32_entry(
            "emb.pos",
            "embeddings.position_embeddings.weight",
            MAX_POS * H,
            &mut rng,
        ),
        f32_entry(
            "emb.type",
            "embeddings.token_type_embeddings.weight",
            2 * H,
            &mut rng,
        ),
        f32_entry("emb.ln.w", "embeddings.LayerNorm.weight", H, &mut rng),
        f32_entry("emb.ln.b", "embeddings.LayerNorm.bias", H, &mut rng),
        q4_entry(
            "l0.q.w",
            &format!("{l}.attention.self.query.weight"),
            H * H,
            &mut rng,
        ),
        f32_entry(
            "l0.q.b",
            &format!("{l}.attention.self.query.bias"),
            H,
            &mut rng,
        ),
        q4_entry(
            "l0.k.w",
            &format!("{l}.attention.self.key.weight"),
            H * H,
            &mut rng,
        ),
        f32_entry(
            "l0.k.b",
            &format!("{l}.attention.self.key.bias"),
            H,
            &mut rng,
        ),
        q4_entry(
            "l0.v.w",
            &format!("{l}.attention.self.value.weight"),
            H * H,
            &mut rng,
        ),
        f32_entry(
            "l0.v.b",
            &format!("{l}.attention.self.value.bias"),
            H,
            &mut rng,
        ),
        q4_entry(
            "l0.ao.w",
            &format!("{l}.attention.output.dense.weight"),
            H * H,
            &mut rng,
        ),
        f32_entry(
            "l0.ao.b",
            &format!("{l}.attention.output.dense.bias"),
            H,
            &mut rng,
        ),
        f32_entry(
            "l0.aln.w",
            &format!("{l}.attention.output.LayerNorm.weight"),
            H,
            &mut rng,
        ),
        f32_entry(
            "l0.aln.b",
            &format!("{l}.attention.output.LayerNorm.bias"),
            H,
            &mut rng,
        ),
        q4_entry(
            "l0.fi.w",
            &format!("{l}.intermediate.dense.weight"),
            FFN * H,
            &mut rng,
        ),
        f32_entry(
            "l0.fi.b",
            &format!("{l}.intermediate.dense.bias"),
            FFN,
            &mut rng,
        ),
        q4_entry(
            "l0.fo.w",
            &format!("{l}.output.dense.weight"),
            H * FFN,
            &mut rng,
        ),
        f32_entry("l0.fo.b", &format!("{l}.output.dense.bias"), H, &mut rng),
        f32_entry(
            "l0.oln.w",
            &format!("{l}.output.LayerNorm.weight"),
            H,
            &mut rng,
        ),
        f32_entry(
            "l0.oln.b",
            &format!("{l}.output.LayerNorm.bias"),
            H,
            &mut rng,
        ),
    ]
}

/// Writes a minimal Unigram `tokenizer.json` with these pieces, in id order.
fn write_tokenizer(path: &Path, pieces: &[&str]) {
    let vocab: Vec<serde_json::Value> =
        pieces.iter().map(|p| serde_json::json!([p, 0.0])).collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab}
    });
    std::fs::write(path, tokenizer.to_string()).unwrap();
}

/// Writes an E5S1 file following the documented layout.
fn write_e5s1(path: &Path, entries: &[Entry]) {
    let mut out = Vec::new();
    out.extend(b"E5S1");
    out.extend(1u32.to_le_bytes());
    for v in [H, 1, 2, FFN, VOCAB, MAX_POS, 2] {
        out.extend((v as i32).to_le_bytes());
    }
    out.extend(1e-12f32.to_le_bytes());
    out.extend(32i32.to_le_bytes());
    // Tokenizer: two pieces "<s>", "</s>".
    let blob = b"<s></s>";
    for v in [2i32, 0, 1, 0, 0] {
        out.extend(v.to_le_bytes());
    }
    out.extend((blob.len() as u64).to_le_bytes());
    for off in [0u32, 3, 7] {
        out.extend(off.to_le_bytes());
    }
    for score in [0f32, 0.0] {
        out.extend(score.to_le_bytes());
    }
    out.extend(blob);
    // Extra section to skip.
    out.extend(3i32.to_le_bytes());
    out.extend(5u32.to_le_bytes());
    out.extend([9u8; 5]);
    // Directory, then data.
    let dir_len: usize = 4 + entries
        .iter()
        .map(|e| 2 + e.name.len() + 1 + 4 + 8 + 8)
        .sum::<usize>();
    let mut offset = out.len() + dir_len;
    out.extend((entries.len() as i32).to_le_bytes());
    for e in entries {
        out.extend((e.name.len() as u16).to_le_bytes());
        out.extend(e.name.as_bytes());
        out.push(u8::from(e.bytes.len() != 4 * e.values.len()));
        out.extend((e.values.len() as u32).to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        out.extend((e.bytes.len() as u64).to_le_bytes());
        offset += e.bytes.len();
    }
    for e in entries {
        out.extend(&e.bytes);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn tiny_e5s1_round_trips_to_hugging_face_names_and_exact_values() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("tiny.bin");
    let tokenizer = tmp.path().join("tokenizer.json");
    write_tokenizer(&tokenizer, &["<s>", "</s>"]);
    let entries = entries();
    write_e5s1(&source, &entries);

    let out = tmp.path().join("model");
    let report = convert_e5s1(&source, &tokenizer, &out).unwrap();
    assert_eq!(report.tensors, entries.len());
    assert_eq!(report.dequantized, 7);

    let tensors =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(tensors.len(), entries.len());
    for e in &entries {
        let t = tensors
            .get(&e.hf)
            .unwrap_or_else(|| panic!("{} missing as {}", e.name, e.hf));
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            e.values,
            "values of {}",
            e.hf
        );
    }
    assert_eq!(
        tensors["encoder.layer.0.intermediate.dense.weight"].dims(),
        &[FFN, H]
    );
    assert_eq!(
        tensors["encoder.layer.0.output.dense.weight"].dims(),
        &[H, FFN]
    );

    let config: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["hidden_size"], 32);
    assert_eq!(config["intermediate_size"], 64);
    assert_eq!(config["vocab_size"], 8);
    assert_eq!(config["architectures"][0], "BertModel");
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("config_sentence_transformers.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["prompts"]["passage"], "passage: ");
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(&tokenizer).unwrap()
    );

    // The converted directory passes the loader's own shape check.
    let parsed = augur_core::EncoderConfig::from_file(&out.join("config.json")).unwrap();
    augur_core::model::weights::check_weights(&out.join("model.safetensors"), &parsed).unwrap();
}

#[test]
fn bad_magic_and_truncation_are_reported_with_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = tmp.path().join("tokenizer.json");
    write_tokenizer(&tokenizer, &["<s>", "</s>"]);

    let bad = tmp.path().join("bad.bin");
    std::fs::write(&bad, b"GGUF\x01\x00\x00\x00").unwrap();
    let err = convert_e5s1(&bad, &tokenizer, &tmp.path().join("o1")).unwrap_err();
    assert!(matches!(err, AugurError::Format { offset: 0, .. }), "{err}");
    assert!(err.to_string().contains("E5S1"), "{err}");

    let good = tmp.path().join("good.bin");
    write_e5s1(&good, &entries());
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..60]).unwrap();
    let err = convert_e5s1(&cut, &tokenizer, &tmp.path().join("o2")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cut.bin") && msg.contains("file ends"),
        "{msg}"
    );

    // A directory entry pointing past the end of the file is caught before any data is read.
    let short = tmp.path().join("short.bin");
    std::fs::write(&short, &bytes[..bytes.len() - 10]).unwrap();
    let err = convert_e5s1(&short, &tokenizer, &tmp.path().join("o3")).unwrap_err();
    assert!(err.to_string().contains("beyond the file"), "{err}");
}

/// Regression: a tokenizer of another model was copied in beside the weights, so the converted
/// model loaded and ran but looked every text up in the wrong embedding rows.
#[test]
fn a_tokenizer_that_is_not_the_one_embedded_in_the_weights_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("tiny.bin");
    write_e5s1(&source, &entries());

    let reordered = tmp.path().join("reordered.json");
    write_tokenizer(&reordered, &["</s>", "<s>"]);
    let err = convert_e5s1(&source, &reordered, &tmp.path().join("o1")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("reordered.json")
            && msg.contains("id 0 is \"</s>\"")
            && msg.contains("tiny.bin"),
        "{msg}"
    );
    assert!(!tmp.path().join("o1/model.safetensors").exists());

    let larger = tmp.path().join("larger.json");
    write_tokenizer(&larger, &["<s>", "</s>", "x"]);
    let err = convert_e5s1(&source, &larger, &tmp.path().join("o2")).unwrap_err();
    assert!(
        err.to_string()
            .contains("has 3 pieces, the E5S1 file embeds 2"),
        "{err}"
    );

    let not_a_tokenizer = tmp.path().join("placeholder.json");
    std::fs::write(&not_a_tokenizer, "{\"placeholder\": true}").unwrap();
    let err = convert_e5s1(&source, &not_a_tokenizer, &tmp.path().join("o3")).unwrap_err();
    assert!(err.to_string().contains("placeholder.json"), "{err}");
}
