//! Chooses the extractor's settings without touching the test half: 2-fold cross-validation on
//! the TRAIN half of the annotated corpus (train on the pack + one fold, score the other).
//!
//! cargo run -p augur-signals --example tune_signals -- [--adapters DIR0,DIR1] [GOLD...]
//!
//! `--adapters` embeds each held-out fold with the LoRA adapter fitted on the other fold
//! (`fit_signal_adapter --fold K` writes the one for fold K): DIR0 scores fold 1, DIR1 fold 0.
//! `fit_signal_adapter` always folds the default gold files: use `--adapters` with those only.

use std::path::PathBuf;

use augur_core::encoder::LoraAdapter;
use augur_core::{Embedder, ModelLocator};
use augur_signals::classify::FitSettings;
use augur_signals::eval::{evaluate, load_gold, GoldNote};
use augur_signals::{NoteSignals, SignalExtractor, SignalPack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join("../..");
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let adapters: Option<Vec<PathBuf>> = match args.iter().position(|a| a == "--adapters") {
        Some(at) => {
            let dirs: Vec<PathBuf> = args
                .get(at + 1)
                .ok_or("--adapters needs DIR0,DIR1")?
                .split(',')
                .map(PathBuf::from)
                .collect();
            if dirs.len() != 2 {
                return Err("--adapters needs two folders, DIR0,DIR1".into());
            }
            args.drain(at..at + 2);
            Some(dirs)
        }
        None => None,
    };
    let mut files: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
    if files.is_empty() {
        files = vec![
            root.join("fixtures/signals/gold_zh.jsonl"),
            root.join("fixtures/signals/gold_en.jsonl"),
        ];
    }
    let mut train: Vec<GoldNote> = Vec::new();
    for f in &files {
        train.extend(load_gold(f)?.into_iter().filter(|n| n.split == "train"));
    }
    let folds: [Vec<GoldNote>; 2] = [
        train.iter().step_by(2).cloned().collect(),
        train.iter().skip(1).step_by(2).cloned().collect(),
    ];
    let model = root
        .join("models/multilingual-e5-small")
        .display()
        .to_string();
    let thresholds = [0.5f32, 0.6, 0.7, 0.8, 0.9];
    let signal_ids = SignalPack::builtin().signal_ids();
    for l2 in [0.1f32] {
        let mut pooled: Vec<Vec<(GoldNote, NoteSignals)>> = Vec::new();
        for held in 0..2 {
            let mut pack = SignalPack::builtin();
            pack.labelled_notes = folds[1 - held].clone();
            let mut embedder = Embedder::builder(model.clone())
                .with_locator(ModelLocator::empty())
                .build()?;
            if let Some(dirs) = &adapters {
                let adapter = LoraAdapter::load(&dirs[1 - held], embedder.encoder().device())?;
                embedder = embedder.with_adapter(&adapter)?;
            }
            let extractor = SignalExtractor::builder(embedder)
                .with_pack(pack)
                .with_threshold(0.3)
                .with_fit_settings(FitSettings {
                    l2,
                    ..FitSettings::default()
                })
                .build()?;
            let notes: Vec<_> = folds[held].iter().map(GoldNote::to_note).collect();
            let found = extractor.extract_batch(&notes)?;
            pooled.push(folds[held].iter().cloned().zip(found).collect());
        }
        for t in thresholds {
            for margin in [1.0f32, 0.2, 0.1] {
                let (gold, predicted): (Vec<GoldNote>, Vec<NoteSignals>) = pooled
                    .iter()
                    .flat_map(|pairs| pairs.iter().cloned())
                    .map(|(g, mut p)| {
                        let best: std::collections::BTreeMap<usize, f32> =
                            p.hits.iter().fold(Default::default(), |mut m, h| {
                                let e = m.entry(h.char_start).or_insert(0.0f32);
                                *e = e.max(h.probability);
                                m
                            });
                        p.hits.retain(|h| {
                            h.probability >= t && h.probability >= best[&h.char_start] - margin
                        });
                        (g, p)
                    })
                    .unzip();
                let r = evaluate(&gold, &predicted, &signal_ids);
                println!(
                    "l2 {l2:<5} threshold {t:.2} margin {margin:.1}: P {:.3} R {:.3} micro-F1 {:.3}",
                    r.micro.precision(),
                    r.micro.recall(),
                    r.micro.f1()
                );
            }
        }
    }
    Ok(())
}
