//! `augur extract`: signals with evidence from a table of notes, or from one `--text`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use augur_signals::{Note, NoteSignals, SignalExtractor};
use chrono::NaiveDate;
use polars::prelude::{Column, DataFrame, DataType, NamedFrom, Series};

use crate::commands::signals::{build_extractor, PackArgs};
use crate::commands::ModelArgs;
use crate::notes::{notes_from_table, write_rejects, ColumnArgs, NotesTable, Reject};
use crate::progress::Progress;
use crate::table::{read_table, write_table};

/// Find buying and risk signals, with the clause that carries each one.
///
/// Table mode writes one row per signal hit (notes without hits get one row with an empty
/// `signal`, so every note and its sentiment appear), with the input's other columns passed
/// through. Rows that cannot be processed go to a rejects file with the reason.
///
/// Examples:
///   augur extract notes.csv -o signals.parquet
///   augur extract --text "客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500" --date 2026-12-04
#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// Input table (.csv, .parquet, .ndjson/.jsonl). Not needed with --text.
    #[arg(required_unless_present = "text")]
    pub input: Option<PathBuf>,
    /// Output table; the format follows the extension.
    #[arg(short, long, required_unless_present = "text")]
    pub output: Option<PathBuf>,
    /// Analyse this one text and print the hits instead of reading a table.
    #[arg(long, conflicts_with_all = ["input", "output"])]
    pub text: Option<String>,
    /// With --text: the note's date for resolving 「下个月」 / "next quarter" (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<NaiveDate>,
    /// With --text: print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Notes per extractor call.
const NOTES_PER_STEP: usize = 64;

/// Runs `augur extract`.
pub fn run(args: ExtractArgs) -> Result<()> {
    let extractor = build_extractor(&args.model, &args.pack)?;
    if let Some(text) = &args.text {
        let date = args.date.unwrap_or_else(today);
        let found = extractor.extract(&Note::new("text", text.as_str()).with_date(date))?;
        return print_hits(&found, args.json);
    }
    let (input, output) = (args.input.as_deref().expect("clap"), args.output.as_deref().expect("clap"));
    let rejects_path = args.rejects.clone().unwrap_or_else(|| output.with_extension("rejects.csv"));
    run_table(&extractor, input, output, &rejects_path, &args.columns)
}

/// Today's date in UTC.
pub fn today() -> NaiveDate {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days as i64)
}

fn print_hits(found: &NoteSignals, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(found)?);
        return Ok(());
    }
    println!("sentiment {:+.2} over {} clauses; {} signal(s)", found.sentiment, found.segments, found.hits.len());
    if found.hits.is_empty() {
        return Ok(());
    }
    println!("{:<24} {:>5}  {:<9} {:>9}  evidence / attributes", "signal", "p", "speaker", "chars");
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

fn run_table(extractor: &SignalExtractor, input: &Path, output: &Path, rejects_path: &Path, columns: &ColumnArgs) -> Result<()> {
    let df = read_table(input)?;
    let NotesTable { notes, rejects, rows } = notes_from_table(&df, input, columns)?;
    let mut progress = Progress::new("extract", notes.len());
    let mut results: Vec<(usize, NoteSignals)> = Vec::with_capacity(notes.len());
    for chunk in notes.chunks(NOTES_PER_STEP) {
        let batch: Vec<Note> = chunk.iter().map(|(_, n)| n.clone()).collect();
        let found = extractor.extract_batch(&batch).with_context(|| {
            format!("{}: extracting rows {}..{}", input.display(), chunk[0].0 + 1, chunk[chunk.len() - 1].0 + 1)
        })?;
        results.extend(chunk.iter().map(|(row, _)| *row).zip(found));
        progress.advance(chunk.len());
    }

    let mut out = hits_table(&df, &results, columns)?;
    write_table(&mut out, output)?;
    write_rejects(&rejects, rejects_path)?;
    summarize(&results, &rejects, rows, output, rejects_path);
    Ok(())
}

/// One row per hit (or per note without hits), input columns passed through.
fn hits_table(df: &DataFrame, results: &[(usize, NoteSignals)], columns: &ColumnArgs) -> Result<DataFrame> {
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
        let hits: Vec<Option<&augur_signals::Hit>> =
            if found.hits.is_empty() { vec![None] } else { found.hits.iter().map(Some).collect() };
        for hit in hits {
            rows.push(*row as u32);
            note_id.push(found.note_id.clone());
            sentiment.push(found.sentiment);
            signal.push(hit.map(|h| h.signal.clone()));
            kind.push(hit.map(|h| serde_json::to_value(h.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()));
            probability.push(hit.map(|h| h.probability));
            evidence.push(hit.map(|h| h.evidence.clone()));
            char_start.push(hit.map(|h| h.char_start as u32));
            char_end.push(hit.map(|h| h.char_end as u32));
            byte_start.push(hit.map(|h| h.byte_start as u32));
            byte_end.push(hit.map(|h| h.byte_end as u32));
            speaker.push(hit.map(|h| h.speaker.as_str().to_string()));
            attributes.push(hit.map(|h| serde_json::to_string(&h.attributes).expect("map serialises")));
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
        if name == columns.text_column || own_names.contains(&name) {
            continue;
        }
        all.push(column.clone());
    }
    Ok(DataFrame::new(passed.height(), all)?)
}

fn summarize(results: &[(usize, NoteSignals)], rejects: &[Reject], rows: usize, output: &Path, rejects_path: &Path) {
    let mut per_signal: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, found) in results {
        for hit in &found.hits {
            *per_signal.entry(hit.signal.as_str()).or_default() += 1;
        }
    }
    let with_hits = results.iter().filter(|(_, f)| !f.hits.is_empty()).count();
    eprintln!(
        "{rows} rows: {} analysed ({with_hits} with signals), {} rejected -> {}",
        results.len(),
        rejects.len(),
        output.display()
    );
    for (signal, n) in &per_signal {
        eprintln!("  {signal:<26} {n}");
    }
    if !rejects.is_empty() {
        eprintln!("rejected rows (reasons in {}):", rejects_path.display());
        for r in rejects.iter().take(10) {
            eprintln!("  row {} ({}): {}", r.row, r.id, r.reason);
        }
    }
}
