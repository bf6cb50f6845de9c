//! LoRA fine-tuning mechanics on the real all-MiniLM-L6-v2: training starts from the base model
//! exactly (B = 0), the loss falls, the adapter moves, and save → load gives the same predictions.

mod support;

use augur_core::finetune::{FineTuneConfig, LabelledText, LearningRateSchedule, TextClassifier};
use augur_core::{Embedder, ModelLocator};
use support::real_model_dir;

fn examples() -> Vec<LabelledText> {
    let buy = [
        "The budget for the upgrade is approved",
        "Finance signed off the purchase",
        "They want a quote for forty seats",
        "Procurement issued the purchase order",
        "Their CEO approved the project",
        "They asked for pricing on the enterprise plan",
    ];
    let churn = [
        "They will not renew the contract",
        "The customer is moving to a competitor",
        "They want to cancel at the end of the term",
        "Support has been terrible and they are leaving",
        "They asked how to export their data before switching",
        "Our sponsor left and the renewal is off",
    ];
    buy.iter()
        .map(|t| (t, "buying"))
        .chain(churn.iter().map(|t| (t, "churn")))
        .map(|(t, l)| LabelledText {
            text: t.to_string(),
            labels: vec![l.to_string()],
        })
        .collect()
}

fn minilm() -> Embedder {
    Embedder::builder(real_model_dir("all-MiniLM-L6-v2").display().to_string())
        .with_locator(ModelLocator::empty())
        .build()
        .unwrap()
}

#[test]
fn training_lowers_the_loss_and_the_result_round_trips() {
    let base = minilm();
    let train = examples();
    let config = FineTuneConfig {
        epochs: 6,
        batch_size: 4,
        learning_rate: 5e-3,
        max_tokens: 32,
        seed: 3,
        ..FineTuneConfig::default()
    };
    let mut losses = Vec::new();
    let (classifier, adapter, report) =
        TextClassifier::fit(&base, &train, &[], &config, |p| losses.push(p.loss)).unwrap();
    assert_eq!(report.epoch_loss.len(), 6);
    assert!(
        report.epoch_loss[5] < report.epoch_loss[0],
        "loss must fall: {:?}",
        report.epoch_loss
    );
    assert!(classifier.accuracy(&train).unwrap() >= 0.99, "{report:?}");
    let moved: f32 = adapter
        .pairs
        .values()
        .map(|p| {
            p.b.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .sum();
    assert!(
        moved > 0.0,
        "LoRA B starts at zero and must have been trained"
    );
    assert_eq!(adapter.config.target_modules, vec!["query", "value"]);

    let tmp = tempfile::tempdir().unwrap();
    adapter.save(tmp.path()).unwrap();
    classifier.save_head(tmp.path()).unwrap();
    let reloaded = TextClassifier::load(&base, tmp.path()).unwrap();
    let texts = [
        "They approved the budget yesterday",
        "They are switching to another vendor",
    ];
    let a = classifier.predict(&texts).unwrap();
    let b = reloaded.predict(&texts).unwrap();
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    assert_eq!(reloaded.decide(&b[0]), vec!["buying"]);
    assert_eq!(reloaded.decide(&b[1]), vec!["churn"]);

    // Regression: a label map that does not match the head (edited, or from another fit) loaded
    // and then panicked on the first prediction.
    let labels_path = tmp.path().join("labels.json");
    let labels = std::fs::read_to_string(&labels_path).unwrap();
    std::fs::write(
        &labels_path,
        labels.replace("\"churn\"", "\"churn\", \"upsell\""),
    )
    .unwrap();
    let err = TextClassifier::load(&base, tmp.path())
        .err()
        .expect("a head for 2 labels with 3 labels is refused")
        .to_string();
    assert!(
        err.contains("head.safetensors") && err.contains("expected weight [3, 384]"),
        "{err}"
    );
}

#[test]
fn top_layer_adapters_train_from_cached_states_and_keep_peft_layers() {
    let base = minilm();
    let train = examples();
    let config = FineTuneConfig {
        epochs: 6,
        batch_size: 4,
        learning_rate: 5e-3,
        max_tokens: 32,
        seed: 5,
        targets: vec!["query".into(), "value".into(), "intermediate.dense".into()],
        layers_to_transform: Some(vec![4, 5]),
        ..FineTuneConfig::default()
    };
    let (classifier, adapter, report) =
        TextClassifier::fit(&base, &train, &[], &config, |_| {}).unwrap();
    assert!(
        report.epoch_loss[5] < report.epoch_loss[0],
        "loss must fall: {:?}",
        report.epoch_loss
    );
    assert!(classifier.accuracy(&train).unwrap() >= 0.99, "{report:?}");
    let layers: std::collections::BTreeSet<&str> = adapter
        .pairs
        .keys()
        .map(|k| k.split('.').nth(2).unwrap())
        .collect();
    assert_eq!(layers.into_iter().collect::<Vec<_>>(), vec!["4", "5"]);
    assert_eq!(adapter.pairs.len(), 6);

    let tmp = tempfile::tempdir().unwrap();
    adapter.save(tmp.path()).unwrap();
    classifier.save_head(tmp.path()).unwrap();
    let config_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config_json["layers_to_transform"],
        serde_json::json!([4, 5])
    );
    // PEFT also writes one layer as a bare number; a listed layer set that leaves out a layer
    // the weights cover is refused, naming both.
    let mut single = config_json.clone();
    single["layers_to_transform"] = serde_json::json!(5);
    let other = tempfile::tempdir().unwrap();
    adapter.save(other.path()).unwrap();
    std::fs::write(
        other.path().join("adapter_config.json"),
        serde_json::to_string(&single).unwrap(),
    )
    .unwrap();
    let err = augur_core::LoraAdapter::load(other.path(), &candle_core::Device::Cpu)
        .expect_err("pairs in layer 4 are not in layers_to_transform 5")
        .to_string();
    assert!(err.contains("layer 4") && err.contains("[5]"), "{err}");
    // The states the classifier was trained on (cached below layer 4) are the states it predicts
    // with (full forward of the merged model): its training accuracy survives the reload.
    let reloaded = TextClassifier::load(&base, tmp.path()).unwrap();
    assert!(reloaded.accuracy(&train).unwrap() >= 0.99);
}

#[test]
fn adapting_a_layer_the_model_lacks_is_refused() {
    let base = minilm();
    let config = FineTuneConfig {
        layers_to_transform: Some(vec![6]),
        ..FineTuneConfig::default()
    };
    let err = TextClassifier::fit(&base, &examples(), &[], &config, |_| {})
        .err()
        .expect("layer 6 of a 6-layer model must be refused")
        .to_string();
    assert!(
        err.contains("cannot adapt layer 6") && err.contains("0..=5"),
        "{err}"
    );
}

#[test]
fn a_linear_schedule_changes_the_steps_and_is_reported() {
    let base = minilm();
    let train = examples();
    let fit = |schedule| {
        let config = FineTuneConfig {
            epochs: 2,
            batch_size: 4,
            learning_rate: 5e-3,
            max_tokens: 32,
            seed: 7,
            layers_to_transform: Some(vec![5]),
            schedule,
            ..FineTuneConfig::default()
        };
        let (_, adapter, report) =
            TextClassifier::fit(&base, &train, &[], &config, |_| {}).unwrap();
        let b: Vec<f32> = adapter
            .pairs
            .values()
            .flat_map(|p| p.b.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (b, report)
    };
    let (constant, _) = fit(LearningRateSchedule::Constant);
    let (linear, report) = fit(LearningRateSchedule::Linear);
    assert_eq!(report.config.schedule, LearningRateSchedule::Linear);
    assert_ne!(constant, linear, "the schedule must reach the optimiser");
    let moved = |b: &[f32]| b.iter().map(|x| x.abs()).sum::<f32>();
    assert!(
        moved(&linear) < moved(&constant),
        "decayed steps move B less: {} vs {}",
        moved(&linear),
        moved(&constant)
    );
}

/// Regression: contrastive training looked up positives by an example's first label, so an
/// example without labels (a "none of these" row) panicked; positives now share the whole label
/// set, and multi-label examples pair with examples of the same set.
#[test]
fn contrastive_training_accepts_unlabelled_and_multi_label_examples() {
    let base = minilm();
    let mut train = examples();
    train[0].labels.clear();
    train[1].labels.push("churn".into());
    let config = FineTuneConfig {
        method: augur_core::finetune::FitMethod::Contrastive,
        epochs: 1,
        batch_size: 4,
        max_tokens: 32,
        layers_to_transform: Some(FineTuneConfig::top_layers(1, 6)),
        ..FineTuneConfig::default()
    };
    let (_, _, report) = TextClassifier::fit(&base, &train, &[], &config, |_| {}).unwrap();
    assert_eq!(report.labels, ["buying", "churn"]);
    assert!(report.epoch_loss[0].is_finite(), "{report:?}");
}
