//! `augur eval-signals`: precision / recall / F1 of the extractor against annotated notes.

use std::path::PathBuf;

use anyhow::Result;
use augur_signals::eval::{evaluate, load_gold, EvalReport, GoldNote};
use clap::ValueEnum;

use crate::commands::signals::{build_extractor, PackArgs};
use crate::commands::ModelArgs;

/// Precision / recall / F1 of signal extraction against an annotated corpus.
///
/// The corpus is JSON lines: id, text, lang, split, signals with char spans. A prediction
/// counts as correct when it overlaps a gold span of the same signal.
///
/// Example: augur eval-signals fixtures/signals/gold_zh.jsonl fixtures/signals/gold_en.jsonl
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EvalSignalsArgs {
    /// Gold files.
    #[arg(required = true)]
    pub gold: Vec<PathBuf>,
    /// Which notes to score, by their `split` field.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pack: PackArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `--split`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitArg {
    /// Held-out notes (the measure).
    Test,
    /// Notes the built-in pack trains on.
    Train,
    /// Everything.
    All,
}

/// Runs `augur eval-signals`.
pub fn run(args: EvalSignalsArgs) -> Result<()> {
    let mut gold: Vec<GoldNote> = Vec::new();
    for path in &args.gold {
        gold.extend(load_gold(path)?);
    }
    let wanted = match args.split {
        SplitArg::Test => Some("test"),
        SplitArg::Train => Some("train"),
        SplitArg::All => None,
    };
    gold.retain(|n| wanted.is_none_or(|w| n.split == w));
    let extractor = build_extractor(&args.model, &args.pack)?;
    let notes: Vec<_> = gold.iter().map(GoldNote::to_note).collect();
    let predicted = extractor.extract_batch(&notes)?;
    let report = evaluate(&gold, &predicted);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// The report as a table.
pub fn print_report(r: &EvalReport) {
    println!("{} notes", r.notes);
    println!(
        "{:<26} {:>6} {:>6} {:>6} {:>5} {:>5}",
        "signal", "P", "R", "F1", "gold", "pred"
    );
    let line = |name: &str, c: &augur_signals::eval::Counts| {
        println!(
            "{name:<26} {:>6.3} {:>6.3} {:>6.3} {:>5} {:>5}",
            c.precision(),
            c.recall(),
            c.f1(),
            c.gold,
            c.predictions
        )
    };
    for (id, c) in &r.per_signal {
        line(id, c);
    }
    println!();
    for (lang, c) in &r.per_language {
        line(&format!("language {lang}"), c);
    }
    line("micro", &r.micro);
}
