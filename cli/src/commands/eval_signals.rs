//! `augur eval-signals`: precision / recall / F1 of the extractor against annotated notes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use augur_signals::eval::{
    annotation_as_predictions, evaluate, load_gold, ErrorKind, EvalReport, GoldNote,
};
use augur_signals::SignalPack;
use clap::ValueEnum;

use crate::commands::signals::{build_extractor, load_pack, PackArgs};
use crate::commands::ModelArgs;
use crate::table::{ensure_parent, refuse_overwriting_inputs};

/// Precision / recall / F1 of signal extraction against an annotated corpus.
///
/// The corpus is JSON lines: id, text, lang, split, signals with char spans. A prediction
/// counts as correct when it overlaps a gold span of the same signal.
///
/// Every disagreement is listed with --errors FILE (JSON lines): false positives with their
/// probability and the gold signals at that clause; missed spans with the highest probability
/// their signal got there (how near it came to firing) and what fired instead.
/// Read them before adding examples or hard negatives to a pack (--signals).
///
/// With --against FILE, no model runs: FILE is a second annotation of the same notes (same
/// format), scored in the extractor's place. The result is the agreement between two
/// annotators, the ceiling to read the extractor's F1 against.
///
/// Examples:
///   augur eval-signals fixtures/signals/gold_zh.jsonl fixtures/signals/gold_en.jsonl
///   augur eval-signals fixtures/signals/gold_*.jsonl --split train --errors errors.jsonl
///   augur eval-signals fixtures/signals/gold_*.jsonl --against fixtures/signals/agreement/blind_test.jsonl
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EvalSignalsArgs {
    /// Gold files.
    #[arg(required = true)]
    pub gold: Vec<PathBuf>,
    /// Which notes to score, by their `split` field.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// Print the report as JSON (with every error).
    #[arg(long)]
    pub json: bool,
    /// Write every false positive and missed span to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
    /// Score a second annotation of the notes (gold format) instead of the extractor: agreement
    /// between annotators. The model is not loaded.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
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
    if let Some(errors) = &args.errors {
        let inputs: Vec<&Path> = args
            .gold
            .iter()
            .map(PathBuf::as_path)
            .chain(args.against.as_deref())
            .collect();
        refuse_overwriting_inputs(&inputs, &[("--errors", errors)])?;
    }
    let mut gold: Vec<GoldNote> = Vec::new();
    let mut note_files: BTreeMap<String, &Path> = BTreeMap::new();
    for path in &args.gold {
        for note in load_gold(path)? {
            if let Some(first) = note_files.insert(note.id.clone(), path) {
                bail!(
                    "note id {} is in both {} and {}: each note must be scored once (is a file given twice?)",
                    note.id,
                    first.display(),
                    path.display()
                );
            }
            gold.push(note);
        }
    }
    let wanted = match args.split {
        SplitArg::Test => Some("test"),
        SplitArg::Train => Some("train"),
        SplitArg::All => None,
    };
    let mut splits: BTreeMap<String, usize> = BTreeMap::new();
    for note in &gold {
        *splits.entry(note.split.clone()).or_default() += 1;
    }
    gold.retain(|n| wanted.is_none_or(|w| n.split == w));
    if gold.is_empty() {
        let found: Vec<String> = splits
            .iter()
            .map(|(split, n)| format!("{n} with split `{split}`"))
            .collect();
        bail!(
            "no notes to score: the gold files hold {}; choose --split test, train or all",
            if found.is_empty() {
                "no notes".to_string()
            } else {
                found.join(", ")
            }
        );
    }
    // Open the errors file first: a path that cannot be written fails before the extraction.
    let errors_file = args
        .errors
        .as_deref()
        .map(|path| -> Result<(&Path, std::fs::File)> {
            ensure_parent(path)?;
            let file = std::fs::File::create(path)
                .with_context(|| format!("{}: cannot create the errors file", path.display()))?;
            Ok((path, file))
        })
        .transpose()?;
    let pack = load_pack(&args.pack)?;
    warn_about_gold(&gold, &splits, wanted, &pack);
    let report = match &args.against {
        Some(path) => {
            let predicted = annotation_as_predictions(&gold, &load_gold(path)?, path, &pack)?;
            evaluate(&gold, &predicted, &pack.signal_ids())
        }
        None => {
            let extractor = build_extractor(&args.model, &args.pack)?;
            let notes: Vec<_> = gold.iter().map(GoldNote::to_note).collect();
            let predicted = extractor.extract_batch(&notes)?;
            evaluate(&gold, &predicted, &extractor.pack().signal_ids())
        }
    };
    if let Some((path, file)) = errors_file {
        write_errors(&report, path, file)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
        print_error_summary(&report, args.errors.as_deref());
    }
    Ok(())
}

/// Warns about gold the scores cannot reflect: notes whose split no `--split` but `all` selects
/// (e.g. `dev`, or none), and gold signals the pack lacks (they can only count as misses).
fn warn_about_gold(
    gold: &[GoldNote],
    splits: &BTreeMap<String, usize>,
    wanted: Option<&str>,
    pack: &SignalPack,
) {
    if wanted.is_some() {
        for (split, n) in splits.iter().filter(|(s, _)| *s != "test" && *s != "train") {
            eprintln!(
                "note: {n} notes with split `{split}` are left out (only --split all scores them)"
            );
        }
    }
    let mut unknown: BTreeMap<&str, usize> = BTreeMap::new();
    for signal in gold.iter().flat_map(|n| &n.signals) {
        if pack.signal(&signal.signal).is_none() {
            *unknown.entry(signal.signal.as_str()).or_default() += 1;
        }
    }
    for (signal, n) in unknown {
        eprintln!(
            "warning: gold signal `{signal}` ({n} spans) is not in pack {}: it can only count as missed",
            pack.name
        );
    }
}

/// Writes the report's errors as JSON lines to `file` (opened at `path`).
fn write_errors(report: &EvalReport, path: &Path, file: std::fs::File) -> Result<()> {
    let mut out = std::io::BufWriter::new(file);
    for error in &report.errors {
        serde_json::to_writer(&mut out, error)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("{}: cannot write the errors", path.display()))
}

/// How many errors of each kind, and how many are confusions between signals.
fn print_error_summary(report: &EvalReport, written_to: Option<&Path>) {
    let count = |kind| {
        let all: Vec<_> = report.errors_of(kind).collect();
        (
            all.len(),
            all.iter().filter(|e| !e.instead.is_empty()).count(),
        )
    };
    let (false_positives, confused) = count(ErrorKind::FalsePositive);
    let (missed, lost) = count(ErrorKind::Missed);
    println!(
        "\nerrors: {false_positives} false positive(s), {confused} of them on another signal's gold span; \
         {missed} missed span(s), {lost} of them where another signal fired"
    );
    match written_to {
        Some(path) => println!("listed in {}", path.display()),
        None => println!("list them with --errors FILE"),
    }
}

/// The report as a table.
pub fn print_report(r: &EvalReport) {
    println!("{} notes", r.notes);
    println!(
        "{:<26} {:>6} {:>6} {:>6} {:>5} {:>5}",
        "signal", "P", "R", "F1", "gold", "pred"
    );
    // A precision without predictions (or a recall without gold) is undefined: shown as `-`, not
    // as a perfect 1.000.
    let ratio = |value: f64, defined: bool| {
        if defined {
            format!("{value:.3}")
        } else {
            "-".to_string()
        }
    };
    let line = |name: &str, c: &augur_signals::eval::Counts| {
        println!(
            "{name:<26} {:>6} {:>6} {:>6} {:>5} {:>5}",
            ratio(c.precision(), c.predictions > 0),
            ratio(c.recall(), c.gold > 0),
            ratio(c.f1(), c.predictions > 0 || c.gold > 0),
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
