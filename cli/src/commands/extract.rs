//! `augur extract`: signals with evidence from a table of notes, or from one `--text`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use augur_signals::{Note, NoteSignals, SignalExtractor};
use chrono::NaiveDate;
use polars::prelude::{
    Column, CsvWriter, DataFrame, DataType, JsonFormat, JsonWriter, NamedFrom, SerWriter, Series,
};

use crate::commands::signals::{build_extractor, PackArgs};
use crate::commands::ModelArgs;
use crate::notes::{notes_from_table, write_rejects, ColumnArgs, NotesTable, Reject};
use crate::progress::Progress;
use crate::table::{ensure_parent, read_table, write_table, Format};

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
    /// Continue an interrupted run of the same input, output and settings from its last
    /// checkpoint (saved after every chunk; the output appears only when complete).
    #[arg(long)]
    pub resume: bool,
    /// Notes per chunk (one checkpoint per chunk).
    #[arg(long, default_value_t = 64)]
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
    let extractor = build_extractor(&args.model, &args.pack)?;
    if let Some(text) = &args.text {
        let date = args.date.unwrap_or_else(today);
        let found = extractor.extract(&Note::new("text", text.as_str()).with_date(date))?;
        return print_hits(&found, args.json);
    }
    let (input, output) = (
        args.input.as_deref().expect("clap"),
        args.output.as_deref().expect("clap"),
    );
    let rejects_path = args
        .rejects
        .clone()
        .unwrap_or_else(|| output.with_extension("rejects.csv"));
    let settings = format!(
        "{:?} {:?} {:?} {}",
        args.columns, args.pack, args.model, args.chunk_size
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

/// Progress of a table run, saved after every chunk so `--resume` can continue after a crash.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    /// Identity of the input, output and settings; a resume with anything changed starts over.
    fingerprint: String,
    /// Notes (usable rows) already written.
    notes_done: usize,
    /// Length of the partial output after the last complete chunk.
    partial_bytes: u64,
    /// Hits per signal so far, for the summary.
    hits: BTreeMap<String, usize>,
    /// Notes with at least one hit so far.
    with_hits: usize,
}

/// Where the partial output and checkpoint of `output` live.
fn partial_paths(output: &Path, format: Format) -> (PathBuf, PathBuf) {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = if format == Format::Csv {
        "csv"
    } else {
        "ndjson"
    };
    (
        output.with_file_name(format!("{name}.partial.{ext}")),
        output.with_file_name(format!("{name}.checkpoint.json")),
    )
}

fn fingerprint(input: &Path, output: &Path, settings: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    input
        .canonicalize()
        .unwrap_or_else(|_| input.to_path_buf())
        .hash(&mut h);
    output.hash(&mut h);
    if let Ok(meta) = std::fs::metadata(input) {
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    }
    settings.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn run_table(
    extractor: &SignalExtractor,
    input: &Path,
    output: &Path,
    rejects_path: &Path,
    columns: &ColumnArgs,
    options: &TableOptions,
) -> Result<()> {
    let format = Format::of(output)?;
    ensure_parent(output)?;
    let df = read_table(input)?;
    let NotesTable {
        notes,
        rejects,
        rows,
    } = notes_from_table(&df, input, columns)?;
    write_rejects(&rejects, rejects_path)?;
    let (partial, checkpoint_path) = partial_paths(output, format);
    let fingerprint = fingerprint(input, output, &options.settings);
    let saved: Option<Checkpoint> = std::fs::read_to_string(&checkpoint_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut checkpoint = match saved {
        Some(c) if options.resume && c.fingerprint == fingerprint && partial.is_file() => {
            eprintln!(
                "resuming: {} of {} notes already done ({})",
                c.notes_done,
                notes.len(),
                partial.display()
            );
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&partial)
                .with_context(|| format!("{}", partial.display()))?;
            file.set_len(c.partial_bytes).with_context(|| {
                format!(
                    "{}: cannot truncate to the last checkpoint",
                    partial.display()
                )
            })?;
            c
        }
        saved => {
            if saved.is_some() && !options.resume {
                eprintln!("note: an interrupted run of this output was found; starting over (pass --resume to continue it)");
            } else if saved.is_some() {
                eprintln!("note: the interrupted run used other input or settings; starting over");
            }
            std::fs::write(&partial, b"")
                .with_context(|| format!("{}: cannot create", partial.display()))?;
            Checkpoint {
                fingerprint,
                ..Checkpoint::default()
            }
        }
    };

    let mut progress = Progress::new("extract", notes.len());
    progress.advance(checkpoint.notes_done);
    for chunk in notes[checkpoint.notes_done.min(notes.len())..].chunks(options.chunk_size.max(1)) {
        let batch: Vec<Note> = chunk.iter().map(|(_, n)| n.clone()).collect();
        let found = extractor.extract_batch(&batch).with_context(|| {
            format!(
                "{}: extracting rows {}..{}",
                input.display(),
                chunk[0].0 + 1,
                chunk[chunk.len() - 1].0 + 1
            )
        })?;
        let results: Vec<(usize, NoteSignals)> =
            chunk.iter().map(|(row, _)| *row).zip(found).collect();
        let mut part = hits_table(&df, &results, columns)?;
        append_chunk(&mut part, &partial, format, checkpoint.notes_done == 0)?;
        checkpoint.notes_done += chunk.len();
        checkpoint.partial_bytes = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        for (_, r) in &results {
            checkpoint.with_hits += usize::from(!r.hits.is_empty());
            for hit in &r.hits {
                *checkpoint.hits.entry(hit.signal.clone()).or_default() += 1;
            }
        }
        let tmp = checkpoint_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string(&checkpoint)?)
            .and_then(|_| std::fs::rename(&tmp, &checkpoint_path))
            .with_context(|| format!("{}: cannot save checkpoint", checkpoint_path.display()))?;
        progress.advance(chunk.len());
    }

    if notes.is_empty() {
        write_table(&mut hits_table(&df, &[], columns)?, output)?;
        let _ = std::fs::remove_file(&partial);
    } else if format == Format::Parquet {
        let mut all = read_table(&partial)?;
        write_table(&mut all, output)?;
        std::fs::remove_file(&partial).with_context(|| format!("{}", partial.display()))?;
    } else {
        std::fs::rename(&partial, output)
            .with_context(|| format!("{}: cannot move into place", output.display()))?;
    }
    let _ = std::fs::remove_file(&checkpoint_path);
    summarize(
        &checkpoint,
        notes.len(),
        &rejects,
        rows,
        output,
        rejects_path,
    );
    Ok(())
}

/// Appends one chunk's rows to the partial output (CSV with a header only on the first chunk).
fn append_chunk(df: &mut DataFrame, partial: &Path, format: Format, first: bool) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(partial)
        .with_context(|| format!("{}", partial.display()))?;
    let written = if format == Format::Csv {
        CsvWriter::new(&mut file).include_header(first).finish(df)
    } else {
        JsonWriter::new(&mut file)
            .with_json_format(JsonFormat::JsonLines)
            .finish(df)
    };
    written.map_err(|e| anyhow::anyhow!("{}: cannot append rows: {e}", partial.display()))?;
    file.sync_data()
        .with_context(|| format!("{}", partial.display()))
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
        if name == columns.text_column || own_names.contains(&name) {
            continue;
        }
        all.push(column.clone());
    }
    Ok(DataFrame::new(passed.height(), all)?)
}

fn summarize(
    done: &Checkpoint,
    analysed: usize,
    rejects: &[Reject],
    rows: usize,
    output: &Path,
    rejects_path: &Path,
) {
    eprintln!(
        "{rows} rows: {analysed} analysed ({} with signals), {} rejected -> {}",
        done.with_hits,
        rejects.len(),
        output.display()
    );
    for (signal, n) in &done.hits {
        eprintln!("  {signal:<26} {n}");
    }
    if !rejects.is_empty() {
        eprintln!("rejected rows (reasons in {}):", rejects_path.display());
        for r in rejects.iter().take(10) {
            eprintln!("  row {} ({}): {}", r.row, r.id, r.reason);
        }
    }
}
