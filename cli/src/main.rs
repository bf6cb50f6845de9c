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
#[command(name = "augur", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// No doc comments on the variants: a variant's would replace its arguments struct's, which holds
// the command's help (summary, details, examples) — see the regression test
// `subcommand_help_shows_the_details_and_examples`.
#[derive(Subcommand)]
enum Command {
    Extract(commands::extract::ExtractArgs),
    EvalSignals(commands::eval_signals::EvalSignalsArgs),
    Score(commands::score::ScoreArgs),
    Explain(commands::score::ExplainArgs),
    FitScorer(commands::score::FitScorerArgs),
    Watch(commands::watch::WatchArgs),
    Fit(commands::fit::FitArgs),
    Eval(commands::fit::EvalArgs),
    Embed(commands::embed::EmbedArgs),
    /// List, verify and import models.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
}

fn main() {
    // Output piped into `head` and closed early ends the command quietly, as for other Unix
    // tools, instead of a panic on the next print.
    #[cfg(unix)]
    // SAFETY: restores the default action for SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        eprintln!("error: {}", describe(&error));
        std::process::exit(1);
    }
}

/// The error and its causes, joined by `: `, a cause left out when the text so far already ends
/// with it (library errors repeat their source, e.g. `file: No such file…: No such file…`).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
