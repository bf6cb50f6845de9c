//! The measure of signal extraction: micro-F1 on the test half of the annotated corpus
//! (`fixtures/signals/gold_*.jsonl`), with the built-in pack and the default model.

use std::path::{Path, PathBuf};

use augur_core::{Embedder, ModelLocator};
use augur_signals::eval::{evaluate, load_gold, EvalReport, GoldNote};
use augur_signals::SignalExtractor;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gold(split: &str) -> Vec<GoldNote> {
    ["gold_zh.jsonl", "gold_en.jsonl"]
        .iter()
        .flat_map(|f| load_gold(&repo().join("fixtures/signals").join(f)).unwrap())
        .filter(|n| n.split == split)
        .collect()
}

fn extractor() -> SignalExtractor {
    let dir = repo().join("models/multilingual-e5-small");
    assert!(dir.join("model.safetensors").is_file(), "run `models/fetch` first");
    let embedder = Embedder::builder(dir.display().to_string()).with_locator(ModelLocator::empty()).build().unwrap();
    SignalExtractor::builder(embedder).build().unwrap()
}

fn print_report(name: &str, r: &EvalReport) {
    println!("== {name}: {} notes", r.notes);
    println!("{:<26} {:>5} {:>5} {:>5} {:>5} {:>5}", "signal", "P", "R", "F1", "gold", "pred");
    for (id, c) in &r.per_signal {
        println!("{id:<26} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5}", c.precision(), c.recall(), c.f1(), c.gold, c.predictions);
    }
    for (lang, c) in &r.per_language {
        println!("lang {lang:<21} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5}", c.precision(), c.recall(), c.f1(), c.gold, c.predictions);
    }
    let m = r.micro;
    println!("{:<26} {:>5.2} {:>5.2} {:>5.2} {:>5} {:>5}", "MICRO", m.precision(), m.recall(), m.f1(), m.gold, m.predictions);
}

#[test]
fn micro_f1_on_the_test_half_reaches_the_bar() {
    let extractor = extractor();
    let test = gold("test");
    assert!(test.len() >= 100, "the test half has {} notes", test.len());
    let notes: Vec<_> = test.iter().map(GoldNote::to_note).collect();
    let predicted = extractor.extract_batch(&notes).unwrap();
    let report = evaluate(&test, &predicted);
    print_report("test half", &report);
    assert!(report.micro.f1() >= 0.80, "micro-F1 {:.3} < 0.80", report.micro.f1());
}
