//! Reading and writing tables (CSV, Parquet, NDJSON) by file extension, with errors that name
//! the file and column.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use polars::prelude::{
    Column, CsvWriter, DataFrame, DataType, JsonFormat, JsonWriter, ParquetReader, ParquetWriter,
    PolarsError, SerReader, SerWriter, StringChunked,
};

use crate::chunked::{for_each_chunk, Piece, TextColumns, Unreadable};

/// A table file format, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.csv`
    Csv,
    /// `.parquet`
    Parquet,
    /// `.ndjson` / `.jsonl`
    NdJson,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Csv => "CSV",
            Format::Parquet => "Parquet",
            Format::NdJson => "NDJSON",
        })
    }
}

impl Format {
    /// The format of `path`, from its extension (a folder is refused as such).
    pub fn of(path: &Path) -> Result<Self> {
        if path.is_dir() {
            bail!(
                "{}: is a folder; expected a table file (.csv, .parquet or .ndjson/.jsonl)",
                path.display()
            );
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Format::Csv),
            "parquet" | "pq" => Ok(Format::Parquet),
            "ndjson" | "jsonl" => Ok(Format::NdJson),
            other => bail!(
                "{}: cannot tell the table format from extension `.{other}`; expected .csv, .parquet or .ndjson/.jsonl",
                path.display()
            ),
        }
    }
}

/// Reads a whole table the way the chunked jobs read their input (blank CSV lines are no rows,
/// a record that cannot be read is an error naming its row). In CSV, `text_columns` (ids,
/// labels, text) are read exactly as written, where type inference would turn `007` into 7 and
/// `True` into true.
pub fn read_table(path: &Path, text_columns: &[&str]) -> Result<DataFrame> {
    if Format::of(path)? == Format::Parquet {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        return ParquetReader::new(file).finish().map_err(|error| {
            anyhow!(
                "{}: cannot read as Parquet: {}",
                path.display(),
                polars_reason(&error)
            )
        });
    }
    let text_columns = TextColumns::Named(text_columns.iter().map(|c| c.to_string()).collect());
    let mut table: Option<DataFrame> = None;
    for_each_chunk(
        path,
        0,
        usize::MAX,
        &text_columns,
        Unreadable::Fail,
        |piece| {
            if let Piece::Rows { table: rows, .. } = piece {
                match &mut table {
                    Some(table) => {
                        table.vstack_mut(&rows)?;
                    }
                    None => table = Some(rows),
                }
            }
            Ok(())
        },
    )?;
    table.ok_or_else(|| anyhow!("{}: no table could be read", path.display()))
}

/// A polars error's own words, without the hints polars adds for its Python API
/// (`truncate_ragged_lines`, `infer_schema_length`, …), which are not Augur options.
pub fn polars_reason(error: &PolarsError) -> String {
    let text = error.to_string();
    text.split("\n\n")
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string()
}

/// CSV has no nested values: list, array and struct columns become JSON text (a vector reads
/// `[0.1,0.2]`), so a table read from Parquet or NDJSON can be written as CSV.
pub fn nested_as_json(df: &mut DataFrame) -> Result<()> {
    let nested: Vec<String> = df
        .columns()
        .iter()
        .filter(|c| c.dtype().is_nested())
        .map(|c| c.name().to_string())
        .collect();
    for name in nested {
        let mut single = df.select([name.as_str()])?;
        let mut lines = Vec::new();
        JsonWriter::new(&mut lines)
            .with_json_format(JsonFormat::JsonLines)
            .finish(&mut single)?;
        let values = lines
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| -> Result<Option<String>> {
                let row: serde_json::Value = serde_json::from_slice(line)?;
                let value = &row[name.as_str()];
                Ok((!value.is_null()).then(|| value.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        df.replace(&name, Column::new(name.as_str().into(), values))?;
    }
    Ok(())
}

/// Writes `df` to `path` (format from the extension) through a temporary file, so the output
/// appears under its final name only when complete.
pub fn write_table(df: &mut DataFrame, path: &Path) -> Result<()> {
    let format = Format::of(path)?;
    ensure_parent(path)?;
    let partial = path.with_extension(format!(
        "{}.partial",
        path.extension().and_then(|e| e.to_str()).unwrap_or("out")
    ));
    let mut file =
        File::create(&partial).with_context(|| format!("{}: cannot create", partial.display()))?;
    let written = match format {
        Format::Csv => {
            nested_as_json(df)?;
            CsvWriter::new(&mut file).include_header(true).finish(df)
        }
        Format::Parquet => ParquetWriter::new(&mut file).finish(df).map(|_| ()),
        Format::NdJson => JsonWriter::new(&mut file)
            .with_json_format(JsonFormat::JsonLines)
            .finish(df),
    };
    written.with_context(|| format!("{}: cannot write as {format}", path.display()))?;
    drop(file);
    std::fs::rename(&partial, path)
        .with_context(|| format!("{}: cannot move into place", path.display()))
}

/// An optional column as strings (any type is cast), or `None` when the table has no such column.
pub fn optional_strings(df: &DataFrame, name: &str) -> Result<Option<Vec<Option<String>>>> {
    let Ok(column) = df.column(name) else {
        return Ok(None);
    };
    let cast = column
        .cast(&DataType::String)
        .with_context(|| format!("column `{name}`: cannot read as text"))?;
    let strings = cast
        .str()
        .map_err(|e| anyhow::anyhow!("column `{name}`: {e}"))?;
    Ok(Some(
        strings.iter().map(|v| v.map(str::to_string)).collect(),
    ))
}

/// What to say when `df` has no column `name`: the columns it has, and the flag that picks one.
pub fn missing_column(df: &DataFrame, name: &str, flag: &str) -> String {
    format!(
        "no column `{name}`; columns are: {}. Choose one with {flag}",
        column_names(df)
    )
}

/// The columns of `df`, comma-separated, for messages.
pub fn column_names(df: &DataFrame) -> String {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    names.join(", ")
}

/// The column `name` of `df` cast to text (nulls as `None`), or an error listing the columns
/// that exist and naming `flag` (without the file name: callers add it where it is not known).
pub fn required_strings(df: &DataFrame, name: &str, flag: &str) -> Result<Vec<Option<String>>> {
    match optional_strings(df, name)? {
        Some(values) => Ok(values),
        None => bail!("{}", missing_column(df, name, flag)),
    }
}

/// The column `name` as strings, or an error listing the columns that exist (without the file
/// name: callers inside a chunked job get it, with the rows, from `chunked`).
pub fn string_column<'a>(df: &'a DataFrame, name: &str, flag: &str) -> Result<&'a StringChunked> {
    let Ok(column) = df.column(name) else {
        bail!("{}", missing_column(df, name, flag));
    };
    column.str().map_err(|_| {
        anyhow::anyhow!(
            "column `{name}` must hold text, found {} (choose the text column with {flag})",
            column.dtype()
        )
    })
}

/// Where `path` points once written: absolute, `.` and `..` resolved by name first (a folder
/// that does not exist yet may be created, so `new/../notes.csv` is `notes.csv`), then links
/// resolved where the file or its folder exists.
fn resolved(path: &Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let absolute = std::env::current_dir().ok()?.join(path);
    let mut lexical = std::path::PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    if let Ok(real) = lexical.canonicalize() {
        return Some(real);
    }
    Some(
        lexical
            .parent()?
            .canonicalize()
            .ok()?
            .join(lexical.file_name()?),
    )
}

/// True when `a` and `b` name the same file once written (`..`, links and hard links seen
/// through).
pub fn same_destination(a: &Path, b: &Path) -> bool {
    resolved(a).is_some_and(|a_path| resolved(b).as_ref() == Some(&a_path)) || same_file(a, b)
}

/// Whether two existing paths are one file (a hard link, on Unix).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    let _ = (a, b);
    false
}

/// Refuses to start when an output path names one of the inputs: writing there would destroy
/// the data being read. `outputs` pairs each path with the flag or rule that set it. Checked
/// before any model is loaded.
pub fn refuse_overwriting_inputs(inputs: &[&Path], outputs: &[(&str, &Path)]) -> Result<()> {
    for input in inputs {
        for (flag, output) in outputs {
            if same_destination(input, output) {
                bail!(
                    "{flag} {} is the input file {}: writing there would destroy it; choose another path",
                    output.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

/// Creates the folder `path` will be written into, if missing.
pub fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display())),
        _ => Ok(()),
    }
}
