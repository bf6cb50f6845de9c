//! `augur`: buying signals, intent and churn scores from sales notes — the command line.

mod commands;
mod progress;
mod table;

use clap::{Parser, Subcommand};

/// Augur reads what customers and sales reps write and turns it into signals, scores and
/// explanations. Everything runs locally.
///
/// First run `models/fetch` (in the Augur checkout) to provision the default model.
#[derive(Parser)]
#[command(name = "augur", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed the text column of a table (CSV / Parquet / NDJSON) into vectors.
    Embed(commands::embed::EmbedArgs),
    /// List, verify and import models.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => commands::embed::run(args),
        Command::Models(command) => commands::models::run(command),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
