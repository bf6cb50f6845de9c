//! `augur watch`: NDJSON messages on stdin, one NDJSON result per message on stdout.

use std::io::{BufRead, Write};

use anyhow::Result;
use augur_score::{LiveScorer, Message};
use serde::Deserialize;

use crate::commands::signals::{build_extractor, PackArgs};
use crate::commands::ModelArgs;
use crate::notes::parse_date;

/// Score messages as they arrive (one JSON object per line on stdin).
///
/// Each input line is `{"id", "account_id", "text", "timestamp"}` (ids may be strings or
/// numbers; without a timestamp the message is dated today). Each output line (stdout) holds the
/// message's signals, sentiment, the account's updated churn risk and lead intent, and the
/// latency. Account state is kept in memory, and each account is scored as of its latest
/// message, so "days since last contact" is 0 here where `augur score` counts it up to
/// --as-of. A bad line gets an `{"error": ...}` line and the stream goes on.
///
/// Example: tail -f messages.ndjson | augur watch
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct WatchArgs {
    #[command(flatten)]
    pub pack: PackArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<serde_json::Value>,
    account_id: serde_json::Value,
    text: String,
    #[serde(default)]
    timestamp: Option<String>,
}

/// Runs `augur watch`.
pub fn run(args: WatchArgs) -> Result<()> {
    let live = LiveScorer::new(build_extractor(&args.model, &args.pack)?);
    eprintln!("augur watch: ready, reading NDJSON messages on stdin");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line_no = n + 1;
        let reply = match line {
            Err(e) => {
                serde_json::json!({"line": line_no, "error": format!("unreadable input: {e}")})
            }
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match handle(&live, &line, line_no) {
                Ok(value) => value,
                Err(e) => {
                    let mut reply = serde_json::json!({"line": line_no, "error": e.to_string()});
                    // The message's id, when the line has one, so a caller can match the error.
                    if let Some(id) = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v.get("id").cloned())
                    {
                        reply["id"] = id;
                    }
                    reply
                }
            },
        };
        writeln!(stdout, "{reply}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// What a message line looks like, for error replies.
const MESSAGE_SHAPE: &str = "each line is one object such as {\"account_id\": \"ACC-1\", \"text\": \"…\", \"timestamp\": \"2026-12-04\"} (`id` and `timestamp` optional)";

/// A JSON value's kind, as error messages name it.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn handle(live: &LiveScorer, line: &str, line_no: usize) -> Result<serde_json::Value> {
    // A byte-order mark at the start of the stream is no part of the first message.
    let line = if line_no == 1 {
        line.trim_start_matches('\u{feff}')
    } else {
        line
    };
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| anyhow::anyhow!("not JSON ({e}); {MESSAGE_SHAPE}"))?;
    if !value.is_object() {
        anyhow::bail!(
            "a JSON {}, not an object; {MESSAGE_SHAPE}",
            json_kind(&value)
        );
    }
    let incoming: Incoming =
        serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{e}; {MESSAGE_SHAPE}"))?;
    let account_id = match incoming.account_id {
        serde_json::Value::String(s) if !s.trim().is_empty() => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => anyhow::bail!("`account_id` is {other}: expected a non-empty string or a number"),
    };
    if incoming.text.trim().is_empty() {
        anyhow::bail!("empty `text`: nothing to score");
    }
    let date = match incoming.timestamp.as_deref() {
        None => super::extract::today(),
        Some(raw) => parse_date(raw)
            .ok_or_else(|| anyhow::anyhow!("bad timestamp `{raw}`: expected ISO 8601"))?,
    };
    let id = match incoming.id {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => format!("line-{line_no}"),
    };
    let result = live.score_message(&Message {
        id,
        account_id,
        date,
        text: incoming.text,
    })?;
    Ok(serde_json::to_value(result)?)
}
