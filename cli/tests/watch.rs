//! `augur watch`: one result line per message, state per account, errors do not stop the stream.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn watch_answers_every_line_and_keeps_account_state() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_augur"))
        .arg("watch")
        .current_dir(
            PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
                .join(".."),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("augur watch starts");
    let input = [
        r#"{"id": "m1", "account_id": "ACC-9", "timestamp": "2026-11-01", "text": "客户：你们的系统天天卡，我们非常不满意"}"#,
        "this is not json",
        r#"{"id": "m2", "account_id": "ACC-9", "timestamp": "2026-11-03", "text": "Customer: two P1 tickets are past their SLA and nobody replied"}"#,
        r#"{"id": "m3", "account_id": "ACC-9", "timestamp": "yesterday", "text": "hello"}"#,
        r#"{"id": "m4", "account_id": "ACC-7", "timestamp": "2026-11-03", "text": "客户确认产线升级预算已批复"}"#,
        r#"{"id": "m5", "account_id": "ACC-9", "timestamp": "2026-11-04", "text": "  "}"#,
        // Regression: a numeric account id was refused (score accepts it), an empty one scored.
        r#"{"id": 7, "account_id": 1001, "timestamp": "2026-11-04", "text": "we signed the renewal"}"#,
        r#"{"id": "m8", "account_id": "", "timestamp": "2026-11-04", "text": "we signed the renewal"}"#,
        // Regression: parser internals (`invalid length 2, expected struct Incoming`).
        r#"["ACC-9", "hello"]"#,
        r#"{"id": "m10", "account_id": "ACC-9"}"#,
    ];
    // Regression: a byte-order mark before the first message made it "not a message".
    let input: Vec<String> = input
        .iter()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                format!("\u{feff}{line}")
            } else {
                line.to_string()
            }
        })
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all((input.join("\n") + "\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10, "one answer per input line: {lines:?}");
    assert_eq!(lines[0]["id"], "m1");
    assert!(lines[1]["error"].as_str().unwrap().starts_with("not JSON"));
    let array = lines[8]["error"].as_str().unwrap();
    assert!(
        array.starts_with("a JSON array, not an object; each line is one object such as")
            && !array.contains("Incoming"),
        "{array}"
    );
    assert!(lines[9]["error"]
        .as_str()
        .unwrap()
        .starts_with("missing field `text`"));
    assert_eq!(lines[9]["id"], "m10");
    // The bands are named as in `augur score` (regression: `churn_band`, `lead_band`).
    assert!(
        lines[0]["churn_risk_band"].is_string() && lines[0]["lead_intent_band"].is_string(),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[2]["account_messages"], 2,
        "the account's state carries over"
    );
    assert!(lines[2]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["signal"] == "sla_breach"));
    assert!(
        lines[2]["churn_risk"].as_f64().unwrap() > lines[0]["churn_risk"].as_f64().unwrap() - 1e-9
    );
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .contains("bad timestamp `yesterday`"));
    // Errors carry the message id when the line has one (regression: only the line number).
    assert_eq!(lines[3]["id"], "m3");
    // An empty text is an error, not an interaction of the account (regression).
    assert!(lines[5]["error"].as_str().unwrap().contains("empty `text`"));
    assert_eq!(lines[5]["id"], "m5");
    assert_eq!(lines[4]["account_messages"], 1, "accounts are kept apart");
    assert!(lines[4]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["signal"] == "budget_approved"));
    assert_eq!(lines[6]["account_id"], "1001");
    assert_eq!(lines[6]["id"], "7");
    assert!(lines[7]["error"]
        .as_str()
        .unwrap()
        .contains("expected a non-empty string or a number"));
    assert!(lines
        .iter()
        .filter(|l| l.get("latency_ms").is_some())
        .all(|l| l["latency_ms"].as_f64().unwrap() > 0.0));
}
