//! `augur embed`: a table's text column in, the same table plus an `embedding` column out.

use std::path::PathBuf;

use anyhow::{Context, Result};
use augur_core::{Embedder, InputKind, LongTextPolicy};
use clap::ValueEnum;
use polars::prelude::{
    Column, DataType, IntoColumn, IntoSeries, ListChunked, NamedFrom, PlSmallStr, Series,
};

use crate::chunked::{run_job, ChunkOutput, JobSettings, TextColumns};
use crate::commands::ModelArgs;
use crate::table::{refuse_overwriting_inputs, string_column, Format};

/// Embed every row's text into a vector.
///
/// All input columns are kept; an `embedding` column is added (a list of floats in Parquet /
/// NDJSON, a JSON array string in CSV). Rows without text, or whose text is not valid UTF-8, get
/// a null embedding and are listed in the summary. The input is read and written in chunks, with
/// a checkpoint after each: memory does not grow with the input, and `--resume` continues a
/// killed run.
///
/// Example: augur embed fixtures/notes/sample_notes.csv -o /tmp/notes.parquet
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
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
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one)]
    pub batch_size: usize,
    /// Input rows per chunk: the unit of reading, writing and checkpointing (memory stays bounded
    /// by a chunk, whatever the size of the input).
    #[arg(long, default_value_t = 256, value_parser = super::at_least_one)]
    pub chunk_size: usize,
    /// Continue an interrupted run of the same input, output and settings from its last
    /// checkpoint (saved after every chunk; the output appears only when complete).
    #[arg(long)]
    pub resume: bool,
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

/// Counter of rows without text.
const MISSING_TEXT: &str = "rows without usable text";

/// Runs `augur embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    // An output extension Augur cannot write fails before the model loads.
    Format::of(&args.output)?;
    refuse_overwriting_inputs(&[&args.input], &[("--output", &args.output)])?;
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
        .with_int8(args.model.int8)
        .with_long_text(long_text)
        .with_batch_size(args.batch_size)
        .build()
        .with_context(|| format!("loading model `{}`", args.model.model))?;
    eprintln!(
        "model: {} ({})",
        args.model.model,
        embedder.files().dir.display()
    );
    let settings = JobSettings {
        label: "embed",
        fingerprint_extra: format!(
            "{} {:?} {:?} {} {} {:?}",
            args.text_column, args.kind, args.long_text, args.overlap, args.chunk_size, args.model
        ),
        resume: args.resume,
        chunk_rows: args.chunk_size,
        // Every column passes through: CSV cells stay as written (`007` is not 7).
        text_columns: TextColumns::All,
    };
    let summary = run_job(
        &args.input,
        &args.output,
        None,
        &settings,
        |first_row, df| {
            let texts = string_column(df, &args.text_column, "--text-column")?;
            let present: Vec<(usize, &str)> = texts
                .iter()
                .enumerate()
                // Invalid UTF-8 was read as U+FFFD: such text is not embedded but flagged.
                .filter_map(|(i, t)| t.filter(|t| !t.contains('\u{FFFD}')).map(|t| (i, t)))
                .collect();
            let batch: Vec<&str> = present.iter().map(|(_, t)| *t).collect();
            let mut vectors: Vec<Option<Vec<f32>>> = vec![None; df.height()];
            for ((i, _), vector) in present.iter().zip(embedder.embed(&batch, kind)?) {
                vectors[*i] = Some(vector);
            }
            let missing: Vec<usize> = (0..df.height())
                .filter(|&i| vectors[i].is_none())
                .map(|i| first_row + i + 1)
                .collect();
            let mut table = df.clone();
            table
                .with_column(embedding_column(&vectors))
                .context("adding the embedding column")?;
            Ok(ChunkOutput {
                table,
                rejects: Vec::new(),
                processed: present.len(),
                counters: vec![(MISSING_TEXT.to_string(), missing.len())],
                flagged_rows: missing,
            })
        },
    )?;
    let done = &summary.checkpoint;
    eprintln!(
        "embedded {} of {} rows (dim {}) -> {}",
        done.notes_done,
        summary.rows,
        embedder.dim(),
        args.output.display()
    );
    let missing = done.counters.get(MISSING_TEXT).copied().unwrap_or(0);
    if missing > 0 {
        let shown: Vec<String> = done.flagged_rows.iter().map(usize::to_string).collect();
        eprintln!(
            "warning: {missing} rows had no `{}` (missing, or not valid UTF-8) and got a null embedding (data rows {}{})",
            args.text_column,
            shown.join(", "),
            if missing > shown.len() { ", ..." } else { "" }
        );
    }
    Ok(())
}

/// Builds the `embedding` column, a list of f32 (written to CSV as JSON text).
fn embedding_column(vectors: &[Option<Vec<f32>>]) -> Column {
    let list: ListChunked = vectors
        .iter()
        .map(|v| {
            v.as_ref()
                .map(|v| Series::new(PlSmallStr::EMPTY, v.as_slice()))
        })
        .collect();
    // Typed explicitly: a chunk whose rows all lack text would otherwise be a list of nulls, and
    // its Parquet part would not match the others.
    list.with_name("embedding".into())
        .into_series()
        .cast(&DataType::List(Box::new(DataType::Float32)))
        .expect("a list of floats (or nulls) casts to a list of f32")
        .into_column()
}
