//! PEFT LoRA adapters on the real all-MiniLM-L6-v2: an adapter made by Python PEFT gives the
//! embeddings PEFT gave; mismatched adapters are refused; save → load round-trips.

mod support;

use std::path::{Path, PathBuf};

use augur_core::embed::cosine;
use augur_core::{AugurError, Embedder, InputKind, LoraAdapter, ModelLocator};
use candle_core::Device;
use serde::Deserialize;
use support::real_model_dir;

fn reference_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join("../../fixtures/reference")
}

#[derive(Deserialize)]
struct Expected {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    embedding: Vec<f32>,
}

fn minilm_raw() -> Embedder {
    Embedder::builder(real_model_dir("all-MiniLM-L6-v2").display().to_string())
        .with_locator(ModelLocator::empty())
        .with_normalize(false)
        .build()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn peft_adapter_gives_the_embeddings_peft_gave() {
    let adapter =
        LoraAdapter::load(&reference_dir().join("peft_minilm_lora"), &Device::Cpu).unwrap();
    assert_eq!(adapter.config.r, 4);
    assert_eq!(adapter.pairs.len(), 12, "query and value of 6 layers");
    let base = minilm_raw();
    let adapted = base.with_adapter(&adapter).unwrap();
    let expected: Expected = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("peft_minilm_expected.json")).unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = expected.items.iter().map(|i| i.text.as_str()).collect();
    let ours = adapted.embed(&texts, InputKind::Passage).unwrap();
    let plain = base.embed(&texts, InputKind::Passage).unwrap();
    let mut moved = 0;
    for ((item, v), p) in expected.items.iter().zip(&ours).zip(&plain) {
        let c = cosine(v, &item.embedding);
        assert!(c >= 0.9999, "cosine {c:.6} to PEFT for {:?}", item.text);
        let max_diff = v
            .iter()
            .zip(&item.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff < 1e-3,
            "max abs difference {max_diff} for {:?}",
            item.text
        );
        moved += usize::from(cosine(p, v) < 0.999);
    }
    assert!(
        moved > expected.items.len() / 2,
        "the adapter must change the embeddings; the base model is kept intact"
    );
}

#[test]
fn saved_adapter_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter =
        LoraAdapter::load(&reference_dir().join("peft_minilm_lora"), &Device::Cpu).unwrap();
    adapter.save(tmp.path()).unwrap();
    let again = LoraAdapter::load(tmp.path(), &Device::Cpu).unwrap();
    assert_eq!(again.config, adapter.config);
    for (module, pair) in &adapter.pairs {
        let other = &again.pairs[module];
        let diff: f32 = (&pair.a - &other.a)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0, "{module}");
    }
    let saved = std::fs::read_to_string(tmp.path().join("adapter_config.json")).unwrap();
    assert!(saved.contains("\"peft_type\": \"LORA\"") && saved.contains("\"target_modules\""));
}

/// An adapter on some layers only: the adapted copy shares the untouched layers of the fast
/// CPU path with its base, and still equals the merged model's full (candle) forward; the base
/// is left as it was.
#[test]
fn an_adapter_on_top_layers_shares_the_rest_and_matches_the_full_forward() {
    let mut adapter =
        LoraAdapter::load(&reference_dir().join("peft_minilm_lora"), &Device::Cpu).unwrap();
    adapter.pairs.retain(|module, _| {
        module.starts_with("encoder.layer.4.") || module.starts_with("encoder.layer.5.")
    });
    assert_eq!(adapter.layers(), Some([4, 5].into()));
    let base = minilm_raw();
    let texts = ["the budget was approved", "we are also talking to Rockwell"];
    let before = base.embed(&texts, InputKind::Passage).unwrap();
    let adapted = base.with_adapter(&adapter).unwrap();
    assert_eq!(adapted.layers_shared_with(&base), vec![0, 1, 2, 3]);
    let fast = adapted.embed(&texts, InputKind::Passage).unwrap();
    assert_eq!(base.embed(&texts, InputKind::Passage).unwrap(), before);
    assert!(
        cosine(&fast[0], &before[0]) < 0.9999,
        "the adapter changes the vectors"
    );
    let windows = adapted.windows(&texts, InputKind::Passage).unwrap();
    for (window, fast) in windows.iter().zip(&fast) {
        let ids = &window[0].ids;
        let ids_t =
            candle_core::Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
        let mask_t =
            candle_core::Tensor::ones((1, ids.len()), candle_core::DType::U32, &Device::Cpu)
                .unwrap();
        let hidden: Vec<Vec<f32>> = adapted
            .encoder()
            .forward(&ids_t, &mask_t)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        let mean: Vec<f32> = (0..hidden[0].len())
            .map(|d| hidden.iter().map(|token| token[d]).sum::<f32>() / hidden.len() as f32)
            .collect();
        assert!(cosine(&mean, fast) > 0.99999, "{}", cosine(&mean, fast));
    }
}

/// Regression: the base-model check compared the adapter's base with the model directory's
/// name, which for the Hugging Face cache is the snapshot hash, so every PEFT adapter was refused
/// for a model found there.
#[test]
fn peft_adapter_applies_to_its_model_in_the_hugging_face_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp
        .path()
        .join("hub/models--sentence-transformers--all-MiniLM-L6-v2");
    let snapshot = repo.join("snapshots/7dbbc90392e2f80f3d3c277d6e90027e55de9125");
    std::fs::create_dir_all(&snapshot).unwrap();
    for entry in std::fs::read_dir(real_model_dir("all-MiniLM-L6-v2")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::os::unix::fs::symlink(entry.path(), snapshot.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(
        repo.join("refs/main"),
        "7dbbc90392e2f80f3d3c277d6e90027e55de9125",
    )
    .unwrap();
    let cached = Embedder::builder("sentence-transformers/all-MiniLM-L6-v2")
        .with_locator(ModelLocator::empty().with_hf_cache(tmp.path().join("hub")))
        .with_normalize(false)
        .build()
        .unwrap();
    assert_eq!(
        cached.files().model_id(),
        "sentence-transformers/all-MiniLM-L6-v2"
    );
    let adapter =
        LoraAdapter::load(&reference_dir().join("peft_minilm_lora"), &Device::Cpu).unwrap();
    let adapted = cached.with_adapter(&adapter).unwrap();
    // Adapters fitted before repo ids were recorded name the snapshot folder.
    let mut older = adapter.clone();
    older.config.base_model_name_or_path = Some(snapshot.display().to_string());
    cached.with_adapter(&older).unwrap();
    let text = ["the adapter loads from the cache"];
    let from_cache = adapted.embed(&text, InputKind::Passage).unwrap();
    let from_dir = minilm_raw()
        .with_adapter(&adapter)
        .unwrap()
        .embed(&text, InputKind::Passage)
        .unwrap();
    assert!(cosine(&from_cache[0], &from_dir[0]) > 0.9999);
}

#[test]
fn mismatched_adapters_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let source = reference_dir().join("peft_minilm_lora");

    // Another base model.
    let other_base = tmp.path().join("other_base");
    copy_dir(&source, &other_base);
    let config = std::fs::read_to_string(other_base.join("adapter_config.json")).unwrap();
    std::fs::write(
        other_base.join("adapter_config.json"),
        config.replace(
            "sentence-transformers/all-MiniLM-L6-v2",
            "intfloat/multilingual-e5-small",
        ),
    )
    .unwrap();
    let adapter = LoraAdapter::load(&other_base, &Device::Cpu).unwrap();
    let err = minilm_raw()
        .with_adapter(&adapter)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("trained on `intfloat/multilingual-e5-small`"),
        "{err}"
    );

    // Wrong rank in the config.
    let wrong_rank = tmp.path().join("wrong_rank");
    copy_dir(&source, &wrong_rank);
    let config = std::fs::read_to_string(wrong_rank.join("adapter_config.json")).unwrap();
    std::fs::write(
        wrong_rank.join("adapter_config.json"),
        config.replace("\"r\": 4", "\"r\": 8"),
    )
    .unwrap();
    let err = LoraAdapter::load(&wrong_rank, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, AugurError::Adapter { .. }) && err.to_string().contains("r = 8"),
        "{err}"
    );

    // A target the model does not have: MiniLM has 6 layers, the adapter claims layer 9.
    let mut adapter = LoraAdapter::load(&source, &Device::Cpu).unwrap();
    let pair = adapter
        .pairs
        .remove("encoder.layer.5.attention.self.query")
        .unwrap();
    adapter
        .pairs
        .insert("encoder.layer.9.attention.self.query".into(), pair);
    let err = minilm_raw()
        .with_adapter(&adapter)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("encoder.layer.9.attention.self.query") && err.contains("6-layer"),
        "{err}"
    );

    // The e5 model has the same widths but a different base: refused by name.
    let e5 = Embedder::builder(
        real_model_dir("multilingual-e5-small")
            .display()
            .to_string(),
    )
    .with_locator(ModelLocator::empty())
    .build()
    .unwrap();
    let err = e5
        .with_adapter(&LoraAdapter::load(&source, &Device::Cpu).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("all-MiniLM-L6-v2"), "{err}");
}
