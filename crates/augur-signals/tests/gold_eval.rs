//! The measure of signal extraction: micro-F1 on the test half of the annotated corpus
//! (`fixtures/signals/gold_*.jsonl`), with the built-in pack and the default model.

mod common;

use augur_signals::eval::{evaluate, load_gold, EvalReport, GoldNote};
use augur_signals::SignalExtractor;

fn gold(split: &str) -> Vec<GoldNote> {
    ["gold_zh.jsonl", "gold_en.jsonl"]
        .iter()
        .flat_map(|f| load_gold(&common::repo().join("fixtures/signals").join(f)).unwrap())
        .filter(|n| n.split == split)
        .collect()
}

fn extractor() -> SignalExtractor {
    SignalExtractor::builder(common::e5()).build().unwrap()
}

fn print_report(name: &str, r: &EvalReport) {
    println!("== {name}: {} notes", r.notes);
    println!(
        "{:<26} {:>5} {:>5} {:>5} {:>5} {:>5}",
        "signal", "P", "R", "F1", "gold", "pred"
    );
    for (id, c) in &r.per_signal {
        println!(
            "{id:<26} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5}",
            c.precision(),
            c.recall(),
            c.f1(),
            c.gold,
            c.predictions
        );
    }
    for (lang, c) in &r.per_language {
        println!(
            "lang {lang:<21} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5}",
            c.precision(),
            c.recall(),
            c.f1(),
            c.gold,
            c.predictions
        );
    }
    let m = r.micro;
    println!(
        "{:<26} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5}",
        "MICRO",
        m.precision(),
        m.recall(),
        m.f1(),
        m.gold,
        m.predictions
    );
}

/// The bar is micro-F1 ≥ 0.80; measured on 2026-12-05 with the built-in pack and
/// multilingual-e5-small: 0.741 (P 0.73, R 0.76; en 0.77, zh 0.74, mixed 0.69). Settings were chosen
/// by 2-fold cross-validation on the train half (`examples/tune_signals.rs`), never on this half.
/// Until the bar is met, this guards against regressions below the measured level (the score
/// moves by about ±0.7 points with float-level changes of the embeddings).
const MICRO_F1_FLOOR: f64 = 0.72;

#[test]
fn micro_f1_on_the_test_half_does_not_regress() {
    let extractor = extractor();
    let test = gold("test");
    assert!(test.len() >= 100, "the test half has {} notes", test.len());
    let notes: Vec<_> = test.iter().map(GoldNote::to_note).collect();
    let predicted = extractor.extract_batch(&notes).unwrap();
    let report = evaluate(&test, &predicted, &extractor.pack().signal_ids());
    print_report("test half", &report);
    assert!(
        report.micro.f1() >= MICRO_F1_FLOOR,
        "micro-F1 {:.3} < {MICRO_F1_FLOOR}",
        report.micro.f1()
    );
}

#[test]
fn negations_and_hypotheticals_do_not_fire() {
    let extractor = extractor();
    let cases = [
        ("预算还没批下来，要等董事会", "budget_approved"),
        (
            "We are not looking at other vendors right now.",
            "competitor_evaluation",
        ),
        (
            "If the budget were approved we would start in May.",
            "budget_approved",
        ),
        ("目前没有考虑其他厂家", "competitor_evaluation"),
    ];
    for (text, signal) in cases {
        let found = extractor
            .extract(&augur_signals::Note::new("n", text))
            .unwrap();
        assert!(
            found.hits.iter().all(|h| h.signal != signal),
            "{text:?} must not fire {signal}: {:?}",
            found.hits
        );
    }
    let positive = extractor
        .extract(&augur_signals::Note::new("n", "客户确认产线升级预算已批复"))
        .unwrap();
    assert!(
        positive.hits.iter().any(|h| h.signal == "budget_approved"),
        "{:?}",
        positive.hits
    );
}
