//! `augur fit` and `augur eval`: few-shot LoRA fine-tuning on labelled examples, and its metrics.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use augur_core::finetune::{
    FineTuneConfig, FitMethod, LabelledText, LearningRateSchedule, SeededRng, TextClassifier,
};
use augur_core::{Embedder, InputKind};

use crate::commands::ModelArgs;
use crate::table::{read_table, required_strings};

/// Fine-tune LoRA adapters + a classification head from a handful of labelled examples.
///
/// EXAMPLES is a table (.csv / .ndjson) with `text` and `label` columns (other names with
/// --text-column / --label-column); several labels per row (multi-label) are separated by `|`.
/// A seeded 20 % of the rows is held out to pick the best epoch when that is at least 50 rows;
/// with fewer, all rows train and the last epoch is kept (see --holdout). Writes a
/// PEFT-compatible adapter (adapter_config.json, adapter_model.safetensors), the head
/// (head.safetensors), labels.json and report.json into --out. Each example is read up to its
/// first 96 tokens (about 60 Chinese characters or 70 English words); fit and eval say how many
/// were longer.
///
/// Without --method / --targets / --top-layers / --epochs / --learning-rate / --schedule, the
/// recipe that measured best on the few-shot benchmark (benches/README.md) is used. Under 1000
/// training examples (after the hold-out), each with one label: contrastive pairs on query +
/// value of the top 4 layers, linear decay from 6e-3, the epochs (1 to 8) nearest to 512 pairs
/// in all (8 for 32 examples, 2 for 128). Otherwise: supervised on all six linears of the top 4
/// layers, linear decay from 2e-3, 2 epochs (10 under 1000 examples). --method picks that
/// method's recipe; each other flag given overrides its part. report.json records what ran.
///
/// Example: augur fit --examples examples.csv --out adapters/sentiment
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct FitArgs {
    /// Labelled examples: a table with a text and a label column.
    #[arg(long)]
    pub examples: PathBuf,
    #[command(flatten)]
    pub columns: ExampleColumns,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (update scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0, allow_negative_numbers = true)]
    pub alpha: f64,
    /// LoRA dropout (training only).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub dropout: f64,
    /// Modules to adapt: query, key, value, attention.output.dense, intermediate.dense,
    /// output.dense [default: from the recipe].
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Adapt only the top N layers (PEFT's layers_to_transform); the model's layer count adapts
    /// all. The frozen layers below run once per example instead of in every step, so training
    /// is several times faster [default: 4, or every layer of a shallower model].
    #[arg(long, value_name = "N")]
    pub top_layers: Option<usize>,
    /// Passes over the examples [default: from the recipe].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// AdamW learning rate [default: from the recipe].
    #[arg(long, allow_negative_numbers = true)]
    pub learning_rate: Option<f64>,
    /// constant: the same rate throughout; linear: towards 0 over the run [default: linear].
    /// On Chinese review sentiment (benches/README.md), contrastive with linear at 6e-3 beat
    /// constant at 1e-3 by 5 points at 8 examples per class and lost 0.8 at 16.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Examples per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Share of examples held out to pick the best epoch (0: train on all, keep the last epoch)
    /// [default: 0.2 when that holds out at least 50 examples, else 0: on 32 sentiment examples a
    /// 6-example hold-out picked epoch 1 and scored 71.7 % on 2,000 reviews; training on all
    /// 32 and keeping the last epoch scored 78.9 %].
    #[arg(long, allow_negative_numbers = true)]
    pub holdout: Option<f64>,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// supervised: LoRA + head on cross-entropy; contrastive: SetFit-style pairs, then a
    /// prototype head [default: contrastive under 1000 single-label training examples,
    /// supervised otherwise]. On Chinese review sentiment (benches/README.md, validation split,
    /// 3 seeds) contrastive beat supervised at 16 and 64 examples per class (80.3 % / 81.3 %
    /// against 76.6 % / 77.1 %); at 500 per class they tied (83.5 %, 2 seeds).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `--schedule`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ScheduleArg {
    /// The same learning rate at every step.
    Constant,
    /// Linear decay to 0 over the run.
    Linear,
}

/// `--method`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum MethodArg {
    /// LoRA and head together on the labels.
    Supervised,
    /// Contrastive pairs shape the embedding, then a prototype head.
    Contrastive,
}

/// Accuracy, macro-F1, per-label precision / recall and the confusion matrix of a fitted adapter.
///
/// Example: augur eval --examples test.csv --adapter adapters/sentiment
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EvalArgs {
    /// Labelled examples: a table with a text and a label column.
    #[arg(long)]
    pub examples: PathBuf,
    #[command(flatten)]
    pub columns: ExampleColumns,
    /// A directory written by `augur fit`.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Which columns of the examples hold the text and the label(s).
#[derive(clap::Args, Debug)]
pub struct ExampleColumns {
    /// Column with the example's text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column with the label; several labels (multi-label) are separated by `|`.
    #[arg(long, default_value = "label")]
    pub label_column: String,
}

/// Share of the examples held out to pick the best epoch, when that makes enough of them.
const DEFAULT_HOLDOUT_SHARE: f64 = 0.2;

/// Fewest examples the default hold-out may have: on fewer, the epoch it picks is noise.
const MIN_DEFAULT_HOLDOUT: usize = 50;

/// Reads `text,label` rows (column names from `columns`); labels split on `|`. Rows without text
/// or label (`|` alone included) are refused by number.
fn read_examples(path: &Path, columns: &ExampleColumns) -> Result<Vec<LabelledText>> {
    let df = read_table(path, &[&columns.text_column, &columns.label_column])?;
    let column = |name: &str, flag: &str| {
        required_strings(&df, name, flag).with_context(|| path.display().to_string())
    };
    let texts = column(&columns.text_column, "--text-column")?;
    let labels = column(&columns.label_column, "--label-column")?;
    let mut out = Vec::new();
    let mut blank_rows = 0;
    let blank = |cell: &Option<String>| cell.as_deref().is_none_or(|c| c.trim().is_empty());
    for (row, (text, label)) in texts.into_iter().zip(labels).enumerate() {
        if blank(&text) && blank(&label) {
            blank_rows += 1;
            continue;
        }
        match (text, label) {
            (Some(text), Some(label))
                if !text.trim().is_empty() && label.split('|').any(|l| !l.trim().is_empty()) =>
            {
                // `churn|churn` is one label, not a multi-label example.
                let mut labels: Vec<String> = Vec::new();
                for label in label.split('|').map(str::trim).filter(|l| !l.is_empty()) {
                    if !labels.iter().any(|l| l == label) {
                        labels.push(label.to_string());
                    }
                }
                out.push(LabelledText { text, labels })
            }
            _ => bail!(
                "{}: data row {} has no text or no label; every example needs both",
                path.display(),
                row + 1
            ),
        }
    }
    if out.is_empty() {
        bail!("{}: no examples", path.display());
    }
    if blank_rows > 0 {
        eprintln!(
            "{}: {blank_rows} blank row{} (no text and no label) skipped",
            path.display(),
            if blank_rows == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}

/// Warns about examples longer than `max_tokens` tokens: only their start is read.
fn warn_truncated(embedder: &Embedder, texts: &[&str], max_tokens: usize) -> Result<()> {
    let long = embedder
        .windows(texts, InputKind::Query)?
        .iter()
        .filter(|windows| windows.len() > 1 || windows[0].ids.len() > max_tokens)
        .count();
    if long > 0 {
        eprintln!(
            "note: {long} of {} examples are longer than {max_tokens} tokens; only their first {max_tokens} tokens are read",
            texts.len()
        );
    }
    Ok(())
}

fn load_base(model: &ModelArgs) -> Result<Embedder> {
    Embedder::builder(&model.model)
        .with_locator(model.locator())
        .with_int8(model.int8)
        .build()
        .with_context(|| format!("loading model `{}`", model.model))
}

/// Refuses, before training, an `--out` that is a file or a folder holding something other
/// than an earlier fit (which is replaced).
fn check_fit_folder(out: &Path) -> Result<()> {
    if out.is_file() {
        bail!(
            "--out {}: is a file; give a folder for the adapter",
            out.display()
        );
    }
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    if entries.count() > 0 && !out.join("adapter_config.json").is_file() {
        bail!(
            "--out {}: the folder holds other files and no earlier fit; give a new or empty folder",
            out.display()
        );
    }
    Ok(())
}

/// A label as compared for "differs only in case or spacing".
fn label_form(label: &str) -> String {
    label.trim().to_lowercase()
}

/// Prints how many examples carry each label, and warns about labels that differ only in case
/// or spacing (`Churn` and `churn` train as two classes).
fn report_labels(examples: &[LabelledText]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for label in examples.iter().flat_map(|e| &e.labels) {
        *counts.entry(label.as_str()).or_default() += 1;
    }
    let listed: Vec<String> = counts.iter().map(|(l, n)| format!("{l} {n}")).collect();
    eprintln!("labels: {}", listed.join(", "));
    let mut by_form: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for label in counts.keys() {
        by_form.entry(label_form(label)).or_default().push(label);
    }
    for variants in by_form.values().filter(|v| v.len() > 1) {
        eprintln!(
            "warning: labels {} differ only in case or spacing and train as separate classes; write them the same way if they are one",
            variants.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
        );
    }
}

/// Runs `augur fit`.
pub fn run_fit(args: FitArgs) -> Result<()> {
    if let Some(share) = args.holdout.filter(|s| !(0.0..=0.5).contains(s)) {
        bail!("--holdout {share}: give a share between 0 (no hold-out) and 0.5");
    }
    if args.epochs == Some(0) {
        bail!("--epochs 0: give at least 1");
    }
    // The settings given, checked before the model loads (the recipe fills in the rest later).
    let defaults = FineTuneConfig::default();
    FineTuneConfig {
        r: args.rank,
        alpha: args.alpha,
        dropout: args.dropout,
        targets: args.targets.clone().unwrap_or(defaults.targets.clone()),
        learning_rate: args.learning_rate.unwrap_or(defaults.learning_rate),
        batch_size: args.batch_size,
        ..defaults
    }
    .check()
    .context(
        "fit: check --rank, --alpha, --dropout, --learning-rate, --batch-size and --targets",
    )?;
    check_fit_folder(&args.out)?;
    let mut examples = read_examples(&args.examples, &args.columns)?;
    report_labels(&examples);
    SeededRng::new(args.seed).shuffle(&mut examples);
    let share = args.holdout.unwrap_or_else(|| {
        let share = DEFAULT_HOLDOUT_SHARE;
        if (examples.len() as f64 * share).round() as usize >= MIN_DEFAULT_HOLDOUT {
            share
        } else {
            eprintln!(
                "fit: {} examples are too few to pick an epoch on a hold-out (20 % would be {}, \
                 under {MIN_DEFAULT_HOLDOUT}): training on all of them and keeping the last \
                 epoch; --holdout 0.2 holds out anyway",
                examples.len(),
                (examples.len() as f64 * share).round()
            );
            0.0
        }
    });
    let holdout_n = ((examples.len() as f64) * share).round() as usize;
    let holdout = examples.split_off(examples.len() - holdout_n);
    let base = load_base(&args.model)?;
    let layers = base.encoder().config().num_hidden_layers;
    if args.top_layers.is_some_and(|n| n == 0 || n > layers) {
        bail!(
            "--top-layers {}: the model has {layers} layers; give 1..={layers}",
            args.top_layers.unwrap_or(0)
        );
    }
    // Made once every setting is checked, and before training, so an unwritable --out fails
    // before the work rather than after it.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create the folder", args.out.display()))?;
    // Given a method, its own recipe; otherwise the one the examples call for.
    let method = args.method.map(|m| match m {
        MethodArg::Supervised => FitMethod::Supervised,
        MethodArg::Contrastive => FitMethod::Contrastive,
    });
    let recipe = match method {
        Some(method) => FineTuneConfig::recipe(method, examples.len(), layers),
        None => FineTuneConfig::recommended(&examples, layers),
    };
    let config = FineTuneConfig {
        r: args.rank,
        alpha: args.alpha,
        dropout: args.dropout,
        targets: args.targets.clone().unwrap_or(recipe.targets),
        layers_to_transform: match args.top_layers {
            Some(n) => Some(FineTuneConfig::top_layers(n, layers)),
            None => recipe.layers_to_transform,
        },
        learning_rate: args.learning_rate.unwrap_or(recipe.learning_rate),
        schedule: match args.schedule {
            Some(ScheduleArg::Constant) => LearningRateSchedule::Constant,
            Some(ScheduleArg::Linear) => LearningRateSchedule::Linear,
            None => recipe.schedule,
        },
        epochs: args.epochs.unwrap_or(recipe.epochs),
        batch_size: args.batch_size,
        seed: args.seed,
        ..recipe
    };
    let all_texts: Vec<&str> = examples
        .iter()
        .chain(&holdout)
        .map(|e| e.text.as_str())
        .collect();
    warn_truncated(&base, &all_texts, config.max_tokens)?;
    let adapted = config.layers_to_transform.as_ref().map_or(layers, Vec::len);
    eprintln!(
        "fit: {} training examples, {} held out; {}, LoRA r={} on {} of the top {adapted} \
         layers, {} epoch{}, learning rate {} ({})",
        examples.len(),
        holdout.len(),
        format!("{:?}", config.method).to_lowercase(),
        config.r,
        config.targets.join(","),
        config.epochs,
        if config.epochs == 1 { "" } else { "s" },
        config.learning_rate,
        format!("{:?}", config.schedule).to_lowercase()
    );
    let terminal = std::io::stderr().is_terminal();
    let (classifier, adapter, report) =
        TextClassifier::fit(&base, &examples, &holdout, &config, |p| {
            if terminal {
                eprint!(
                    "\repoch {}/{} step {}/{} loss {:.4}   ",
                    p.epoch, config.epochs, p.step, p.steps, p.loss
                );
            } else if p.step == p.steps {
                eprintln!(
                    "epoch {}/{} done, last loss {:.4}",
                    p.epoch, config.epochs, p.loss
                );
            }
        })?;
    if terminal {
        eprintln!();
    }
    adapter.save(&args.out)?;
    classifier.save_head(&args.out)?;
    let report_path = args.out.join("report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("{}", report_path.display()))?;
    let kept = if holdout.is_empty() {
        "no hold-out: the last".to_string()
    } else {
        format!(
            "held-out accuracy {:.3}: the best",
            report.epoch_holdout_accuracy[report.best_epoch - 1]
        )
    };
    println!(
        "kept epoch {} of {} ({kept}); {:.0}s; wrote {}",
        report.best_epoch,
        report.epoch_loss.len(),
        report.seconds,
        args.out.display()
    );
    Ok(())
}

/// Runs `augur eval`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    let examples = read_examples(&args.examples, &args.columns)?;
    if !args.adapter.is_dir() {
        bail!("--adapter {}: no such folder", args.adapter.display());
    }
    if !args.adapter.join("head.safetensors").is_file() {
        bail!(
            "--adapter {}: no head.safetensors; eval needs a folder written by `augur fit` (a PEFT adapter alone has no classifier head)",
            args.adapter.display()
        );
    }
    let classifier = TextClassifier::load(&load_base(&args.model)?, &args.adapter)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    warn_truncated(classifier.embedder(), &texts, classifier.max_tokens())?;
    let predicted: Vec<Vec<String>> = classifier
        .predict(&texts)?
        .iter()
        .map(|p| classifier.decide(p))
        .collect();
    let labels = &classifier.labels;
    let mut unknown: Vec<&str> = examples
        .iter()
        .flat_map(|e| &e.labels)
        .filter(|l| !labels.contains(l))
        .map(String::as_str)
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let same_but_case: Vec<String> = unknown
            .iter()
            .filter_map(|u| {
                labels
                    .iter()
                    .find(|l| label_form(l) == label_form(u))
                    .map(|l| format!("`{u}` is `{l}` there"))
            })
            .collect();
        let case_hint = if same_but_case.is_empty() {
            String::new()
        } else {
            format!("; labels are case-sensitive: {}", same_but_case.join(", "))
        };
        warnings.push(format!(
            "the adapter was not trained on label(s) {}: their examples can only count as wrong (its labels: {}){case_hint}",
            unknown.join(", "),
            labels.join(", ")
        ));
    }
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut per_label = Vec::new();
    for label in labels {
        let tp = examples
            .iter()
            .zip(&predicted)
            .filter(|(e, p)| e.labels.contains(label) && p.contains(label))
            .count() as f64;
        let fp = examples
            .iter()
            .zip(&predicted)
            .filter(|(e, p)| !e.labels.contains(label) && p.contains(label))
            .count() as f64;
        let fn_ = examples
            .iter()
            .zip(&predicted)
            .filter(|(e, p)| e.labels.contains(label) && !p.contains(label))
            .count() as f64;
        let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per_label.push(serde_json::json!({"label": label, "precision": precision, "recall": recall, "f1": f1, "support": (tp + fn_) as usize}));
    }
    for (e, p) in examples.iter().zip(&predicted) {
        *confusion
            .entry(e.labels.join("|"))
            .or_default()
            .entry(p.join("|"))
            .or_default() += 1;
    }
    let accuracy = examples
        .iter()
        .zip(&predicted)
        .filter(|(e, p)| {
            let mut l = e.labels.clone();
            l.sort();
            l == **p
        })
        .count() as f64
        / examples.len() as f64;
    let macro_f1 = per_label
        .iter()
        .map(|l| l["f1"].as_f64().unwrap_or(0.0))
        .sum::<f64>()
        / per_label.len().max(1) as f64;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"examples": examples.len(), "accuracy": accuracy, "macro_f1": macro_f1, "per_label": per_label, "confusion": confusion, "warnings": warnings})
            )?
        );
        return Ok(());
    }
    println!(
        "{} examples: accuracy {accuracy:.3}, macro-F1 {macro_f1:.3}",
        examples.len()
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>8}",
        "label", "precision", "recall", "F1", "support"
    );
    for l in &per_label {
        println!(
            "{:<24} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            l["label"].as_str().unwrap_or(""),
            l["precision"].as_f64().unwrap_or(0.0),
            l["recall"].as_f64().unwrap_or(0.0),
            l["f1"].as_f64().unwrap_or(0.0),
            l["support"].as_u64().unwrap_or(0)
        );
    }
    println!("confusion (rows: true, columns: predicted):");
    for (truth, row) in &confusion {
        let cells: Vec<String> = row.iter().map(|(p, n)| format!("{p}={n}")).collect();
        println!("  {truth:<22} {}", cells.join("  "));
    }
    Ok(())
}
