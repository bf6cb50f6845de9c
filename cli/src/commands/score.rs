//! `augur score`, `augur explain`, `augur fit-scorer`: account scores with the notes behind them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use augur_score::{
    account_features, default_scorer, fit_scorer, AccountTimeline, Event, Fact, Feature,
    FitOptions, Interaction, Rules, Score, Scorer, Target,
};
use augur_signals::{NoteSignals, SignalExtractor};
use chrono::NaiveDate;
use clap::ValueEnum;
use polars::prelude::{Column, DataFrame, DataType};

use crate::chunked::{
    for_each_chunk, run_job, unreadable_error, ChunkOutput, JobSettings, Piece, TextColumns,
    Unreadable,
};
use crate::commands::signals::{build_extractor, load_pack, resume_settings, PackArgs};
use crate::commands::ModelArgs;
use crate::notes::{notes_from_table, ColumnArgs, Reject};
use crate::table::{
    column_names, ensure_parent, missing_column, optional_strings, read_table,
    refuse_overwriting_inputs, required_strings, same_destination, write_table, Format,
};

/// Account-table columns that are outcomes, never features.
const LABEL_COLUMNS: &[&str] = &["churned", "won"];

/// Inputs shared by `score` and `fit-scorer`: notes, the accounts table and "now".
#[derive(clap::Args, Debug)]
pub struct AccountInputArgs {
    /// Notes table (.csv, .parquet, .ndjson/.jsonl) with account_id, timestamp and text columns.
    pub notes: PathBuf,
    /// Accounts table keyed by account id (see --accounts-key): numeric columns become features,
    /// others are passed through; `churned` / `won` (and fit-scorer's --labels) are outcomes.
    #[arg(long)]
    pub accounts: Option<PathBuf>,
    /// The accounts table's id column (default: the notes' --account-column name).
    #[arg(long, value_name = "COLUMN", requires = "accounts")]
    pub accounts_key: Option<String>,
    /// "Now" for windows and recency (default: the latest note date).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Where rejected note rows go (default: next to the output, `.rejects.csv`).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Note rows per chunk: the unit of reading, extraction and checkpointing. The signals of
    /// every note are written next to the output (`.signals.ndjson`) chunk by chunk.
    #[arg(long, default_value_t = 256, value_parser = super::at_least_one)]
    pub chunk_size: usize,
    /// Continue an interrupted run of the same notes, output and settings from its last
    /// checkpoint instead of extracting every note again.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub columns: ColumnArgs,
    #[command(flatten)]
    pub pack: PackArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Score every account for churn risk and lead intent, with the factors behind each score.
///
/// One row per account: churn_risk / lead_intent (0–100), their bands, the factors as JSON
/// (contribution in log-odds points, share, evidence notes), and the change since --previous.
///
/// Example: augur score notes.csv --accounts accounts.csv -o scores.ndjson --rules rules.toml --events events.ndjson
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub input: AccountInputArgs,
    /// Output table, one row per account (.ndjson keeps the factors readable; .csv / .parquet work).
    #[arg(short, long)]
    pub output: PathBuf,
    /// A churn scorer fitted by `augur fit-scorer` (default: taxonomy weights).
    #[arg(long)]
    pub churn_model: Option<PathBuf>,
    /// A lead-intent scorer fitted by `augur fit-scorer` (default: taxonomy weights).
    #[arg(long)]
    pub lead_model: Option<PathBuf>,
    /// Band thresholds: high,medium on the 0–100 scale (e.g. `--bands 70,40`).
    #[arg(long, value_delimiter = ',', num_args = 1, default_values_t = [70.0, 40.0])]
    pub bands: Vec<f64>,
    /// A previous `augur score` output: report score deltas and the factors that moved them.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Rules file (TOML) for triggered actions (README: "Account scores and their evidence").
    /// Needs --events, where the actions are written.
    #[arg(long, requires = "events")]
    pub rules: Option<PathBuf>,
    /// Events file (NDJSON): new events are appended, de-duplicated against those already there.
    /// Needs --rules.
    #[arg(long, requires = "rules")]
    pub events: Option<PathBuf>,
}

/// Learn a scorer's weights from outcome labels in the accounts table.
///
/// Example: augur fit-scorer notes.csv --accounts accounts.csv --labels churned -o churn_model.json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct FitScorerArgs {
    #[command(flatten)]
    pub input: AccountInputArgs,
    /// The outcome column of the accounts table: 0/1, true/false or yes/no (empty: unknown,
    /// skipped). It is never used as a feature.
    #[arg(long)]
    pub labels: String,
    /// Which score the model is for.
    #[arg(long, value_enum, default_value_t = TargetArg::ChurnRisk)]
    pub target: TargetArg,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// L2 penalty on standardised weights.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub l2: f64,
    /// Where the model (JSON) goes.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `--target`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum TargetArg {
    /// Churn risk.
    ChurnRisk,
    /// Lead intent.
    LeadIntent,
}

/// Print why an account scored as it did: score, band, top factors as bars, evidence with dates.
///
/// Example: augur explain ACC-1001 --from scores.ndjson --lang zh
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// The account id.
    pub account_id: String,
    /// An `augur score` output.
    #[arg(long)]
    pub from: PathBuf,
    /// Print JSON instead.
    #[arg(long)]
    pub json: bool,
    /// Language of feature names.
    #[arg(long, value_enum, default_value_t = LangArg::En)]
    pub lang: LangArg,
    /// Factors to show per score.
    #[arg(long, default_value_t = 6)]
    pub top: usize,
}

/// `--lang`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LangArg {
    /// English.
    En,
    /// Chinese.
    Zh,
}

/// Rows of the extracted-signals file read back at a time.
const NOTES_PER_CHUNK: usize = 1024;

/// Accounts with their timelines and table columns, after extraction.
struct Accounts {
    timelines: Vec<AccountTimeline>,
    passthrough: BTreeMap<String, BTreeMap<String, String>>,
    labels: BTreeMap<String, BTreeMap<String, f64>>,
    as_of: NaiveDate,
    extractor: SignalExtractor,
}

/// The accounts table, split by role: numeric feature columns, outcome labels and text passed
/// through, each keyed by account id.
#[derive(Default)]
struct AccountTable {
    /// Every account id in the table.
    ids: std::collections::BTreeSet<String>,
    numeric: BTreeMap<String, BTreeMap<String, f64>>,
    passthrough: BTreeMap<String, BTreeMap<String, String>>,
    labels: BTreeMap<String, BTreeMap<String, f64>>,
}

/// What an outcome cell says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LabelCell {
    /// 0 or 1.
    Known(f64),
    /// Blank, `NA`, `null`, `nan`: the outcome is not known.
    Unknown,
    /// Anything else.
    Unreadable,
}

/// An outcome label: 0/1 (also `1.0`), true/false, yes/no; blanks and NA are unknown.
fn parse_label(value: &str) -> LabelCell {
    match value.trim().to_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => LabelCell::Known(1.0),
        "false" | "no" | "n" | "0" => LabelCell::Known(0.0),
        "" | "na" | "n/a" | "null" | "nan" | "none" => LabelCell::Unknown,
        other => match other.parse::<f64>() {
            Ok(x) if x == 0.0 || x == 1.0 => LabelCell::Known(x),
            _ => LabelCell::Unreadable,
        },
    }
}

/// Reads the accounts table: `label_columns` (and `churned` / `won`) are outcome labels, never
/// features. In `label_columns` (the one a fit learns from) a value that is not 0/1, true/false,
/// yes/no or blank is refused with its row; in `churned` / `won` otherwise, it is left unknown.
fn read_accounts(
    path: &Path,
    account_column: &str,
    label_columns: &[&str],
) -> Result<AccountTable> {
    let mut table = AccountTable::default();
    let accounts = read_table(path, &[account_column])?;
    let ids = required_strings(&accounts, account_column, "--accounts-key")
        .with_context(|| format!("{}: the account id column to join on", path.display()))?;
    table.ids = ids.iter().flatten().cloned().collect();
    if let Some(absent) = label_columns
        .iter()
        .find(|name| accounts.column(name).is_err())
    {
        bail!(
            "{}: {}",
            path.display(),
            missing_column(&accounts, absent, "--labels")
        );
    }
    for column in accounts.columns() {
        let name = column.name().to_string();
        if name == account_column {
            continue;
        }
        let is_label =
            LABEL_COLUMNS.contains(&name.as_str()) || label_columns.contains(&name.as_str());
        let numeric = column.dtype().is_primitive_numeric() || column.dtype() == &DataType::Boolean;
        let values = if numeric {
            let cast = column.cast(&DataType::Float64)?;
            cast.f64()?
                .iter()
                .map(|v| v.map(|x| x.to_string()))
                .collect::<Vec<_>>()
        } else {
            optional_strings(&accounts, &name)?.expect("column exists")
        };
        for (row, (id, value)) in ids.iter().zip(values).enumerate() {
            let (Some(id), Some(value)) = (id, value) else {
                continue;
            };
            if is_label {
                let label = match parse_label(&value) {
                    LabelCell::Known(label) => label,
                    LabelCell::Unknown => continue,
                    LabelCell::Unreadable if label_columns.contains(&name.as_str()) => bail!(
                        "{}: row {} (account {id}): label `{name}` is `{value}`; expected 0/1, true/false or yes/no (or a blank cell for an unknown outcome)",
                        path.display(),
                        row + 1
                    ),
                    LabelCell::Unreadable => continue,
                };
                table
                    .labels
                    .entry(id.clone())
                    .or_default()
                    .insert(name.clone(), label);
            } else if numeric {
                let number: f64 = value.parse().expect("written from an f64");
                // NaN is how pandas and polars exports spell a missing value: like a blank cell.
                if number.is_nan() {
                    continue;
                }
                if number.is_infinite() {
                    bail!(
                        "{}: row {} (account {id}): column `{name}` is {value}; expected a finite number (or a blank cell for unknown)",
                        path.display(),
                        row + 1
                    );
                }
                table
                    .numeric
                    .entry(id.clone())
                    .or_default()
                    .insert(name.clone(), number);
            } else {
                table
                    .passthrough
                    .entry(id.clone())
                    .or_default()
                    .insert(name.clone(), value);
            }
        }
    }
    Ok(table)
}

/// Where a job writing `output` puts the notes' signals and the rejected rows.
fn side_files(args: &AccountInputArgs, output: &Path) -> (PathBuf, PathBuf) {
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| output.with_extension("rejects.csv"));
    (output.with_extension("signals.ndjson"), rejects)
}

/// Extracts the signals of every usable note into `output`'s `.signals.ndjson` (chunked, with a
/// checkpoint and `--resume`), then reads them back into per-account timelines. The accounts
/// table (`label_columns` being outcomes) is read first, so a bad one fails before extraction.
fn load_accounts(
    args: &AccountInputArgs,
    output: &Path,
    label_columns: &[&str],
    progress_label: &'static str,
) -> Result<Accounts> {
    let (signals_path, rejects_path) = side_files(args, output);
    let inputs: Vec<&Path> = std::iter::once(args.notes.as_path())
        .chain(args.accounts.as_deref())
        .collect();
    refuse_overwriting_inputs(
        &inputs,
        &[
            ("--output", output),
            ("the rejects file", &rejects_path),
            ("the signals file", &signals_path),
        ],
    )?;
    let table = match &args.accounts {
        Some(path) => read_accounts(
            path,
            args.accounts_key
                .as_deref()
                .unwrap_or(&args.columns.account_column),
            label_columns,
        )?,
        None => AccountTable::default(),
    };
    let extractor = build_extractor(&args.model, &args.pack)?;
    let settings = JobSettings {
        label: progress_label,
        fingerprint_extra: resume_settings(
            &args.columns,
            &args.pack,
            &args.model,
            args.chunk_size,
            &extractor,
        ),
        resume: args.resume,
        chunk_rows: args.chunk_size,
        text_columns: TextColumns::Named(args.columns.text_columns()),
    };
    let summary = run_job(
        &args.notes,
        &signals_path,
        Some(&rejects_path),
        &settings,
        |first_row, df| {
            // Scoring needs both: without the column every row would be a reject.
            for (name, flag) in [
                (&args.columns.account_column, "--account-column"),
                (&args.columns.timestamp_column, "--timestamp-column"),
            ] {
                if df.column(name).is_err() {
                    bail!(missing_column(df, name, flag));
                }
            }
            let table = notes_from_table(df, first_row, &args.columns)?;
            let mut rejects = table.rejects;
            let mut usable = Vec::new();
            for (row, note) in table.notes {
                let row = first_row + row + 1;
                match (&note.account_id, note.date) {
                    (None, _) => rejects.push(Reject {
                        row,
                        id: note.id.clone(),
                        reason: format!(
                            "missing account id in column `{}`",
                            args.columns.account_column
                        ),
                    }),
                    (_, None) => rejects.push(Reject {
                        row,
                        id: note.id.clone(),
                        reason: format!(
                            "missing timestamp in column `{}` (scores need dates)",
                            args.columns.timestamp_column
                        ),
                    }),
                    _ => usable.push((row, note)),
                }
            }
            let notes: Vec<_> = usable.iter().map(|(_, n)| n.clone()).collect();
            let found = extractor.extract_batch(&notes)?;
            let mut rows = Vec::new();
            let mut accounts = Vec::new();
            let mut dates = Vec::new();
            let mut signals = Vec::new();
            for ((row, note), found) in usable.iter().zip(found) {
                rows.push(*row as u32);
                accounts.push(note.account_id.clone().expect("checked"));
                dates.push(note.date.expect("checked").to_string());
                signals.push(serde_json::to_string(&found)?);
            }
            let table = DataFrame::new(
                rows.len(),
                vec![
                    Column::new("row".into(), rows),
                    Column::new("account_id".into(), accounts),
                    Column::new("date".into(), dates),
                    Column::new("signals".into(), signals),
                ],
            )?;
            Ok(ChunkOutput {
                table,
                rejects,
                processed: usable.len(),
                counters: Vec::new(),
                flagged_rows: Vec::new(),
            })
        },
    )?;
    let rejected = summary.checkpoint.rejects.rows;
    if rejected > 0 {
        eprintln!(
            "{rejected} note rows rejected (see {})",
            rejects_path.display()
        );
    }
    if summary.checkpoint.notes_done == 0 {
        bail!(
            "{}: no usable notes: nothing to score",
            args.notes.display()
        );
    }

    let mut by_account: BTreeMap<String, AccountTimeline> = BTreeMap::new();
    let mut latest: Option<NaiveDate> = None;
    let mut seen_notes = std::collections::HashSet::new();
    let mut repeated = Vec::new();
    for_each_chunk(
        &signals_path,
        0,
        NOTES_PER_CHUNK,
        &TextColumns::Named(Vec::new()),
        Unreadable::Fail,
        |piece| {
            let df = match piece {
                Piece::Rows { table, .. } => table,
                Piece::Unreadable { row, reason } => {
                    return Err(unreadable_error(&signals_path, row, &reason));
                }
            };
            let column = |name: &str| {
                df.column(name).and_then(|c| c.str()).with_context(|| {
                format!(
                    "{}: no text column `{name}`: not a signals file of this `augur score`; delete it and run again",
                    signals_path.display()
                )
            })
            };
            let (accounts, dates, found) =
                (column("account_id")?, column("date")?, column("signals")?);
            for ((account, date), found) in accounts.iter().zip(dates.iter()).zip(found.iter()) {
                let (Some(account), Some(date), Some(found)) = (account, date, found) else {
                    bail!(
                        "{}: a row lacks account, date or signals",
                        signals_path.display()
                    );
                };
                let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                    .with_context(|| format!("{}: date `{date}`", signals_path.display()))?;
                let signals: NoteSignals = serde_json::from_str(found)
                    .with_context(|| format!("{}: signals of a note", signals_path.display()))?;
                // A note seen before in the same account (the same note exported twice) counts
                // once; CRMs that number notes per account may reuse ids across accounts.
                if !seen_notes.insert((account.to_string(), signals.note_id.clone())) {
                    repeated.push(signals.note_id);
                    continue;
                }
                latest = latest.max(Some(date));
                by_account
                    .entry(account.to_string())
                    .or_insert_with(|| AccountTimeline {
                        account_id: account.to_string(),
                        ..Default::default()
                    })
                    .interactions
                    .push(Interaction { date, signals });
            }
            Ok(())
        },
    )?;
    if let Some(first) = repeated.first() {
        eprintln!(
            "warning: {} notes repeat an earlier note's id in the same account and are counted once (e.g. `{first}`)",
            repeated.len()
        );
    }
    let as_of = args
        .as_of
        .or(latest)
        .context("no usable notes: nothing to score")?;
    // Notes after --as-of are left out everywhere: features, note counts, rules.
    let mut later = 0;
    for timeline in by_account.values_mut() {
        let before = timeline.interactions.len();
        timeline.interactions.retain(|i| i.date <= as_of);
        later += before - timeline.interactions.len();
    }
    if later > 0 {
        let unborn = by_account
            .values()
            .filter(|t| t.interactions.is_empty())
            .count();
        eprintln!(
            "note: {later} notes are dated after --as-of {as_of} and are left out of the scores{}",
            if unborn > 0 {
                format!(" ({unborn} accounts have no earlier note and are not scored)")
            } else {
                String::new()
            }
        );
    }
    by_account.retain(|_, t| !t.interactions.is_empty());
    if by_account.is_empty() {
        bail!("no notes on or before --as-of {as_of}: nothing to score");
    }

    // Only accounts with notes are scored: a row of the accounts table whose id matches no note
    // would score on "no contact for a year" alone.
    let without_notes: Vec<&String> = table
        .ids
        .iter()
        .filter(|id| !by_account.contains_key(id.as_str()))
        .collect();
    if let (Some(first), Some(path)) = (without_notes.first(), &args.accounts) {
        eprintln!(
            "note: {} of the {} accounts in {} have no notes{} and are left out (e.g. `{first}`; ids must match exactly)",
            without_notes.len(),
            table.ids.len(),
            path.display(),
            if args.as_of.is_some() { " on or before --as-of" } else { "" }
        );
    }
    for (id, columns) in table.numeric {
        if let Some(timeline) = by_account.get_mut(&id) {
            timeline.numeric.extend(columns);
        }
    }
    Ok(Accounts {
        timelines: by_account.into_values().collect(),
        passthrough: table.passthrough,
        labels: table.labels,
        as_of,
        extractor,
    })
}

/// A previous run's scores and factor contributions per account.
type Previous = BTreeMap<String, BTreeMap<String, (f64, BTreeMap<String, f64>)>>;

fn read_previous(path: &Path) -> Result<Previous> {
    let (df, ids) = read_score_output(path)?;
    let mut out: Previous = BTreeMap::new();
    for name in ["churn_risk", "lead_intent"] {
        let (Some(scores), Some(factors)) = (
            optional_strings(&df, name)?,
            optional_strings(&df, &format!("{name}_factors"))?,
        ) else {
            continue;
        };
        for (row, ((id, score), factors)) in ids.iter().zip(scores).zip(factors).enumerate() {
            let (Some(id), Some(score)) = (id, score) else {
                continue;
            };
            let at = format!("{}: row {} (account {id})", path.display(), row + 1);
            let contributions = parse_factors(factors.as_deref(), name, &at)?
                .into_iter()
                .map(|f| (f.feature, f.contribution))
                .collect();
            let score = parse_score(&score, name, &at)?;
            out.entry(id.clone())
                .or_default()
                .insert(name.to_string(), (score, contributions));
        }
    }
    Ok(out)
}

/// A score output's `{name}_factors` cell (none: no factors); `at` names file, row and account.
fn parse_factors(cell: Option<&str>, name: &str, at: &str) -> Result<Vec<augur_score::Factor>> {
    cell.map(serde_json::from_str)
        .transpose()
        .with_context(|| {
            format!("{at}: column `{name}_factors` is not the JSON `augur score` writes")
        })
        .map(Option::unwrap_or_default)
}

/// A score output's `name` cell as a number; `at` names file, row and account.
fn parse_score(cell: &str, name: &str, at: &str) -> Result<f64> {
    cell.trim().parse().map_err(|_| {
        anyhow::anyhow!("{at}: `{name}` is `{cell}`; expected a number (a score of `augur score`)")
    })
}

/// The factors whose contribution changed most since the previous run.
fn moved(score: &Score, previous: &BTreeMap<String, f64>) -> Vec<serde_json::Value> {
    let now: BTreeMap<&str, f64> = score
        .factors
        .iter()
        .map(|f| (f.feature.as_str(), f.contribution))
        .collect();
    let mut keys: Vec<&str> = now
        .keys()
        .copied()
        .chain(previous.keys().map(String::as_str))
        .collect();
    keys.sort();
    keys.dedup();
    let mut changes: Vec<(f64, &str)> = keys
        .into_iter()
        .map(|k| {
            (
                now.get(k).copied().unwrap_or(0.0) - previous.get(k).copied().unwrap_or(0.0),
                k,
            )
        })
        .filter(|(d, _)| d.abs() > 1e-9)
        .collect();
    changes.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
    changes
        .into_iter()
        .take(5)
        .map(|(d, k)| serde_json::json!({"feature": k, "change": d}))
        .collect()
}

/// An `augur score` output and its account ids; any other table (e.g. the notes) is refused
/// with the columns it has.
fn read_score_output(path: &Path) -> Result<(DataFrame, Vec<Option<String>>)> {
    let df = read_table(path, &["account_id"])?;
    let has = |name: &str| df.column(name).is_ok();
    if !has("account_id") || !(has("churn_risk") || has("lead_intent")) {
        bail!(
            "{}: not an `augur score` output (it needs account_id and churn_risk or lead_intent; columns are: {})",
            path.display(),
            column_names(&df)
        );
    }
    let ids = required_strings(&df, "account_id", "augur score")?;
    Ok((df, ids))
}

/// Reads the scorer `flag` names, if any, and refuses one fitted for another score (its column
/// would replace that score's and this one would be missing).
fn load_fitted_scorer(path: Option<&Path>, target: Target, flag: &str) -> Result<Option<Scorer>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let scorer = Scorer::load(path)?;
    if scorer.name != target.name() {
        let other = match scorer.name.as_str() {
            "churn_risk" => "; give it to --churn-model",
            "lead_intent" => "; give it to --lead-model",
            _ => "",
        };
        bail!(
            "{flag} {}: this model scores `{}`, not `{}`{other}",
            path.display(),
            scorer.name,
            target.name()
        );
    }
    Ok(Some(scorer))
}

/// Runs `augur score`.
pub fn run_score(args: ScoreArgs) -> Result<()> {
    let &[high, medium] = args.bands.as_slice() else {
        bail!("--bands: expected two thresholds, high,medium (e.g. 70,40)");
    };
    if !(0.0..=100.0).contains(&high) || !(0.0..=100.0).contains(&medium) || high <= medium {
        bail!("--bands {high},{medium}: expected high,medium on 0..100 with high above medium (e.g. 70,40)");
    }
    // Every other input is read and checked before the notes are extracted.
    let rules = match &args.rules {
        Some(path) => {
            let rules = Rules::from_file(path)?;
            rules.check_signals(&load_pack(&args.input.pack)?, path)?;
            Some(rules)
        }
        None => None,
    };
    if let Some(events) = &args.events {
        let inputs: Vec<&Path> = std::iter::once(args.input.notes.as_path())
            .chain(args.input.accounts.as_deref())
            .chain(args.rules.as_deref())
            .chain(args.previous.as_deref())
            .collect();
        refuse_overwriting_inputs(&inputs, &[("--events", events)])?;
        let (signals_path, rejects_path) = side_files(&args.input, &args.output);
        for (what, path) in [
            ("the scores (-o)", args.output.clone()),
            ("the signals file", signals_path),
            ("the rejects file", rejects_path),
        ] {
            if same_destination(events, &path) {
                bail!(
                    "--events {} is also {what}; choose another path",
                    events.display()
                );
            }
        }
    }
    // The output's format and the earlier events are checked now, not after the extraction.
    Format::of(&args.output)?;
    let earlier: Vec<Event> = match &args.events {
        Some(events_path) => match std::fs::read_to_string(events_path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!(
                        "{}: existing events are not valid NDJSON",
                        events_path.display()
                    )
                })?,
            // No events yet; any other failure would skip the de-duplication.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => bail!(
                "--events {}: cannot read the earlier events ({e}); they are needed to leave out repeats",
                events_path.display()
            ),
        },
        None => Vec::new(),
    };
    let previous = args
        .previous
        .as_deref()
        .map(read_previous)
        .transpose()?
        .unwrap_or_default();
    let churn_model = load_fitted_scorer(
        args.churn_model.as_deref(),
        Target::ChurnRisk,
        "--churn-model",
    )?;
    let lead_model = load_fitted_scorer(
        args.lead_model.as_deref(),
        Target::LeadIntent,
        "--lead-model",
    )?;
    let accounts = load_accounts(&args.input, &args.output, &[], "score: extract")?;
    let pack = accounts.extractor.pack();
    let scorers = [
        (churn_model, Target::ChurnRisk),
        (lead_model, Target::LeadIntent),
    ]
    .map(|(fitted, target)| Scorer {
        bands: augur_score::scorer::Bands { high, medium },
        ..fitted.unwrap_or_else(|| default_scorer(pack, target))
    });

    let mut columns: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let mut passed: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let mut numbers: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut note_counts: Vec<u32> = Vec::new();
    let mut bands_summary: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut facts_owned: Vec<(String, Score, Option<f64>)> = Vec::new();
    let n = accounts.timelines.len();
    for (i, timeline) in accounts.timelines.iter().enumerate() {
        let features: Vec<Feature> = account_features(timeline, pack, accounts.as_of);
        ids.push(timeline.account_id.clone());
        note_counts.push(timeline.interactions.len() as u32);
        for scorer in &scorers {
            let score = scorer.score(&features);
            let name = &scorer.name;
            let prev = previous.get(&timeline.account_id).and_then(|p| p.get(name));
            numbers.entry(name.clone()).or_insert_with(|| vec![None; n])[i] = Some(score.score);
            numbers
                .entry(format!("{name}_log_odds"))
                .or_insert_with(|| vec![None; n])[i] = Some(score.log_odds);
            numbers
                .entry(format!("{name}_bias"))
                .or_insert_with(|| vec![None; n])[i] = Some(score.bias);
            numbers
                .entry(format!("{name}_delta"))
                .or_insert_with(|| vec![None; n])[i] =
                prev.map(|p| augur_score::scorer::to_tenth(score.score - p.0));
            columns
                .entry(format!("{name}_band"))
                .or_insert_with(|| vec![None; n])[i] = Some(score.band.clone());
            columns
                .entry(format!("{name}_factors"))
                .or_insert_with(|| vec![None; n])[i] = Some(serde_json::to_string(&score.factors)?);
            columns
                .entry(format!("{name}_moved"))
                .or_insert_with(|| vec![None; n])[i] = prev
                .map(|p| serde_json::to_string(&moved(&score, &p.1)))
                .transpose()?;
            *bands_summary
                .entry((name.clone(), score.band.clone()))
                .or_default() += 1;
            facts_owned.push((timeline.account_id.clone(), score, prev.map(|p| p.0)));
        }
        for (k, v) in accounts
            .passthrough
            .get(&timeline.account_id)
            .into_iter()
            .flatten()
        {
            passed.entry(k.clone()).or_insert_with(|| vec![None; n])[i] = Some(v.clone());
        }
    }
    let mut out_columns = vec![Column::new("account_id".into(), ids)];
    for (name, values) in &numbers {
        out_columns.push(Column::new(name.as_str().into(), values.clone()));
    }
    out_columns.push(Column::new("notes".into(), note_counts));
    for (name, values) in &columns {
        out_columns.push(Column::new(name.as_str().into(), values.clone()));
    }
    // Accounts-table text passes through; a name the scores use is kept as `input_<name>`.
    for (name, values) in &passed {
        let taken = out_columns.iter().any(|c| c.name().as_str() == name);
        let name = if taken {
            format!("input_{name}")
        } else {
            name.clone()
        };
        out_columns.push(Column::new(name.as_str().into(), values.clone()));
    }
    let mut df = DataFrame::new(n, out_columns)?;
    write_table(&mut df, &args.output)?;
    eprintln!(
        "scored {n} accounts as of {} -> {}",
        accounts.as_of,
        args.output.display()
    );
    for ((name, band), count) in &bands_summary {
        eprintln!("  {name:<12} {band:<7} {count}");
    }

    if let (Some(rules), Some(events_path)) = (&rules, &args.events) {
        let mut facts: Vec<Fact> = Vec::new();
        for timeline in &accounts.timelines {
            for interaction in &timeline.interactions {
                for hit in &interaction.signals.hits {
                    facts.push(Fact::Signal {
                        account_id: &timeline.account_id,
                        hit,
                        date: interaction.date,
                    });
                }
            }
        }
        for (account_id, score, prev) in &facts_owned {
            facts.push(Fact::Score {
                account_id,
                name: &score.name,
                score: score.score,
                band: &score.band,
                previous: *prev,
                as_of: accounts.as_of,
            });
        }
        let fresh = rules.events(&facts, &earlier);
        let mut text = fresh
            .iter()
            .map(|e| serde_json::to_string(e).expect("event serialises"))
            .collect::<Vec<_>>()
            .join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        use std::io::Write;
        ensure_parent(events_path)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(events_path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("{}: cannot append events", events_path.display()))?;
        eprintln!(
            "{} new events ({} already known) -> {}",
            fresh.len(),
            earlier.len(),
            events_path.display()
        );
    }
    Ok(())
}

/// Runs `augur fit-scorer`.
pub fn run_fit(args: FitScorerArgs) -> Result<()> {
    if !(args.l2.is_finite() && args.l2 >= 0.0) {
        bail!("--l2 {}: give 0 (no penalty) or more", args.l2);
    }
    if args.input.accounts.is_none() {
        bail!(
            "--accounts is required: the labels column `{}` lives in the accounts table",
            args.labels
        );
    }
    let accounts = load_accounts(
        &args.input,
        &args.output,
        &[args.labels.as_str()],
        "fit-scorer: extract",
    )?;
    let pack = accounts.extractor.pack();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut unlabelled = 0;
    for timeline in &accounts.timelines {
        match accounts
            .labels
            .get(&timeline.account_id)
            .and_then(|l| l.get(&args.labels))
        {
            Some(&label) => {
                rows.push(account_features(timeline, pack, accounts.as_of));
                labels.push(label > 0.5);
            }
            None => unlabelled += 1,
        }
    }
    if rows.is_empty() {
        let labelled: Vec<&String> = accounts
            .labels
            .iter()
            .filter(|(_, l)| l.contains_key(&args.labels))
            .map(|(id, _)| id)
            .collect();
        if labelled.is_empty() {
            bail!(
                "no account has a value in `{}`: every label cell is blank or unknown",
                args.labels
            );
        }
        let with_notes: Vec<&str> = accounts
            .timelines
            .iter()
            .take(3)
            .map(|t| t.account_id.as_str())
            .collect();
        bail!(
            "{} accounts have a `{}` label, but none of them has notes (on or before --as-of, if given): the ids may not match (accounts table: {}…; notes: {}…); check the id columns (--accounts-key, --account-column) and --as-of",
            labelled.len(),
            args.labels,
            labelled.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            with_notes.join(", ")
        );
    }
    let target = match args.target {
        TargetArg::ChurnRisk => Target::ChurnRisk,
        TargetArg::LeadIntent => Target::LeadIntent,
    };
    let (scorer, report) = fit_scorer(
        target.name(),
        &rows,
        &labels,
        FitOptions {
            l2: args.l2,
            folds: args.folds,
            ..FitOptions::default()
        },
    )?;
    ensure_parent(&args.output)?;
    scorer.save(&args.output)?;
    println!(
        "{} on {} accounts ({} positive, {unlabelled} unlabelled skipped), {} features",
        report.target, report.accounts, report.positives, report.features
    );
    println!(
        "cross-validated AUC ({} folds): {:.3}",
        report.folds, report.cv_auc
    );
    let negatives = report.accounts - report.positives;
    let (short, fewest, other, others) = if report.positives <= negatives {
        ("positive", report.positives, "negative", negatives)
    } else {
        ("negative", negatives, "positive", report.positives)
    };
    if fewest < MIN_ACCOUNTS_PER_CLASS {
        eprintln!(
            "warning: only {fewest} {short} accounts ({others} {other}): too few for the AUC and the weights to mean much; label at least {MIN_ACCOUNTS_PER_CLASS} of each"
        );
    }
    println!("calibration (out of fold):  bin    predicted  observed  accounts");
    for bin in &report.calibration {
        println!(
            "                           {:.1}+   {:>9.2} {:>9.2} {:>9}",
            bin.from, bin.predicted, bin.observed, bin.count
        );
    }
    println!("model -> {}", args.output.display());
    Ok(())
}

/// Fewer positive (or negative) accounts than this make `fit-scorer` warn that its AUC and
/// weights rest on too little.
const MIN_ACCOUNTS_PER_CLASS: usize = 10;

/// Runs `augur explain`.
pub fn run_explain(args: ExplainArgs) -> Result<()> {
    let (df, ids) = read_score_output(&args.from)?;
    let Some(row) = ids
        .iter()
        .position(|id| id.as_deref() == Some(args.account_id.as_str()))
    else {
        let wanted = args.account_id.trim().to_lowercase();
        let near = ids
            .iter()
            .flatten()
            .find(|id| id.trim().to_lowercase() == wanted)
            .map(|id| format!("; did you mean `{id}`? (ids are case-sensitive)"))
            .unwrap_or_default();
        bail!(
            "{}: no account `{}` ({} accounts in the file){near}",
            args.from.display(),
            args.account_id,
            ids.len()
        );
    };
    let mut scores = Vec::new();
    for name in ["churn_risk", "lead_intent"] {
        let get = |col: &str| -> Result<Option<String>> {
            Ok(optional_strings(&df, col)?.and_then(|c| c[row].clone()))
        };
        let Some(score) = get(name)? else { continue };
        let at = format!(
            "{}: row {} (account {})",
            args.from.display(),
            row + 1,
            args.account_id
        );
        let factors = parse_factors(get(&format!("{name}_factors"))?.as_deref(), name, &at)?;
        let value = parse_score(&score, name, &at)?;
        scores.push(serde_json::json!({
            "score": name, "value": value, "band": get(&format!("{name}_band"))?,
            "log_odds": get(&format!("{name}_log_odds"))?.and_then(|v| v.parse::<f64>().ok()),
            "delta": get(&format!("{name}_delta"))?.and_then(|v| v.parse::<f64>().ok()),
            "factors": factors,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"account_id": args.account_id, "scores": scores})
            )?
        );
        return Ok(());
    }
    let zh = args.lang == LangArg::Zh;
    println!(
        "{} {}",
        if zh { "客户" } else { "Account" },
        args.account_id
    );
    for s in &scores {
        let name = s["score"].as_str().unwrap_or("");
        let label = match (name, zh) {
            ("churn_risk", true) => "流失风险",
            ("lead_intent", true) => "购买意向",
            ("churn_risk", false) => "churn risk",
            _ => "lead intent",
        };
        let delta = s["delta"]
            .as_f64()
            .map(|d| {
                if zh {
                    format!("（较上次 {d:+.1}）")
                } else {
                    format!(" ({d:+.1} since previous)")
                }
            })
            .unwrap_or_default();
        let band = s["band"].as_str().unwrap_or("?");
        let band = match (band, zh) {
            ("high", true) => "高",
            ("medium", true) => "中",
            ("low", true) => "低",
            (band, _) => band,
        };
        println!(
            "\n{label}: {:.1}/100, {band}{delta}",
            s["value"].as_f64().unwrap_or(0.0),
        );
        let factors: Vec<augur_score::Factor> = serde_json::from_value(s["factors"].clone())?;
        for f in factors.iter().take(args.top) {
            let bar_len = (f.share * 30.0).round() as usize;
            let bar: String = if f.contribution >= 0.0 {
                "+".repeat(bar_len.max(1))
            } else {
                "-".repeat(bar_len.max(1))
            };
            let fname = if zh { &f.name_zh } else { &f.name_en };
            println!(
                "  {:>+6.2} {:<31} {fname} = {:.2}",
                f.contribution, bar, f.value
            );
            for e in f.evidence.iter().rev().take(3) {
                let speaker = match (e.speaker.as_str(), zh) {
                    ("", _) => String::new(),
                    ("customer", true) => "[客户] ".into(),
                    ("rep", true) => "[销售] ".into(),
                    ("unknown", true) => "[未知] ".into(),
                    (speaker, _) => format!("[{speaker}] "),
                };
                println!(
                    "         {} {} {speaker}{}",
                    e.date,
                    e.note_id,
                    e.sentence_in(zh)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: any non-zero number counted as a positive label (-1 / +1 coding inverted a
    /// fit), and blank cells were refused.
    #[test]
    fn labels_are_zero_or_one_and_blanks_are_unknown() {
        for (cell, expected) in [
            ("1", LabelCell::Known(1.0)),
            ("1.0", LabelCell::Known(1.0)),
            (" TRUE ", LabelCell::Known(1.0)),
            ("no", LabelCell::Known(0.0)),
            ("0.0", LabelCell::Known(0.0)),
            ("", LabelCell::Unknown),
            ("  ", LabelCell::Unknown),
            ("NA", LabelCell::Unknown),
            ("-1", LabelCell::Unreadable),
            ("0.3", LabelCell::Unreadable),
            ("closed-won", LabelCell::Unreadable),
        ] {
            assert_eq!(parse_label(cell), expected, "{cell:?}");
        }
    }
}
