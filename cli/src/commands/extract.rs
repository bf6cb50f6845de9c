//! `augur extract`: signals with evidence from a table of notes, or from one `--text`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use augur_signals::{Note, NoteSignals, SignalExtractor};
use chrono::NaiveDate;
use polars::prelude::{Column, DataFrame, DataType, NamedFrom, Series};

use crate::chunked::{run_job, ChunkOutput, JobSettings, JobSummary, TextColumns};
use crate::commands::signals::{build_extractor, resume_settings, PackArgs};
use crate::commands::ModelArgs;
use crate::notes::{notes_from_table, ColumnArgs, NotesTable};
use crate::table::refuse_overwriting_inputs;

/// Find buying and risk signals, with the clause that carries each one.
///
/// Table mode writes one row per signal hit (notes without hits get one row with an empty
/// `signal`, so every note and its sentiment appear), with the input's other columns passed
/// through. Rows that cannot be processed (no text, text that is not UTF-8, a bad timestamp, a CSV
/// record or NDJSON line that does not parse) go to a rejects file with the row and the reason.
///
/// Examples:
///   augur extract notes.csv -o signals.parquet
///   augur extract --text "客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500" --date 2026-12-04
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ExtractArgs {
    /// Input table (.csv, .parquet, .ndjson/.jsonl). Not needed with --text.
    pub input: Option<PathBuf>,
    /// Output table; the format follows the extension.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Analyse this one text and print the hits instead of reading a table.
    #[arg(
        long,
        conflicts_with_all = [
            "input", "output", "resume", "chunk_size", "rejects",
            "id_column", "account_column", "timestamp_column", "text_column",
        ]
    )]
    pub text: Option<String>,
    /// With --text: the note's date for resolving 「下个月」 / "next quarter" (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<NaiveDate>,
    /// With --text: print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Continue an interrupted run of the same input, output and settings from its last
    /// checkpoint (saved after every chunk; the output appears only when complete).
    #[arg(long)]
    pub resume: bool,
    /// Input rows per chunk: the unit of reading, writing and checkpointing (memory stays bounded
    /// by a chunk, whatever the size of the input).
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
    pub chunk_size: usize,
    /// Where rejected rows go (default: OUTPUT with `.rejects.csv`).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    #[command(flatten)]
    pub pack: PackArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Table-mode options.
struct TableOptions {
    resume: bool,
    chunk_size: usize,
    /// The settings that must match for a resume.
    settings: String,
}

/// Runs `augur extract`.
pub fn run(args: ExtractArgs) -> Result<()> {
    if let Some(text) = &args.text {
        if text.trim().is_empty() {
            bail!("--text is empty: give the note to analyse");
        }
        let extractor = build_extractor(&args.model, &args.pack)?;
        let date = args.date.unwrap_or_else(today);
        let found = extractor.extract(&Note::new("text", text.as_str()).with_date(date))?;
        return print_hits(&found, args.json);
    }
    if args.json || args.date.is_some() {
        bail!("--json and --date apply to --text only; a table's dates come from its timestamp column and its output format from -o's extension");
    }
    let (Some(input), Some(output)) = (args.input.as_deref(), args.output.as_deref()) else {
        bail!(
            "give a table and where to write the hits (augur extract notes.csv -o signals.csv), or one text with --text \"…\"{}",
            match (&args.input, &args.output) {
                (Some(_), None) => ": -o OUTPUT is missing",
                (None, Some(_)) => ": the input table is missing",
                _ => "",
            }
        );
    };
    let rejects_path = args
        .rejects
        .clone()
        .unwrap_or_else(|| output.with_extension("rejects.csv"));
    refuse_overwriting_inputs(
        &[input],
        &[("--output", output), ("the rejects file", &rejects_path)],
    )?;
    let extractor = build_extractor(&args.model, &args.pack)?;
    let settings = resume_settings(
        &args.columns,
        &args.pack,
        &args.model,
        args.chunk_size,
        &extractor,
    );
    let options = TableOptions {
        resume: args.resume,
        chunk_size: args.chunk_size,
        settings,
    };
    run_table(
        &extractor,
        input,
        output,
        &rejects_path,
        &args.columns,
        &options,
    )
}

/// Today's date in UTC.
pub fn today() -> NaiveDate {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days as i64)
}

fn print_hits(found: &NoteSignals, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(found)?);
        return Ok(());
    }
    println!(
        "sentiment {:+.2} over {} clauses; {} signal(s)",
        found.sentiment,
        found.segments,
        found.hits.len()
    );
    if found.hits.is_empty() {
        return Ok(());
    }
    println!(
        "{:<24} {:>5}  {:<9} {:>9}  evidence / attributes",
        "signal", "p", "speaker", "chars"
    );
    for hit in &found.hits {
        println!(
            "{:<24} {:>5.2}  {:<9} {:>4}..{:<4}  {}",
            hit.signal,
            hit.probability,
            hit.speaker.as_str(),
            hit.char_start,
            hit.char_end,
            hit.evidence
        );
        for (k, v) in &hit.attributes {
            println!("{:<24} {:>5}  {:<9} {:>9}    {k} = {v}", "", "", "", "");
        }
    }
    Ok(())
}

/// Counter of notes with at least one hit (the others are hits per signal id).
const NOTES_WITH_HITS: &str = "\u{0}notes with signals";

fn run_table(
    extractor: &SignalExtractor,
    input: &Path,
    output: &Path,
    rejects_path: &Path,
    columns: &ColumnArgs,
    options: &TableOptions,
) -> Result<()> {
    let settings = JobSettings {
        label: "extract",
        fingerprint_extra: options.settings.clone(),
        resume: options.resume,
        chunk_rows: options.chunk_size,
        // Every column passes through: CSV cells stay as written (`0050` is not 50.0).
        text_columns: TextColumns::All,
    };
    let summary = run_job(
        input,
        output,
        Some(rejects_path),
        &settings,
        |first_row, df| {
            let NotesTable { notes, rejects, .. } = notes_from_table(df, first_row, columns)?;
            let batch: Vec<Note> = notes.iter().map(|(_, n)| n.clone()).collect();
            let found = extractor.extract_batch(&batch)?;
            let results: Vec<(usize, NoteSignals)> =
                notes.iter().map(|(row, _)| *row).zip(found).collect();
            let mut counters = vec![(
                NOTES_WITH_HITS.to_string(),
                results.iter().filter(|(_, r)| !r.hits.is_empty()).count(),
            )];
            for (_, r) in &results {
                counters.extend(r.hits.iter().map(|hit| (hit.signal.clone(), 1)));
            }
            Ok(ChunkOutput {
                table: hits_table(df, &results, columns)?,
                rejects,
                processed: notes.len(),
                counters,
                flagged_rows: Vec::new(),
            })
        },
    )?;
    summarize(&summary, output, rejects_path);
    Ok(())
}

/// One row per hit (or per note without hits), input columns passed through.
fn hits_table(
    df: &DataFrame,
    results: &[(usize, NoteSignals)],
    columns: &ColumnArgs,
) -> Result<DataFrame> {
    let mut rows: Vec<u32> = Vec::new();
    let mut note_id: Vec<String> = Vec::new();
    let mut signal: Vec<Option<String>> = Vec::new();
    let mut kind: Vec<Option<String>> = Vec::new();
    let mut probability: Vec<Option<f32>> = Vec::new();
    let mut evidence: Vec<Option<String>> = Vec::new();
    let mut char_start: Vec<Option<u32>> = Vec::new();
    let mut char_end: Vec<Option<u32>> = Vec::new();
    let mut byte_start: Vec<Option<u32>> = Vec::new();
    let mut byte_end: Vec<Option<u32>> = Vec::new();
    let mut speaker: Vec<Option<String>> = Vec::new();
    let mut attributes: Vec<Option<String>> = Vec::new();
    let mut sentiment: Vec<f32> = Vec::new();
    for (row, found) in results {
        let hits: Vec<Option<&augur_signals::Hit>> = if found.hits.is_empty() {
            vec![None]
        } else {
            found.hits.iter().map(Some).collect()
        };
        for hit in hits {
            rows.push(*row as u32);
            note_id.push(found.note_id.clone());
            sentiment.push(found.sentiment);
            signal.push(hit.map(|h| h.signal.clone()));
            kind.push(hit.map(|h| h.kind.as_str().to_string()));
            probability.push(hit.map(|h| h.probability));
            evidence.push(hit.map(|h| h.evidence.clone()));
            char_start.push(hit.map(|h| h.char_start as u32));
            char_end.push(hit.map(|h| h.char_end as u32));
            byte_start.push(hit.map(|h| h.byte_start as u32));
            byte_end.push(hit.map(|h| h.byte_end as u32));
            speaker.push(hit.map(|h| h.speaker.as_str().to_string()));
            attributes
                .push(hit.map(|h| serde_json::to_string(&h.attributes).expect("map serialises")));
        }
    }
    let own: Vec<Column> = vec![
        Column::new("note_id".into(), note_id),
        Column::new("signal".into(), signal),
        Column::new("kind".into(), kind),
        Column::new("probability".into(), probability),
        Column::new("evidence".into(), evidence),
        Column::new("char_start".into(), char_start),
        Column::new("char_end".into(), char_end),
        Column::new("byte_start".into(), byte_start),
        Column::new("byte_end".into(), byte_end),
        Column::new("speaker".into(), speaker),
        Column::new("attributes".into(), attributes),
        Column::new("sentiment".into(), sentiment),
    ];
    let own_names: Vec<String> = own.iter().map(|c| c.name().to_string()).collect();
    let take = Series::new("row".into(), rows).cast(&DataType::UInt32)?;
    let passed = df.take(take.u32().expect("u32"))?;
    let mut all = own;
    for column in passed.columns() {
        let name = column.name().to_string();
        if name == columns.text_column {
            continue;
        }
        // An input column named like an output column is kept under `input_<name>` (regression:
        // an input `signal` or `note_id` column was dropped).
        let mut column = column.clone();
        if own_names.contains(&name) {
            column.rename(format!("input_{name}").into());
        }
        all.push(column);
    }
    Ok(DataFrame::new(passed.height(), all)?)
}

fn summarize(summary: &JobSummary, output: &Path, rejects_path: &Path) {
    let done = &summary.checkpoint;
    let mut counters = done.counters.clone();
    let with_hits = counters.remove(NOTES_WITH_HITS).unwrap_or(0);
    eprintln!(
        "{} rows: {} analysed ({with_hits} with signals), {} rejected -> {}",
        summary.rows,
        done.notes_done,
        done.rejects.rows,
        output.display()
    );
    for (signal, n) in &counters {
        eprintln!("  {signal:<26} {n}");
    }
    if done.rejects.rows > 0 {
        eprintln!("rejected rows (reasons in {}):", rejects_path.display());
        for r in &done.first_rejects {
            eprintln!("  row {} ({}): {}", r.row, r.id, r.reason);
        }
    }
}
