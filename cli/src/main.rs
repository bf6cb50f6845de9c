//! `augur`: buying signals, intent and churn scores from sales notes — the command line.

mod chunked;
mod commands;
mod notes;
mod progress;
mod table;

use clap::{Parser, Subcommand};

/// Augur reads what customers and sales reps write and turns it into signals, scores and
/// explanations. Everything runs locally.
///
/// First run `models/fetch` (in the Augur checkout) to provision the default model, then e.g.
///   augur extract --text "客户确认产线升级预算已批复，下月初安排技术交流"
///   augur extract notes.csv -o signals.parquet
///   augur embed notes.csv -o notes.embedded.parquet
#[derive(Parser)]
#[command(name = "augur", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find buying / risk signals with evidence in notes and chats (a table, or one --text).
    Extract(commands::extract::ExtractArgs),
    /// Precision / recall / F1 of signal extraction against an annotated corpus.
    EvalSignals(commands::eval_signals::EvalSignalsArgs),
    /// Churn-risk and lead-intent scores per account, with factors and evidence.
    Score(commands::score::ScoreArgs),
    /// Why an account scored as it did (from an `augur score` output).
    Explain(commands::score::ExplainArgs),
    /// Learn scorer weights from outcome labels (cross-validated AUC, calibration).
    FitScorer(commands::score::FitScorerArgs),
    /// Score NDJSON messages from stdin as they arrive (signals, sentiment, account risk, latency).
    Watch(commands::watch::WatchArgs),
    /// Fine-tune a LoRA adapter + classification head from labelled examples.
    Fit(commands::fit::FitArgs),
    /// Accuracy, macro-F1 and confusion matrix of a fitted adapter.
    Eval(commands::fit::EvalArgs),
    /// Embed the text column of a table (CSV / Parquet / NDJSON) into vectors.
    Embed(commands::embed::EmbedArgs),
    /// List, verify and import models.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Extract(args) => commands::extract::run(args),
        Command::EvalSignals(args) => commands::eval_signals::run(args),
        Command::Score(args) => commands::score::run_score(args),
        Command::Explain(args) => commands::score::run_explain(args),
        Command::FitScorer(args) => commands::score::run_fit(args),
        Command::Watch(args) => commands::watch::run(args),
        Command::Fit(args) => commands::fit::run_fit(args),
        Command::Eval(args) => commands::fit::run_eval(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Models(command) => commands::models::run(command),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
