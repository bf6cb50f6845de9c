//! Jobs over tables of any size. The input is read chunk by chunk (CSV records / NDJSON lines
//! parsed a chunk at a time; Parquet through polars' streaming engine), so memory is bounded by a
//! chunk, not by the file; each chunk's output and rejects are appended to
//! partial files and a checkpoint is saved, so a job killed at any point continues where it
//! stopped with `--resume`; outputs appear under their final names only when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::{
    len, polars_bail, CsvEncoding, CsvReadOptions, CsvWriter, DataFrame, DataType, IdxSize,
    JsonFormat, JsonReader, JsonWriter, LazyFrame, ParquetReader, ParquetWriter, PlRefPath,
    PlanCallback, PolarsError, PolarsResult, ScanArgsParquet, SchemaRef, SerReader, SerWriter,
};
use serde::{Deserialize, Serialize};

use crate::notes::{rejects_table, Reject};
use crate::progress::Progress;
use crate::table::{ensure_parent, nested_as_json, polars_reason, Format};

/// Rows sampled to infer column types of CSV and NDJSON input.
const SCHEMA_INFERENCE_ROWS: usize = 10_000;

/// Number of rows in a table file (CSV records, non-blank NDJSON lines, Parquet rows).
pub fn count_rows(path: &Path) -> Result<usize> {
    if Format::of(path)? != Format::Parquet {
        let mut records = RecordReader::open(path)?;
        let mut record = Vec::new();
        let mut rows = 0;
        while records.next_record(&mut record)? {
            record.clear();
            rows += 1;
        }
        return Ok(rows);
    }
    let counted = scan_parquet(path)?
        .select([len()])
        .collect()
        .with_context(|| format!("{}: cannot count rows", path.display()))?;
    counted
        .columns()
        .first()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<usize>())
        .ok_or_else(|| anyhow!("{}: cannot count rows", path.display()))
}

/// A consecutive part of an input table, as [`for_each_chunk`] delivers it.
pub enum Piece {
    /// Rows that were read; `first_row` is the 0-based row of the table's first row in the file.
    Rows {
        /// 0-based row of `table`'s first row in the file.
        first_row: usize,
        /// The rows.
        table: DataFrame,
    },
    /// A CSV record or NDJSON line that cannot be read (ragged, malformed, or a value that does
    /// not fit its column's type), with the parser's reason.
    Unreadable {
        /// 1-based data row.
        row: usize,
        /// What the parser found.
        reason: String,
    },
}

impl Piece {
    /// Input rows this piece stands for.
    pub fn rows(&self) -> usize {
        match self {
            Piece::Rows { table, .. } => table.height(),
            Piece::Unreadable { .. } => 1,
        }
    }
}

/// An unreadable record as an error that names the file and the row.
pub fn unreadable_error(path: &Path, row: usize, reason: &str) -> anyhow::Error {
    anyhow!("{}: data row {row}: {reason}", path.display())
}

/// Which CSV columns are read as text, exactly as written, where type inference would turn the
/// id `007` into 7 (NDJSON and Parquet carry their own types).
#[derive(Debug, Clone)]
pub enum TextColumns {
    /// These columns (those that exist).
    Named(Vec<String>),
    /// Every column (jobs that pass the input through unchanged).
    All,
}

/// What [`for_each_chunk`] does with a record that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Deliver it as a [`Piece::Unreadable`] between the readable rows around it.
    Deliver,
    /// Fail, naming its row, before any piece of its chunk is delivered.
    Fail,
}

/// Calls `each` with consecutive pieces of `path`: chunks of `chunk_rows` rows (about that many
/// for Parquet), split around records that cannot be read (see [`Unreadable`]); reading starts
/// after the first `skip` rows. When no rows are delivered (none left, or none readable), one
/// empty chunk with the table's columns follows. Memory held: one chunk of CSV / NDJSON records
/// (plus, once at the start, the first 10,000 records to infer column types); for Parquet, up to
/// three chunks and the row groups polars is decoding.
pub fn for_each_chunk(
    path: &Path,
    skip: usize,
    chunk_rows: usize,
    text_columns: &TextColumns,
    unreadable: Unreadable,
    mut each: impl FnMut(Piece) -> Result<()>,
) -> Result<()> {
    let chunk_rows = chunk_rows.max(1);
    let mut delivered_rows = false;
    let mut counted = |piece: Piece| {
        delivered_rows |= matches!(piece, Piece::Rows { .. });
        each(piece)
    };
    let empty = match Format::of(path)? {
        Format::Parquet => {
            for_each_parquet_chunk(path, skip, chunk_rows, &mut counted)?;
            scan_parquet(path)?.limit(0).collect().ok()
        }
        format => {
            let reading = TextReading {
                format,
                text_columns,
                unreadable,
            };
            for_each_text_chunk(path, &reading, skip, chunk_rows, &mut counted)?
        }
    };
    if !delivered_rows {
        if let Some(empty) = empty {
            each(Piece::Rows {
                first_row: skip,
                table: empty,
            })?;
        }
    }
    Ok(())
}

/// How a CSV or NDJSON file is read.
struct TextReading<'a> {
    format: Format,
    text_columns: &'a TextColumns,
    unreadable: Unreadable,
}

/// CSV and NDJSON: records are read as bytes and each chunk is parsed on its own, with the column
/// types inferred once from the first rows (so every chunk has the same schema; CSV
/// `text_columns` are text). Returns the table's empty frame (its columns, no rows).
fn for_each_text_chunk(
    path: &Path,
    reading: &TextReading,
    skip: usize,
    chunk_rows: usize,
    mut each: impl FnMut(Piece) -> Result<()>,
) -> Result<Option<DataFrame>> {
    let format = reading.format;
    let mut records = RecordReader::open(path)?;
    let mut sample = Vec::new();
    let mut sample_ends = Vec::new();
    for _ in 0..SCHEMA_INFERENCE_ROWS {
        if !records.next_record(&mut sample)? {
            break;
        }
        sample_ends.push(sample.len());
    }
    if sample.is_empty() && records.header.trim_ascii().is_empty() {
        bail!(
            "{}: the file is empty (no rows, and no header to tell its columns)",
            path.display()
        );
    }
    let inferred = infer_columns(path, format, &records.header, &sample, &sample_ends)?;
    drop(sample);
    let mut schema = (**inferred.schema()).clone();
    if format == Format::Csv {
        let names: Vec<String> = match reading.text_columns {
            TextColumns::Named(names) => names.clone(),
            TextColumns::All => schema.iter_names().map(|n| n.to_string()).collect(),
        };
        for name in names {
            if schema.contains(&name) {
                schema.with_column(name.as_str().into(), DataType::String);
            }
        }
    }
    let schema: SchemaRef = Arc::new(schema);
    let empty = DataFrame::empty_with_schema(&schema);

    let mut records = RecordReader::open(path)?;
    let mut body = Vec::new();
    for _ in 0..skip {
        if !records.next_record(&mut body)? {
            break;
        }
        body.clear();
    }
    let mut first_row = skip;
    let mut ends = Vec::new();
    loop {
        let mut rows = 0;
        while rows < chunk_rows && records.next_record(&mut body)? {
            rows += 1;
            ends.push(body.len());
        }
        if rows == 0 {
            return Ok(Some(empty));
        }
        let pieces = parse_records(
            path,
            format,
            &records.header,
            &body,
            &ends,
            &schema,
            first_row,
        )?;
        body.clear();
        ends.clear();
        if reading.unreadable == Unreadable::Fail {
            if let Some(Piece::Unreadable { row, reason }) = pieces
                .iter()
                .find(|piece| matches!(piece, Piece::Unreadable { .. }))
            {
                return Err(unreadable_error(path, *row, reason));
            }
        }
        for piece in pieces {
            each(piece)?;
        }
        first_row += rows;
    }
}

/// The columns and their types, inferred from the sample records (`ends` are the byte offsets
/// where each record of `body` ends). Records that cannot be read alone are left out here; the
/// chunks report them with their rows.
fn infer_columns(
    path: &Path,
    format: Format,
    header: &[u8],
    body: &[u8],
    ends: &[usize],
) -> Result<DataFrame> {
    if let Ok(table) = parse_bytes(format, header, body, None) {
        return Ok(table);
    }
    let mut readable = Vec::with_capacity(body.len());
    let mut start = 0;
    for &end in ends {
        let record = &body[start..end];
        if parse_bytes(format, header, record, None).is_ok() {
            readable.extend_from_slice(record);
        }
        start = end;
    }
    parse_bytes(format, header, &readable, None).map_err(|error| {
        anyhow!(
            "{}: cannot tell the columns from the first {} rows as {format}: {}",
            path.display(),
            ends.len(),
            polars_reason(&error)
        )
    })
}

/// Parses a chunk of CSV records (under `header`) or NDJSON lines; `ends` are the byte offsets
/// where each record of `body` ends, and `first_row` is the 0-based row of the first. A record
/// that does not parse alone becomes a [`Piece::Unreadable`] with the parser's reason, and the
/// readable records around it are parsed as their own pieces.
fn parse_records(
    path: &Path,
    format: Format,
    header: &[u8],
    body: &[u8],
    ends: &[usize],
    schema: &SchemaRef,
    first_row: usize,
) -> Result<Vec<Piece>> {
    let parse = |bytes: &[u8]| parse_bytes(format, header, bytes, Some(schema.clone()));
    let error = match parse(body) {
        Ok(table) => return Ok(vec![Piece::Rows { first_row, table }]),
        Err(error) => error,
    };
    let whole_chunk_error = |row: usize, error: &PolarsError| {
        anyhow!(
            "{}: cannot read rows from data row {row} as {format}: {}",
            path.display(),
            polars_reason(error)
        )
    };
    let mut pieces = Vec::new();
    // The current run of readable records: (index of its first record, its first byte).
    let mut run: Option<(usize, usize)> = None;
    let end_run = |run: Option<(usize, usize)>, to: usize, pieces: &mut Vec<Piece>| {
        if let Some((first, from)) = run {
            let table = parse(&body[from..to])
                .map_err(|error| whole_chunk_error(first_row + first + 1, &error))?;
            pieces.push(Piece::Rows {
                first_row: first_row + first,
                table,
            });
        }
        Ok::<_, anyhow::Error>(())
    };
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        match parse(&body[start..end]) {
            Ok(_) => {
                run.get_or_insert((i, start));
            }
            Err(record_error) => {
                end_run(run.take(), start, &mut pieces)?;
                pieces.push(Piece::Unreadable {
                    row: first_row + i + 1,
                    reason: format!(
                        "cannot read it as {format}: {}",
                        polars_reason(&record_error)
                    ),
                });
            }
        }
        start = end;
    }
    end_run(run.take(), start, &mut pieces)?;
    if !pieces.iter().any(|p| matches!(p, Piece::Unreadable { .. })) {
        // Every record reads alone but not together.
        return Err(whole_chunk_error(first_row + 1, &error));
    }
    Ok(pieces)
}

/// Parses CSV records (under `header`) or NDJSON lines with polars.
fn parse_bytes(
    format: Format,
    header: &[u8],
    body: &[u8],
    schema: Option<SchemaRef>,
) -> PolarsResult<DataFrame> {
    if format == Format::Csv {
        let mut bytes = Vec::with_capacity(header.len() + body.len());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(body);
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(SCHEMA_INFERENCE_ROWS))
            .with_schema(schema)
            // Invalid UTF-8 becomes U+FFFD, so such rows are rejected with a reason, not lost.
            .map_parse_options(|o| o.with_encoding(CsvEncoding::LossyUtf8))
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
    } else {
        // polars panics on a malformed line between good ones (a truncated object mid-chunk):
        // every line must be a JSON object before polars sees the chunk.
        for line in body.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if line.first() != Some(&b'{') {
                polars_bail!(ComputeError: "not a JSON object");
            }
            if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                // serde counts lines within this one line: only the column means anything.
                let text = error.to_string();
                let reason = text.split(" at line ").next().unwrap_or(&text);
                polars_bail!(ComputeError: "not a JSON object: {reason} at column {}", error.column());
            }
        }
        let reader = JsonReader::new(Cursor::new(body))
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(NonZeroUsize::new(SCHEMA_INFERENCE_ROWS));
        match schema {
            Some(schema) => reader.with_schema(schema),
            None => reader,
        }
        .finish()
    }
}

/// Reads a CSV file record by record (a quoted field may span lines; comma-separated) or an
/// NDJSON file line by line, as raw bytes; blank lines are skipped in both.
struct RecordReader {
    reader: BufReader<File>,
    /// The CSV header line (empty for NDJSON).
    header: Vec<u8>,
    csv: bool,
}

impl RecordReader {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let mut records = Self {
            reader: BufReader::with_capacity(1 << 20, file),
            header: Vec::new(),
            csv: Format::of(path)? == Format::Csv,
        };
        if records.csv {
            let mut header = Vec::new();
            records.next_record(&mut header)?;
            records.header = header;
        } else if records.reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
            // A byte-order mark is no part of the first line's JSON.
            records.reader.consume(3);
        }
        Ok(records)
    }

    /// Appends the next record (with its line ending) to `out`; false at the end of the file.
    fn next_record(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        let start = out.len();
        let mut quoting = CsvQuoting::default();
        loop {
            let line_start = out.len();
            if self.reader.read_until(b'\n', out)? == 0 {
                // End of file: a last record without a line ending still counts.
                return Ok(out.len() > start && !out[start..].trim_ascii().is_empty());
            }
            if self.csv {
                if quoting.scan(&out[line_start..]) {
                    continue;
                }
                // A blank line between records is no record (as pandas reads CSV).
                if out[start..].trim_ascii().is_empty() {
                    out.truncate(start);
                    continue;
                }
                return Ok(true);
            } else if out[line_start..].trim_ascii().is_empty() {
                out.truncate(line_start);
            } else {
                return Ok(true);
            }
        }
    }
}

/// Tracks whether a CSV record continues past a line end: a quote opens a quoted field only at the
/// start of a field, and `""` inside one is an escaped quote.
#[derive(Default)]
struct CsvQuoting {
    in_quotes: bool,
}

impl CsvQuoting {
    /// Scans one physical line; returns true when the record continues on the next line.
    fn scan(&mut self, line: &[u8]) -> bool {
        let mut field_start = !self.in_quotes;
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if self.in_quotes {
                if b == b'"' {
                    if line.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        self.in_quotes = false;
                    }
                }
            } else if b == b'"' && field_start {
                self.in_quotes = true;
            } else {
                field_start = b == b',';
            }
            if self.in_quotes {
                field_start = false;
            }
            i += 1;
        }
        self.in_quotes
    }
}

/// Parquet: polars' streaming engine reads row groups and hands over batches of about
/// `chunk_rows` rows; it waits while a batch is being processed.
fn for_each_parquet_chunk(
    path: &Path,
    skip: usize,
    chunk_rows: usize,
    mut each: impl FnMut(Piece) -> Result<()>,
) -> Result<()> {
    let mut scan = scan_parquet(path)?;
    if skip > 0 {
        scan = scan.slice(skip as i64, IdxSize::MAX);
    }
    let (send, receive) = sync_channel::<DataFrame>(1);
    let plan = scan
        .sink_batches(
            // Returning `true` stops the scan: the receiver is gone (the job failed).
            PlanCallback::new(move |chunk| Ok(send.send(chunk).is_err())),
            true,
            NonZeroUsize::new(chunk_rows),
        )
        .with_context(|| format!("{}: cannot plan a chunked read", path.display()))?;
    let reader = std::thread::spawn(move || plan.collect().map(|_| ()));
    let mut next_row = skip;
    let mut outcome = Ok(());
    for chunk in receive.iter() {
        let rows = chunk.height();
        let piece = Piece::Rows {
            first_row: next_row,
            table: chunk,
        };
        if let Err(e) = each(piece) {
            outcome = Err(e);
            break;
        }
        next_row += rows;
    }
    drop(receive);
    let read = reader
        .join()
        .map_err(|_| anyhow!("{}: the reader thread panicked", path.display()))?;
    outcome?;
    read.with_context(|| format!("{}: reading failed after row {next_row}", path.display()))
}

/// A lazy scan of a Parquet file.
fn scan_parquet(path: &Path) -> Result<LazyFrame> {
    let source = PlRefPath::try_from_path(path)
        .with_context(|| format!("{}: not a usable path", path.display()))?;
    LazyFrame::scan_parquet(source, ScanArgsParquet::default())
        .with_context(|| format!("{}: cannot read as Parquet", path.display()))
}

/// Rows per row group of a Parquet output.
pub const ROW_GROUP_ROWS: usize = 8192;

/// How far a [`PartialTable`] got: what a checkpoint records to restore it.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct PartialState {
    /// Bytes written (CSV, NDJSON) or part files written (Parquet).
    pub written: u64,
    /// Rows written.
    pub rows: usize,
}

/// An output table written chunk by chunk under a temporary name. CSV and NDJSON are appended
/// to one file; Parquet chunks go to part files that become the row groups of the final file.
pub struct PartialTable {
    path: PathBuf,
    format: Format,
    partial: PathBuf,
    state: PartialState,
}

impl PartialTable {
    /// A new, empty partial table for `path` (any earlier partial output is discarded).
    pub fn create(path: &Path) -> Result<Self> {
        let mut table = Self::at(path)?;
        table.restore(PartialState::default())?;
        Ok(table)
    }

    /// The partial table of `path` cut back to `state` (as recorded by a checkpoint).
    pub fn resume(path: &Path, state: PartialState) -> Result<Self> {
        let mut table = Self::at(path)?;
        table.restore(state)?;
        Ok(table)
    }

    /// True when the partial output of `path` still holds everything `state` recorded (so the
    /// run can continue from there).
    pub fn can_resume(path: &Path, state: PartialState) -> Result<bool> {
        let table = Self::at(path)?;
        if state.written == 0 {
            return Ok(true);
        }
        Ok(if table.format == Format::Parquet {
            (0..state.written).all(|i| table.part(i).is_file())
        } else {
            std::fs::metadata(&table.partial).is_ok_and(|m| m.len() >= state.written)
        })
    }

    /// Part file `index` of a Parquet output.
    fn part(&self, index: u64) -> PathBuf {
        self.partial.join(format!("{index:08}.parquet"))
    }

    fn at(path: &Path) -> Result<Self> {
        let format = Format::of(path)?;
        ensure_parent(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let partial = match format {
            Format::Parquet => path.with_file_name(format!("{name}.parts")),
            _ => path.with_file_name(format!("{name}.partial")),
        };
        Ok(Self {
            path: path.to_path_buf(),
            format,
            partial,
            state: PartialState::default(),
        })
    }

    fn restore(&mut self, state: PartialState) -> Result<()> {
        let partial = &self.partial;
        if self.format == Format::Parquet {
            if state.written == 0 && partial.exists() {
                std::fs::remove_dir_all(partial)
                    .with_context(|| format!("{}: cannot clear", partial.display()))?;
            }
            std::fs::create_dir_all(partial)
                .with_context(|| format!("{}: cannot create", partial.display()))?;
            // Parts after the checkpoint belong to a chunk that never completed.
            let entries = std::fs::read_dir(partial)
                .with_context(|| format!("{}: cannot list", partial.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("{}: cannot list", partial.display()))?;
                let index = entry
                    .file_name()
                    .to_string_lossy()
                    .split('.')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok());
                if index.is_none_or(|i| i >= state.written) {
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("{}: cannot remove", entry.path().display()))?;
                }
            }
        } else {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(partial)
                .with_context(|| format!("{}: cannot open", partial.display()))?;
            file.set_len(state.written).with_context(|| {
                format!("{}: cannot truncate to the checkpoint", partial.display())
            })?;
        }
        self.state = state;
        Ok(())
    }

    /// Appends `chunk` (CSV gets its header with the first chunk) and syncs it to disk.
    pub fn append(&mut self, chunk: &mut DataFrame) -> Result<()> {
        let partial = &self.partial;
        if self.format == Format::Parquet {
            let part = self.part(self.state.written);
            let mut file = File::create(&part)
                .with_context(|| format!("{}: cannot create", part.display()))?;
            ParquetWriter::new(&mut file)
                .finish(chunk)
                .and_then(|_| Ok(file.sync_data()?))
                .with_context(|| format!("{}: cannot write", part.display()))?;
            self.state.written += 1;
        } else {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(partial)
                .with_context(|| format!("{}: cannot open", partial.display()))?;
            let written = if self.format == Format::Csv {
                nested_as_json(chunk)?;
                CsvWriter::new(&mut file)
                    .include_header(self.state.written == 0)
                    .finish(chunk)
            } else {
                JsonWriter::new(&mut file)
                    .with_json_format(JsonFormat::JsonLines)
                    .finish(chunk)
            };
            written
                .and_then(|_| Ok(file.sync_data()?))
                .with_context(|| format!("{}: cannot append rows", partial.display()))?;
            self.state.written = file
                .metadata()
                .with_context(|| format!("{}: cannot read its size", partial.display()))?
                .len();
        }
        self.state.rows += chunk.height();
        Ok(())
    }

    /// Removes what was written so far (the final file, if any, stays).
    pub fn remove_partial(&self) {
        if self.format == Format::Parquet {
            std::fs::remove_dir_all(&self.partial).ok();
        } else {
            std::fs::remove_file(&self.partial).ok();
        }
    }

    /// What a checkpoint needs to restore this table.
    pub fn state(&self) -> PartialState {
        self.state
    }

    /// Moves the complete table under its final name. Parquet parts are read back one at a time
    /// and rewritten as row groups of [`ROW_GROUP_ROWS`] rows (so the file does not depend on
    /// where chunks ended).
    pub fn finish(self) -> Result<()> {
        let (path, partial) = (&self.path, &self.partial);
        if self.format != Format::Parquet {
            return std::fs::rename(partial, path)
                .with_context(|| format!("{}: cannot move into place", path.display()));
        }
        let staging = path.with_file_name(format!(
            "{}.partial",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut file = Some(
            File::create(&staging)
                .with_context(|| format!("{}: cannot create", staging.display()))?,
        );
        let write_failed = || format!("{}: cannot write", staging.display());
        let mut writer = None;
        let mut pending: Option<DataFrame> = None;
        for index in 0..self.state.written {
            let part = self.part(index);
            let chunk = File::open(&part)
                .map_err(anyhow::Error::from)
                .and_then(|f| Ok(ParquetReader::new(f).finish()?))
                .with_context(|| format!("{}: cannot read", part.display()))?;
            let writer = match &mut writer {
                Some(w) => w,
                None => writer.insert(
                    ParquetWriter::new(file.take().expect("one writer"))
                        .batched(chunk.schema())
                        .with_context(write_failed)?,
                ),
            };
            let mut rows = match pending.take() {
                Some(mut rows) => {
                    rows.vstack_mut(&chunk).with_context(write_failed)?;
                    rows
                }
                None => chunk,
            };
            while rows.height() >= ROW_GROUP_ROWS {
                let mut group = rows.slice(0, ROW_GROUP_ROWS);
                group.rechunk_mut();
                writer.write_batch(&group).with_context(write_failed)?;
                rows = rows.slice(ROW_GROUP_ROWS as i64, rows.height() - ROW_GROUP_ROWS);
            }
            pending = Some(rows);
        }
        match (writer, pending) {
            (Some(mut writer), Some(mut rows)) => {
                rows.rechunk_mut();
                writer.write_batch(&rows).with_context(write_failed)?;
                writer.finish().with_context(write_failed)?;
            }
            (Some(writer), None) => {
                writer.finish().with_context(write_failed)?;
            }
            (None, _) => {
                ParquetWriter::new(file.take().expect("no writer yet"))
                    .finish(&mut DataFrame::empty())
                    .with_context(write_failed)?;
            }
        }
        File::open(&staging)
            .and_then(|f| f.sync_all())
            .with_context(write_failed)?;
        std::fs::rename(&staging, path)
            .with_context(|| format!("{}: cannot move into place", path.display()))?;
        std::fs::remove_dir_all(partial)
            .with_context(|| format!("{}: cannot remove", partial.display()))
    }

    /// Removes the partial output and any earlier complete file (used when a table stays empty).
    pub fn discard(self) -> Result<()> {
        self.remove_partial();
        if self.path.exists() {
            std::fs::remove_file(&self.path)
                .with_context(|| format!("{}: cannot remove stale file", self.path.display()))?;
        }
        Ok(())
    }
}

/// A job's progress, saved after every chunk.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Identity of the input, output and settings; a resume with anything changed starts over.
    pub identity: RunIdentity,
    /// Input rows consumed (processed or rejected).
    pub rows_done: usize,
    /// Rows processed (not rejected).
    pub notes_done: usize,
    /// Where the output stood.
    pub output: PartialState,
    /// Where the rejects stood.
    pub rejects: PartialState,
    /// Counters for the summary (hits per signal, rows without text, ...).
    pub counters: BTreeMap<String, usize>,
    /// The first rejects, for the summary.
    pub first_rejects: Vec<Reject>,
    /// The first rows the job flagged (1-based data rows), for the summary.
    pub flagged_rows: Vec<usize>,
}

/// How input records are counted and typed (blank CSV lines skipped, text columns as written):
/// part of a run's identity, so a checkpoint written under other rules is not resumed.
const READER_VERSION: &str = "reader-2";

/// Rejects kept in the checkpoint for the summary.
const REJECTS_SHOWN: usize = 10;

/// Flagged rows kept in the checkpoint for the summary.
const FLAGGED_ROWS_SHOWN: usize = 20;

/// What processing one chunk produced.
pub struct ChunkOutput {
    /// Rows for the output.
    pub table: DataFrame,
    /// Rows that could not be processed.
    pub rejects: Vec<Reject>,
    /// Rows processed.
    pub processed: usize,
    /// Counter increments for the summary.
    pub counters: Vec<(String, usize)>,
    /// Rows worth a warning in the summary (1-based data rows), e.g. rows without text.
    pub flagged_rows: Vec<usize>,
}

/// Settings of a chunked job.
pub struct JobSettings<'a> {
    /// Label of progress lines (`extract`, `embed`).
    pub label: &'a str,
    /// Everything besides the input and output that must match for a resume.
    pub fingerprint_extra: String,
    /// Continue an interrupted run.
    pub resume: bool,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// CSV columns read as text, exactly as written (ids, text).
    pub text_columns: TextColumns,
}

/// The result of a complete job: its final checkpoint (counters, rejects) and the input's size.
pub struct JobSummary {
    /// Final state.
    pub checkpoint: Checkpoint,
    /// Rows in the input.
    pub rows: usize,
}

/// Runs `process` over `input` chunk by chunk into `output` and `rejects_path` (jobs that reject
/// nothing pass `None`), with checkpoints.
pub fn run_job(
    input: &Path,
    output: &Path,
    rejects_path: Option<&Path>,
    settings: &JobSettings,
    mut process: impl FnMut(usize, &DataFrame) -> Result<ChunkOutput>,
) -> Result<JobSummary> {
    let total = count_rows(input)?;
    let checkpoint_path = output.with_file_name(format!(
        "{}.checkpoint.json",
        output.file_name().unwrap_or_default().to_string_lossy()
    ));
    let identity = RunIdentity::of(
        input,
        output,
        &format!(
            "{READER_VERSION} {rejects_path:?} {:?} {}",
            settings.text_columns, settings.fingerprint_extra
        ),
    );
    let saved = read_checkpoint(&checkpoint_path);
    let resumable = match &saved {
        Some(c) if settings.resume && c.identity == identity => {
            PartialTable::can_resume(output, c.output)?
                && match rejects_path {
                    Some(p) => PartialTable::can_resume(p, c.rejects)?,
                    None => true,
                }
        }
        _ => false,
    };
    let (mut checkpoint, mut out, mut rejects) = match saved {
        Some(c) if resumable => {
            eprintln!(
                "resuming: {} of {total} rows already done ({} rejected)",
                c.rows_done, c.rejects.rows
            );
            let out = PartialTable::resume(output, c.output)?;
            let rejects = rejects_path
                .map(|p| PartialTable::resume(p, c.rejects))
                .transpose()?;
            (c, out, rejects)
        }
        saved => {
            match saved {
                Some(_) if !settings.resume => eprintln!("note: an interrupted run of this output was found; starting over (pass --resume to continue it)"),
                // Asked to resume, a run with other settings is refused, not wiped: the
                // progress stays for a resume with the original settings.
                Some(c) if c.identity != identity => bail!(
                    "cannot resume: since the interrupted run, {}. Resume with the same input, output and settings (chunk size included), or run without --resume to start over",
                    c.identity.changes_to(&identity).join(", ")
                ),
                Some(_) => eprintln!("note: the interrupted run's partial output is missing or shorter than its checkpoint; starting over"),
                None if settings.resume && !checkpoint_path.exists() => eprintln!("note: no interrupted run of this output to resume; starting from the first row"),
                None => {}
            }
            // The old checkpoint goes first: a crash from here on must not resume into new files.
            if checkpoint_path.exists() {
                std::fs::remove_file(&checkpoint_path)
                    .with_context(|| format!("{}: cannot remove", checkpoint_path.display()))?;
            }
            let fresh = Checkpoint {
                identity,
                ..Checkpoint::default()
            };
            (
                fresh,
                PartialTable::create(output)?,
                rejects_path.map(PartialTable::create).transpose()?,
            )
        }
    };

    let mut progress = Progress::new(settings.label, total);
    progress.resume_from(checkpoint.rows_done);
    // A job without a rejects file keeps its rows 1:1 with the input: it cannot skip one.
    let unreadable = match rejects_path {
        Some(_) => Unreadable::Deliver,
        None => Unreadable::Fail,
    };
    let read = for_each_chunk(
        input,
        checkpoint.rows_done,
        settings.chunk_rows,
        &settings.text_columns,
        unreadable,
        |piece| {
            let rows = piece.rows();
            let mut result = match piece {
                Piece::Rows { first_row, table } => {
                    process(first_row, &table).with_context(|| {
                        format!(
                            "{}: rows {}..{}",
                            input.display(),
                            first_row + 1,
                            first_row + rows
                        )
                    })?
                }
                Piece::Unreadable { row, reason } => ChunkOutput {
                    table: DataFrame::empty(),
                    rejects: vec![Reject {
                        row,
                        id: format!("row-{row}"),
                        reason,
                    }],
                    processed: 0,
                    counters: Vec::new(),
                    flagged_rows: Vec::new(),
                },
            };
            if result.table.width() > 0 {
                out.append(&mut result.table)?;
            }
            if !result.rejects.is_empty() {
                let table = rejects.as_mut().ok_or_else(|| {
                    anyhow!("rows were rejected, but this job has no rejects file")
                })?;
                table.append(&mut rejects_table(&result.rejects)?)?;
            }
            checkpoint.rows_done += rows;
            checkpoint.notes_done += result.processed;
            checkpoint.output = out.state();
            checkpoint.rejects = rejects
                .as_ref()
                .map(PartialTable::state)
                .unwrap_or_default();
            for (name, n) in result.counters {
                *checkpoint.counters.entry(name).or_default() += n;
            }
            let room = REJECTS_SHOWN.saturating_sub(checkpoint.first_rejects.len());
            checkpoint
                .first_rejects
                .extend(result.rejects.into_iter().take(room));
            let room = FLAGGED_ROWS_SHOWN.saturating_sub(checkpoint.flagged_rows.len());
            checkpoint
                .flagged_rows
                .extend(result.flagged_rows.into_iter().take(room));
            save_checkpoint(&checkpoint, &checkpoint_path)?;
            progress.advance(rows);
            Ok(())
        },
    );
    if let Err(error) = read {
        // Nothing was checkpointed: no `.partial` files are left behind for a resume that has
        // nothing to continue.
        if checkpoint.rows_done == 0 {
            out.remove_partial();
            if let Some(rejects) = &rejects {
                rejects.remove_partial();
            }
        }
        return Err(error);
    }

    // Rejects first, the output last: the output under its final name means the job is complete.
    match rejects {
        Some(rejects) if checkpoint.rejects.rows > 0 => rejects.finish()?,
        Some(rejects) => rejects.discard()?,
        None => {}
    }
    out.finish()?;
    std::fs::remove_file(&checkpoint_path)
        .with_context(|| format!("{}: cannot remove", checkpoint_path.display()))?;
    Ok(JobSummary {
        checkpoint,
        rows: total,
    })
}

/// The saved checkpoint, if one exists and can be read (an unreadable one is reported and ignored).
fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "note: {}: unreadable checkpoint ({e}); starting over",
                path.display()
            );
            None
        }
    }
}

/// Writes the checkpoint atomically (temporary file + rename).
fn save_checkpoint(checkpoint: &Checkpoint, path: &Path) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string(checkpoint)?)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("{}: cannot save checkpoint", path.display()))
}

/// Identity of a job: input (path, size, modification time), output and settings.
/// What a run reads, writes and does, each part hashed: a resume continues only when all three
/// match, and says which changed when they do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The input file: path, size and modification time.
    pub input: String,
    /// The output path.
    pub output: String,
    /// The flags, model and pack (as the command describes them).
    pub settings: String,
}

impl RunIdentity {
    fn of(input: &Path, output: &Path, settings: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let hash = |write: &dyn Fn(&mut std::hash::DefaultHasher)| {
            let mut h = std::hash::DefaultHasher::new();
            write(&mut h);
            format!("{:016x}", h.finish())
        };
        Self {
            input: hash(&|h| {
                input
                    .canonicalize()
                    .unwrap_or_else(|_| input.to_path_buf())
                    .hash(h);
                if let Ok(meta) = std::fs::metadata(input) {
                    meta.len().hash(h);
                    meta.modified().ok().hash(h);
                }
            }),
            // `./out.csv` and `out.csv` are one output.
            output: hash(&|h| {
                std::path::absolute(output)
                    .unwrap_or_else(|_| output.to_path_buf())
                    .hash(h)
            }),
            settings: hash(&|h| settings.hash(h)),
        }
    }

    /// What differs in `now`, in words.
    fn changes_to(&self, now: &Self) -> Vec<&'static str> {
        let mut changes = Vec::new();
        if self.input != now.input {
            changes.push("the input file changed (path, size or modification time)");
        }
        if self.output != now.output {
            changes.push("the output path changed");
        }
        if self.settings != now.settings {
            changes.push("the settings changed (flags, columns, model, adapter or pack, or the augur version that wrote the checkpoint)");
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a resume that had to start over said only "other input, output or settings".
    #[test]
    fn a_changed_run_says_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("notes.csv");
        std::fs::write(&input, "id,text\n1,a\n").unwrap();
        let out = dir.path().join("out.csv");
        let before = RunIdentity::of(&input, &out, "--threshold 0.7");
        assert!(before.changes_to(&before.clone()).is_empty());
        let flags = RunIdentity::of(&input, &out, "--threshold 0.6");
        assert_eq!(
            before.changes_to(&flags),
            ["the settings changed (flags, columns, model, adapter or pack, or the augur version that wrote the checkpoint)"]
        );
        std::fs::write(&input, "id,text\n1,a\n2,b\n").unwrap();
        let both = RunIdentity::of(&input, &dir.path().join("other.csv"), "--threshold 0.7");
        assert_eq!(
            before.changes_to(&both),
            [
                "the input file changed (path, size or modification time)",
                "the output path changed"
            ]
        );
    }

    /// Regression: `--resume` with other settings (a chunk size, say) deleted the checkpoint and
    /// started over; the progress is now kept and the resume refused, saying what changed.
    #[test]
    fn a_resume_with_other_settings_is_refused_and_keeps_the_progress() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("notes.csv");
        std::fs::write(&input, "id,text\n1,a\n2,b\n3,c\n").unwrap();
        let out = dir.path().join("out.csv");
        let settings = |resume, extra: &str| JobSettings {
            label: "test",
            fingerprint_extra: extra.to_string(),
            resume,
            chunk_rows: 1,
            text_columns: TextColumns::All,
        };
        // The first run stops after its first chunk was checkpointed.
        let mut chunks = 0;
        let failed = run_job(&input, &out, None, &settings(false, "a"), |_, df| {
            chunks += 1;
            if chunks == 2 {
                bail!("killed");
            }
            Ok(ChunkOutput {
                table: df.clone(),
                rejects: Vec::new(),
                processed: df.height(),
                counters: Vec::new(),
                flagged_rows: Vec::new(),
            })
        });
        assert!(failed.is_err());
        let checkpoint = dir.path().join("out.csv.checkpoint.json");
        assert!(checkpoint.is_file());
        let refused = run_job(&input, &out, None, &settings(true, "b"), |_, _| {
            unreachable!("nothing runs")
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            refused.contains("cannot resume: since the interrupted run, the settings changed"),
            "{refused}"
        );
        assert!(checkpoint.is_file(), "the progress is kept");
        assert_eq!(read_checkpoint(&checkpoint).unwrap().rows_done, 1);
    }

    fn records(csv: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, csv).unwrap();
        let mut reader = RecordReader::open(&path).unwrap();
        let mut out = Vec::new();
        let mut record = Vec::new();
        while reader.next_record(&mut record).unwrap() {
            out.push(String::from_utf8(std::mem::take(&mut record)).unwrap());
        }
        out
    }

    #[test]
    fn csv_records_follow_quoting_not_lines() {
        let csv = "id,text\n1,\"two\nlines, \"\"quoted\"\"\"\n2,a 5\" screen\n3,\"x\"\r\n4,last";
        assert_eq!(
            records(csv),
            [
                "1,\"two\nlines, \"\"quoted\"\"\"\n",
                "2,a 5\" screen\n",
                "3,\"x\"\r\n",
                "4,last"
            ]
        );
    }
}
