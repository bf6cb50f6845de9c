//! What a clause's features are made of: the last and a middle layer of the encoder, the clauses
//! around it, and lexical n-grams (real multilingual-e5-small weights, a two-signal pack).

mod common;

use augur_signals::{Note, SignalExtractor, SignalExtractorBuilder};

/// The pack's first signal (`common::tiny_pack` adds `complaint`).
const SIGNAL: &str = r#"
[[signal]]
id = "next_step_scheduled"
kind = "info"
name_zh = "已约下一步"
name_en = "Next step scheduled"
examples = ["Demo booked for Thursday 2pm", "下周四下午两点去做技术交流"]
negatives = ["We have no follow-up planned", "还没约时间"]
"#;

fn builder() -> SignalExtractorBuilder {
    SignalExtractor::builder(common::e5())
        .with_pack(common::tiny_pack(SIGNAL))
        .with_threshold(0.0)
        .with_margin(1.0)
}

/// Probability of `signal` on the clause "两点可以" at the end of `text`.
fn probability_of_last_clause(extractor: &SignalExtractor, text: &str, signal: &str) -> f32 {
    let found = extractor.extract(&Note::new("n", text)).unwrap();
    let last = found.hits.iter().map(|h| h.char_start).max().unwrap();
    found
        .hits
        .iter()
        .find(|h| h.char_start == last && h.signal == signal)
        .unwrap()
        .probability
}

const SCHEDULING: &str = "约个时间过来演示，周四行吗？两点可以";
const GRUMBLING: &str = "你们的响应太慢了，已经投诉过了。两点可以";

#[test]
fn the_clauses_around_a_clause_change_its_probabilities() {
    let with_context = builder().build().unwrap();
    let a = probability_of_last_clause(&with_context, SCHEDULING, "next_step_scheduled");
    let b = probability_of_last_clause(&with_context, GRUMBLING, "next_step_scheduled");
    assert!(
        a > b,
        "after a scheduling question {a:.3} must beat after a complaint {b:.3}"
    );

    let without = builder().with_context_weight(0.0).build().unwrap();
    let a = probability_of_last_clause(&without, SCHEDULING, "next_step_scheduled");
    let b = probability_of_last_clause(&without, GRUMBLING, "next_step_scheduled");
    assert_eq!(a, b, "without context the same clause scores the same");
}

#[test]
fn a_negative_or_missing_context_weight_is_refused() {
    for weight in [-0.5, f32::NAN] {
        let err = builder()
            .with_context_weight(weight)
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must be 0 (no context) or positive"), "{err}");
    }
}

#[test]
fn the_middle_layer_is_configurable_and_checked() {
    let last_only = builder().with_middle_layer(None).build().unwrap();
    let default = builder().build().unwrap();
    let p = |e: &SignalExtractor| probability_of_last_clause(e, SCHEDULING, "next_step_scheduled");
    assert_ne!(p(&last_only), p(&default));
    assert_ne!(last_only.fingerprint(), default.fingerprint());

    for depth in [0, 12, 13] {
        let err = builder()
            .with_middle_layer(Some(depth))
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("middle layer {depth} must lie between 1 and 11")),
            "{err}"
        );
    }
}

/// Regression: a NaN threshold let every clause's top signal fire, and a NaN or negative margin
/// switched the margin filter off or suppressed every hit, without an error.
#[test]
fn threshold_and_margin_are_checked() {
    for threshold in [f32::NAN, -0.1, 1.5] {
        let err = builder()
            .with_threshold(threshold)
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("must be a probability between 0 and 1"),
            "{err}"
        );
    }
    for margin in [f32::NAN, -0.1] {
        let err = builder()
            .with_margin(margin)
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("must be 0 (only the most likely signal)"),
            "{err}"
        );
    }
}
