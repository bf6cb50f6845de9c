//! A classifier fitted by `augur fit` plugged into the extractor: its adapter embeds the clauses
//! and its head decides the signals its labels name (real multilingual-e5-small weights).

mod common;

use augur_core::finetune::{FineTuneConfig, LabelledText, TextClassifier};
use augur_core::Embedder;
use augur_signals::{Note, SignalExtractor, SignalPack};

/// The pack's first signal (`common::tiny_pack` adds `complaint`).
const SIGNAL: &str = r#"
[[signal]]
id = "budget_approved"
kind = "buying"
name_zh = "预算已批复"
name_en = "Budget approved"
examples = ["The CFO signed off on the budget", "预算已经批下来了"]
negatives = ["The budget is not approved yet", "预算还没批"]
"#;

fn fit(base: &Embedder, labels: [&str; 2]) -> TextClassifier {
    let texts = [
        ("Finance approved the budget for the new line", labels[0]),
        ("The board signed off the capex yesterday", labels[0]),
        ("集团批复了二期预算", labels[0]),
        ("追加预算申请通过了", labels[0]),
        ("We met them at the trade fair", labels[1]),
        ("下周三安排技术交流", labels[1]),
        ("They use SAP for finance", labels[1]),
        ("客户在华南有三个仓库", labels[1]),
    ];
    let examples: Vec<LabelledText> = texts
        .iter()
        .map(|(t, l)| LabelledText {
            text: t.to_string(),
            labels: vec![l.to_string()],
        })
        .collect();
    let config = FineTuneConfig {
        epochs: 2,
        batch_size: 4,
        learning_rate: 1e-3,
        max_tokens: 32,
        layers_to_transform: Some(vec![11]),
        ..FineTuneConfig::default()
    };
    TextClassifier::fit(base, &examples, &[], &config, |_| {})
        .unwrap()
        .0
}

fn pack() -> SignalPack {
    common::tiny_pack(SIGNAL)
}

#[test]
fn the_fitted_head_decides_the_signals_its_labels_name() {
    let base = common::e5();
    let classifier = fit(&base, ["budget_approved", "other"]);
    let clause = "The CFO approved the budget on Monday";
    let expected = classifier.predict(&[clause]).unwrap()[0].clone();
    let label = classifier
        .labels
        .iter()
        .position(|l| l == "budget_approved")
        .unwrap();
    let extractor = SignalExtractor::builder(base)
        .with_pack(pack())
        .with_cache_dir(None)
        .with_threshold(0.0)
        .with_margin(1.0)
        .with_classifier(classifier)
        .build()
        .unwrap();
    assert_eq!(extractor.unused_classifier_labels(), ["other"]);
    let found = extractor.extract(&Note::new("n1", clause)).unwrap();
    let hit = found
        .hits
        .iter()
        .find(|h| h.signal == "budget_approved")
        .expect("threshold 0 keeps every signal");
    assert!(
        (hit.probability - expected[label]).abs() < 1e-4,
        "the extractor's probability {} must be the fitted head's {}",
        hit.probability,
        expected[label]
    );
}

/// The error of building an extractor around a single-label classifier fitted on `labels`.
fn refusal(labels: [&str; 2]) -> String {
    let base = common::e5();
    let classifier = fit(&base, labels);
    assert!(!classifier.multi_label);
    match SignalExtractor::builder(base)
        .with_pack(pack())
        .with_cache_dir(None)
        .with_classifier(classifier)
        .build()
    {
        Ok(_) => panic!("a classifier labelled {labels:?} must be refused"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_head_whose_labels_name_no_signal_is_refused() {
    let err = refusal(["alpha", "beta"]);
    assert!(
        err.contains("alpha") && err.contains("signal id") && err.contains("budget_approved"),
        "{err}"
    );
}

/// Regression: a resumed batch job compared only the command-line flags, so editing the pack file
/// or refitting the adapter in place between a kill and `--resume` mixed results of two setups.
/// The extractor's fingerprint (part of the resume check) now covers pack, adapter and head.
#[test]
fn the_fingerprint_changes_with_the_pack_and_the_adapter() {
    let base = common::e5();
    let build = |pack: SignalPack, classifier: Option<TextClassifier>| {
        let mut builder = SignalExtractor::builder(base.clone())
            .with_pack(pack)
            .with_cache_dir(None);
        if let Some(classifier) = classifier {
            builder = builder.with_classifier(classifier);
        }
        builder.build().unwrap().fingerprint().to_string()
    };
    let plain = build(pack(), None);
    assert_eq!(plain, build(pack(), None), "same setup, same fingerprint");
    let mut edited = pack();
    edited.signals[0]
        .examples
        .push("Budget is signed off".into());
    assert_ne!(plain, build(edited, None), "an edited pack changes it");
    let mut threshold = pack();
    threshold.signals[1].threshold = Some(0.55);
    assert_ne!(
        plain,
        build(threshold, None),
        "a signal's own threshold changes it"
    );
    let adapted = build(pack(), Some(fit(&base, ["budget_approved", "other"])));
    assert_ne!(plain, adapted, "an adapter changes it");
}

/// A single-label (softmax) head whose every label is a signal sums to 1 on every clause, so
/// one signal would always fire: refused until the examples include a "none" label.
#[test]
fn a_single_label_head_without_a_none_label_is_refused() {
    let err = refusal(["budget_approved", "complaint"]);
    assert!(
        err.contains("single-label") && err.contains("`none`"),
        "{err}"
    );
}
