//! Fits a LoRA adapter + multi-label head on the built-in pack's training texts (its examples,
//! hard negatives and the clauses of its labelled notes — the TRAIN half of the annotated corpus)
//! and writes it where `augur extract --adapter DIR` reads it.
//!
//! cargo run -p augur-signals --example fit_signal_adapter -- OUT_DIR [--top-layers 4]
//!     [--epochs N] [--lr R] [--targets query,value] [--seed 42] [--fold 0|1]
//!
//! Unset flags come from `FineTuneConfig::recommended` (what `augur fit` uses): the texts are
//! multi-label with negatives, so supervised. Clauses are cut at 64 tokens.
//!
//! `--fold K` trains on fold K of the train half only (every other note, as
//! `examples/tune_signals.rs` splits it), for cross-validating the adapter there.

use std::path::PathBuf;

use augur_core::finetune::{FineTuneConfig, SeededRng, TextClassifier};
use augur_core::{Embedder, ModelLocator};
use augur_signals::eval::{load_gold, GoldNote};
use augur_signals::extract::pack_examples;
use augur_signals::{ClauseSegmenter, SignalPack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join("../..");
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: fit_signal_adapter OUT_DIR [flags]")?,
    );
    let mut top_layers: Option<usize> = None;
    let mut epochs: Option<usize> = None;
    let mut learning_rate: Option<f64> = None;
    let mut targets: Option<Vec<String>> = None;
    let mut seed = FineTuneConfig::default().seed;
    let mut fold: Option<usize> = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--top-layers" => top_layers = Some(value.parse()?),
            "--epochs" => epochs = Some(value.parse()?),
            "--lr" => learning_rate = Some(value.parse()?),
            "--targets" => targets = Some(value.split(',').map(str::to_string).collect()),
            "--seed" => seed = value.parse()?,
            "--fold" => {
                fold = Some(match value.as_str() {
                    "0" => 0,
                    "1" => 1,
                    other => return Err(format!("--fold {other}: expected 0 or 1").into()),
                })
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let mut pack = SignalPack::builtin();
    if let Some(fold) = fold {
        pack.labelled_notes = train_fold(&root, fold)?;
    }
    let mut examples = pack_examples(&pack, &ClauseSegmenter::default());
    SeededRng::new(seed).shuffle(&mut examples);
    let base = Embedder::builder(
        root.join("models/multilingual-e5-small")
            .display()
            .to_string(),
    )
    .with_locator(ModelLocator::empty())
    .build()?;
    let layers = base.encoder().config().num_hidden_layers;
    let recipe = FineTuneConfig::recommended(&examples, layers);
    let config = FineTuneConfig {
        epochs: epochs.unwrap_or(recipe.epochs),
        learning_rate: learning_rate.unwrap_or(recipe.learning_rate),
        targets: targets.unwrap_or(recipe.targets),
        layers_to_transform: match top_layers {
            Some(n) => Some(FineTuneConfig::top_layers(n.max(1), layers)),
            None => recipe.layers_to_transform,
        },
        max_tokens: 64,
        seed,
        ..recipe
    };
    let labelled = examples.iter().filter(|e| !e.labels.is_empty()).count();
    eprintln!(
        "{} training texts ({labelled} with a signal), {} signals; {:?}, {} epochs, lr {}",
        examples.len(),
        pack.signals.len(),
        config.method,
        config.epochs,
        config.learning_rate
    );
    let started = std::time::Instant::now();
    let (classifier, adapter, report) = TextClassifier::fit(&base, &examples, &[], &config, |p| {
        if p.step % 20 == 0 || p.step == p.steps {
            eprintln!(
                "epoch {} step {}/{} loss {:.4} ({:.0}s)",
                p.epoch,
                p.step,
                p.steps,
                p.loss,
                started.elapsed().as_secs_f64()
            );
        }
    })?;
    adapter.save(&out)?;
    classifier.save_head(&out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!("wrote {} in {:.0}s", out.display(), report.seconds);
    Ok(())
}

/// Fold `fold` (0 or 1) of the train half of the annotated corpus, split as `tune_signals` splits it.
fn train_fold(
    root: &std::path::Path,
    fold: usize,
) -> Result<Vec<GoldNote>, Box<dyn std::error::Error>> {
    let mut train = Vec::new();
    for file in ["gold_zh.jsonl", "gold_en.jsonl"] {
        train.extend(
            load_gold(&root.join("fixtures/signals").join(file))?
                .into_iter()
                .filter(|n| n.split == "train"),
        );
    }
    Ok(train.into_iter().skip(fold).step_by(2).collect())
}
