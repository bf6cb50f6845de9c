//! `augur extract --resume`: a job killed with SIGKILL mid-way continues from its checkpoint and
//! produces output identical to an uninterrupted run; the output appears only when complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// All annotated notes as an NDJSON notes table (id, account_id, timestamp, channel, text).
fn write_input(path: &Path) -> usize {
    let mut out = String::new();
    let mut n = 0;
    for file in ["gold_zh.jsonl", "gold_en.jsonl"] {
        for line in std::fs::read_to_string(repo().join("fixtures/signals").join(file))
            .unwrap()
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let row = serde_json::json!({"id": v["id"], "account_id": v["account_id"], "timestamp": v["timestamp"], "channel": v["channel"], "text": v["text"]});
            out.push_str(&row.to_string());
            out.push('\n');
            n += 1;
        }
    }
    std::fs::write(path, out).unwrap();
    n
}

fn extract(input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_augur"));
    cmd.args([
        "extract",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--chunk-size",
        "16",
    ])
    .args(extra)
    .current_dir(repo());
    cmd
}

#[test]
fn killed_job_resumes_to_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("notes.ndjson");
    let total = write_input(&input);
    assert!(total > 200);

    let full = tmp.path().join("full.ndjson");
    assert!(extract(&input, &full, &[])
        .output()
        .unwrap()
        .status
        .success());

    let resumed = tmp.path().join("resumed.ndjson");
    let checkpoint = tmp.path().join("resumed.ndjson.checkpoint.json");
    let mut child = extract(&input, &resumed, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let done = loop {
        let notes_done = std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["notes_done"].as_u64())
            .unwrap_or(0);
        if notes_done >= 32 {
            break notes_done;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        (done as usize) < total,
        "killed mid-way ({done} of {total})"
    );
    assert!(
        !resumed.exists(),
        "an interrupted job leaves no output under the final name"
    );

    let again = extract(&input, &resumed, &["--resume"]).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("resuming"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read(&resumed).unwrap(),
        std::fs::read(&full).unwrap(),
        "resumed output differs from an uninterrupted run"
    );
    assert!(
        !checkpoint.exists(),
        "the checkpoint is removed when the job completes"
    );
}
