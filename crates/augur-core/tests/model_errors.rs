//! Model resolution and validation: every failure names the file, tensor or places searched.

mod support;

use augur_core::model::ModelOrigin;
use augur_core::{AugurError, Embedder, InputKind, ModelLocator};
use support::{write_tiny_model, TinySpec};

fn build(dir: &std::path::Path) -> Result<Embedder, AugurError> {
    Embedder::builder(dir.display().to_string())
        .with_locator(ModelLocator::empty())
        .build()
}

#[test]
fn not_found_lists_every_place_searched_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let locator = ModelLocator::empty()
        .with_models_dir(tmp.path().join("models"))
        .with_hf_cache(tmp.path().join("hub"));
    let err = locator.resolve("acme/sales-encoder").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AugurError::ModelNotFound { .. }));
    assert!(msg.contains("acme/sales-encoder (as a directory"), "{msg}");
    assert!(
        msg.contains(&format!(
            "{}",
            tmp.path().join("models/sales-encoder").display()
        )),
        "{msg}"
    );
    assert!(msg.contains("models--acme--sales-encoder"), "{msg}");
    assert!(msg.contains("models/fetch"), "{msg}");
    assert!(msg.contains("AUGUR_MODELS_DIR"), "{msg}");
}

#[test]
fn hugging_face_cache_layout_resolves_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("hub/models--acme--tiny");
    let snapshot = repo.join("snapshots/0123abcd");
    write_tiny_model(&snapshot, &TinySpec::default());
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();

    let locator = ModelLocator::empty().with_hf_cache(tmp.path().join("hub"));
    let files = locator.resolve("acme/tiny").unwrap();
    assert_eq!(files.origin, ModelOrigin::HfCache);
    assert_eq!(files.dir, snapshot);
    let embedder = Embedder::builder("acme/tiny")
        .with_locator(locator)
        .build()
        .unwrap();
    let v = embedder
        .embed_one("budget approved", InputKind::Passage)
        .unwrap();
    assert_eq!(v.len(), 8);
}

#[test]
fn models_dir_resolves_short_names_and_repo_ids() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(&tmp.path().join("tiny"), &TinySpec::default());
    let locator = ModelLocator::empty().with_models_dir(tmp.path());
    assert_eq!(
        locator.resolve("tiny").unwrap().origin,
        ModelOrigin::ModelsDir
    );
    assert_eq!(
        locator.resolve("acme/tiny").unwrap().dir,
        tmp.path().join("tiny")
    );
}

#[test]
fn download_is_off_by_default_and_says_how_to_enable_it() {
    let tmp = tempfile::tempdir().unwrap();
    let locator = ModelLocator::empty()
        .with_hf_cache(tmp.path())
        .with_allow_download(true);
    let err = locator.resolve("acme/absent").unwrap_err();
    if cfg!(feature = "download") {
        return; // with the feature a real download is attempted; not exercised offline
    }
    assert!(matches!(err, AugurError::DownloadDisabled { .. }), "{err}");
    assert!(err.to_string().contains("--features download"), "{err}");
}

#[test]
fn missing_tokenizer_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), &TinySpec::default());
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let err = build(tmp.path()).err().unwrap();
    assert!(
        matches!(&err, AugurError::MissingModelFile { file, .. } if file == "tokenizer.json"),
        "{err}"
    );
}

#[test]
fn pickle_weights_are_refused_with_a_conversion_hint() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), &TinySpec::default());
    std::fs::rename(
        tmp.path().join("model.safetensors"),
        tmp.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let msg = build(tmp.path()).err().unwrap().to_string();
    assert!(
        msg.contains("pytorch_model.bin") && msg.contains("only safetensors"),
        "{msg}"
    );
}

#[test]
fn misshapen_tensor_is_named_with_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        misshapen: Some("encoder.layer.0.attention.self.key.weight"),
        ..TinySpec::default()
    };
    write_tiny_model(tmp.path(), &spec);
    let err = build(tmp.path()).err().unwrap();
    match &err {
        AugurError::ShapeMismatch {
            tensor,
            expected,
            found,
            file,
        } => {
            assert_eq!(tensor, "encoder.layer.0.attention.self.key.weight");
            assert_eq!(expected, &vec![8, 8]);
            assert_eq!(found, &vec![9, 8]);
            assert!(file.ends_with("model.safetensors"));
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        missing: Some("encoder.layer.0.output.LayerNorm.bias"),
        ..TinySpec::default()
    };
    write_tiny_model(tmp.path(), &spec);
    let err = build(tmp.path()).err().unwrap();
    assert!(
        matches!(&err, AugurError::MissingTensor { tensor, .. } if tensor == "encoder.layer.0.output.LayerNorm.bias"),
        "{err}"
    );
}

#[test]
fn tokenizer_larger_than_embedding_matrix_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(
        tmp.path(),
        &TinySpec {
            vocab_size: 5,
            ..TinySpec::default()
        },
    );
    let err = build(tmp.path()).err().unwrap();
    match &err {
        AugurError::VocabMismatch {
            tokenizer_vocab,
            model_vocab,
            file,
        } => {
            assert_eq!((*tokenizer_vocab, *model_vocab), (8, 5));
            assert!(file.ends_with("tokenizer.json"));
        }
        other => panic!("expected VocabMismatch, got {other}"),
    }
}

#[test]
fn unsupported_activation_names_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(
        tmp.path(),
        &TinySpec {
            hidden_act: "swish",
            ..TinySpec::default()
        },
    );
    let msg = build(tmp.path()).err().unwrap().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("swish"),
        "{msg}"
    );
}

/// Regression: an XLM-RoBERTa config (e.g. multilingual-e5-base) loaded and embedded with
/// positions counted from 0 instead of after the padding id: wrong vectors, no error.
#[test]
fn roberta_family_models_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), &TinySpec::default());
    let config = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        config.replace("\"bert\"", "\"xlm-roberta\""),
    )
    .unwrap();
    let msg = build(tmp.path()).err().unwrap().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("model_type `xlm-roberta` is not supported"),
        "{msg}"
    );
}

#[test]
fn corrupt_config_reports_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), &TinySpec::default());
    std::fs::write(
        tmp.path().join("config.json"),
        "{\"hidden_size\": 8,\n  \"vocab_size\": }",
    )
    .unwrap();
    let msg = build(tmp.path()).err().unwrap().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("line 2"),
        "{msg}"
    );
}
