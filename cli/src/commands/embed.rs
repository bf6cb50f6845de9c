//! `augur embed`: a table's text column in, the same table plus an `embedding` column out.

use std::path::PathBuf;

use anyhow::{Context, Result};
use augur_core::{Embedder, InputKind, LongTextPolicy};
use clap::ValueEnum;
use polars::prelude::{Column, IntoColumn, IntoSeries, ListChunked, NamedFrom, PlSmallStr, Series};

use crate::commands::ModelArgs;
use crate::progress::Progress;
use crate::table::{read_table, string_column, write_table, Format};

/// Embed every row's text. All input columns are kept; an `embedding` column is added (a list of
/// floats in Parquet / NDJSON, a JSON array string in CSV). Rows without text get a null
/// embedding and are counted in the summary.
///
/// Example: augur embed fixtures/notes/sample_notes.csv -o /tmp/notes.parquet
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    /// Input table: .csv, .parquet or .ndjson/.jsonl.
    pub input: PathBuf,
    /// Output table; the format follows the extension.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Column holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Role of the texts, for models trained with prefixes (e5: `passage: ` / `query: `).
    #[arg(long, value_enum, default_value_t = KindArg::Passage)]
    pub kind: KindArg,
    /// Texts longer than the model's window: split into overlapping chunks (pooled) or cut.
    #[arg(long, value_enum, default_value_t = LongTextArg::Chunk)]
    pub long_text: LongTextArg,
    /// Tokens shared by consecutive chunks (with --long-text chunk).
    #[arg(long, default_value_t = 64)]
    pub overlap: usize,
    /// Windows per encoder call.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `--kind`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum KindArg {
    /// Notes and documents.
    Passage,
    /// Short probes and search queries.
    Query,
}

/// `--long-text`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LongTextArg {
    /// Overlapping windows whose vectors are averaged.
    Chunk,
    /// Only the first window.
    Truncate,
}

/// Rows embedded per progress step.
const ROWS_PER_STEP: usize = 256;

/// Runs `augur embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    let output_format = Format::of(&args.output)?;
    let mut df = read_table(&args.input)?;
    let texts = string_column(&df, &args.text_column, &args.input, "--text-column")?;
    let long_text = match args.long_text {
        LongTextArg::Chunk => LongTextPolicy::Chunk {
            overlap: args.overlap,
        },
        LongTextArg::Truncate => LongTextPolicy::Truncate,
    };
    let kind = match args.kind {
        KindArg::Passage => InputKind::Passage,
        KindArg::Query => InputKind::Query,
    };
    let embedder = Embedder::builder(&args.model.model)
        .with_locator(args.model.locator())
        .with_long_text(long_text)
        .with_batch_size(args.batch_size)
        .build()
        .with_context(|| format!("loading model `{}`", args.model.model))?;
    eprintln!(
        "model: {} ({})",
        args.model.model,
        embedder.files().dir.display()
    );

    let rows: Vec<Option<String>> = texts.iter().map(|t| t.map(str::to_string)).collect();
    let missing: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_none())
        .map(|(i, _)| i)
        .collect();
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
    let mut progress = Progress::new("embed", rows.len());
    for (step, chunk) in rows.chunks(ROWS_PER_STEP).enumerate() {
        let present: Vec<(usize, &str)> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_deref().map(|t| (i, t)))
            .collect();
        let batch: Vec<&str> = present.iter().map(|(_, t)| *t).collect();
        let embedded = embedder.embed(&batch, kind).with_context(|| {
            format!(
                "{}: embedding rows {}..{}",
                args.input.display(),
                step * ROWS_PER_STEP,
                step * ROWS_PER_STEP + chunk.len()
            )
        })?;
        for ((i, _), vector) in present.iter().zip(embedded) {
            vectors[step * ROWS_PER_STEP + i] = Some(vector);
        }
        progress.advance(chunk.len());
    }

    let column = embedding_column(&vectors, output_format);
    df.with_column(column)
        .context("adding the embedding column")?;
    write_table(&mut df, &args.output)?;
    eprintln!(
        "embedded {} of {} rows (dim {}) -> {}",
        rows.len() - missing.len(),
        rows.len(),
        embedder.dim(),
        args.output.display()
    );
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(20)
            .map(|i| (i + 1).to_string())
            .collect();
        eprintln!(
            "warning: {} rows had no `{}` and got a null embedding (data rows {}{})",
            missing.len(),
            args.text_column,
            shown.join(", "),
            if missing.len() > 20 { ", ..." } else { "" }
        );
    }
    Ok(())
}

/// Builds the `embedding` column: a list column, or JSON strings for CSV (which has no lists).
fn embedding_column(vectors: &[Option<Vec<f32>>], format: Format) -> Column {
    if format == Format::Csv {
        let strings: Vec<Option<String>> = vectors
            .iter()
            .map(|v| {
                v.as_ref()
                    .map(|v| serde_json::to_string(v).expect("floats serialise"))
            })
            .collect();
        return Column::new("embedding".into(), strings);
    }
    let list: ListChunked = vectors
        .iter()
        .map(|v| {
            v.as_ref()
                .map(|v| Series::new(PlSmallStr::EMPTY, v.as_slice()))
        })
        .collect();
    list.with_name("embedding".into())
        .into_series()
        .into_column()
}
