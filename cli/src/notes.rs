//! Reading a notes table into extractor input: column mapping, date parsing, and rejects with
//! reasons for every row that cannot be used.

use anyhow::Result;
use augur_signals::Note;
use chrono::{NaiveDate, NaiveDateTime};
use polars::prelude::{Column, DataFrame};

use crate::table::{missing_column, optional_strings, required_strings, string_column};

/// Default name of the note id column.
const DEFAULT_ID_COLUMN: &str = "id";
/// Default name of the account id column.
const DEFAULT_ACCOUNT_COLUMN: &str = "account_id";
/// Default name of the timestamp column.
const DEFAULT_TIMESTAMP_COLUMN: &str = "timestamp";

/// Which input columns hold what.
#[derive(clap::Args, Debug, Clone)]
pub struct ColumnArgs {
    /// Column with the note id (row numbers are used when absent). A name given here must exist.
    #[arg(long, default_value = DEFAULT_ID_COLUMN)]
    pub id_column: String,
    /// Column with the account id (optional for extract, required by score and fit-scorer). A
    /// name given here must exist.
    #[arg(long, default_value = DEFAULT_ACCOUNT_COLUMN)]
    pub account_column: String,
    /// Column with the note's timestamp (ISO 8601 date or date-time; optional for extract,
    /// required by score and fit-scorer). A name given here must exist.
    #[arg(long, default_value = DEFAULT_TIMESTAMP_COLUMN)]
    pub timestamp_column: String,
    /// Column with the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
}

impl ColumnArgs {
    /// The columns read as text exactly as written (CSV type inference would turn the id `007`
    /// into 7): id, account id, timestamp and text.
    pub fn text_columns(&self) -> Vec<String> {
        vec![
            self.id_column.clone(),
            self.account_column.clone(),
            self.timestamp_column.clone(),
            self.text_column.clone(),
        ]
    }
}

/// A row that could not be processed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reject {
    /// 1-based data row.
    pub row: usize,
    /// The row's id (or `row-N`).
    pub id: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Parses an ISO 8601 date or date-time (with `T` or space, optional seconds, fraction, zone).
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(dt.naive_local().date());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(raw, format) {
            return Some(dt.date());
        }
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(raw, "%Y/%m/%d"))
        .ok()
}

/// The usable notes of a table (with their 0-based row) and the rejected rows.
pub struct NotesTable {
    /// `(row, note)` for every usable row (`row` counts from `df`'s first row).
    pub notes: Vec<(usize, Note)>,
    /// Rows that could not be used, with reasons.
    pub rejects: Vec<Reject>,
}

/// Reads notes from `df` using the column mapping; `first_row` is the 0-based row of `df`'s first
/// row in the file (for row numbers in rejects and default ids). Errors do not name the file:
/// the caller does, with the rows (see `chunked`).
pub fn notes_from_table(
    df: &DataFrame,
    first_row: usize,
    columns: &ColumnArgs,
) -> Result<NotesTable> {
    // Numbers are not notes: the text column must hold text (as `embed` requires), or nothing
    // at all (a chunk where every text is missing: its rows become rejects).
    if df
        .column(&columns.text_column)
        .is_ok_and(|c| c.dtype() != &polars::prelude::DataType::Null)
    {
        string_column(df, &columns.text_column, "--text-column")?;
    }
    let texts = required_strings(df, &columns.text_column, "--text-column")?;
    let ids = optional_unless_named(df, &columns.id_column, DEFAULT_ID_COLUMN, "--id-column")?;
    let accounts = optional_unless_named(
        df,
        &columns.account_column,
        DEFAULT_ACCOUNT_COLUMN,
        "--account-column",
    )?;
    let timestamps = optional_unless_named(
        df,
        &columns.timestamp_column,
        DEFAULT_TIMESTAMP_COLUMN,
        "--timestamp-column",
    )?;

    let mut notes: Vec<(usize, Note)> = Vec::new();
    let mut rejects = Vec::new();
    for (row, text) in texts.iter().enumerate() {
        let id = ids
            .as_ref()
            .and_then(|c| c[row].clone())
            .unwrap_or_else(|| format!("row-{}", first_row + row + 1));
        let mut reject = |reason: String| {
            rejects.push(Reject {
                row: first_row + row + 1,
                id: id.clone(),
                reason,
            })
        };
        let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) else {
            reject(format!("missing text in column `{}`", columns.text_column));
            continue;
        };
        if text.contains('\u{FFFD}') {
            reject("text is not valid UTF-8 (replacement characters found)".into());
            continue;
        }
        let date = match timestamps.as_ref().and_then(|c| c[row].as_deref()) {
            None => None,
            Some(raw) => match parse_date(raw) {
                Some(d) => Some(d),
                None => {
                    reject(format!("bad timestamp `{raw}` in column `{}`: expected ISO 8601 (2026-12-04 or 2026-12-04T10:15:00)", columns.timestamp_column));
                    continue;
                }
            },
        };
        let mut note = Note::new(id.clone(), text);
        note.account_id = accounts.as_ref().and_then(|c| c[row].clone());
        note.date = date;
        notes.push((row, note));
    }

    Ok(NotesTable { notes, rejects })
}

/// A column that may be absent under its default name; a name the user gave with `flag` must
/// exist (a misspelt `--account-column` used to be ignored silently).
fn optional_unless_named(
    df: &DataFrame,
    name: &str,
    default: &str,
    flag: &str,
) -> Result<Option<Vec<Option<String>>>> {
    let values = optional_strings(df, name)?;
    if values.is_none() && name != default {
        anyhow::bail!(missing_column(df, name, flag));
    }
    Ok(values)
}

/// The rejects as a table: `row` (1-based data row), `id`, `reason`.
pub fn rejects_table(rejects: &[Reject]) -> Result<DataFrame> {
    Ok(DataFrame::new(
        rejects.len(),
        vec![
            Column::new(
                "row".into(),
                rejects.iter().map(|r| r.row as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "id".into(),
                rejects.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "reason".into(),
                rejects.iter().map(|r| r.reason.clone()).collect::<Vec<_>>(),
            ),
        ],
    )?)
}
