//! `--resume` of `augur extract`, `embed` and `score`: a job killed with SIGKILL mid-way continues from its checkpoint and
//! produces output identical to an uninterrupted run; the output appears only when complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo")).join("..")
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

/// `augur SUBCOMMAND INPUT -o OUTPUT --chunk-size 16 EXTRA...`
fn job(subcommand: &str, input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_augur"));
    cmd.args([
        subcommand,
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

/// Runs `subcommand` once uninterrupted and once killed with SIGKILL after two chunks and then
/// resumed; both outputs (named `full.EXT` / `resumed.EXT`) must be byte-identical. With
/// `lose_partial`, the partial output is emptied before resuming (as a fresh run without
/// `--resume` does before it is killed in turn): the resume must start over, not trust the
/// checkpoint.
fn killed_job_resumes_to_identical_output(subcommand: &str, ext: &str, lose_partial: bool) {
    // Where the job keeps its partial table and checkpoint: the output itself, or for `score`
    // the per-note signals file next to it.
    let partial_name = match subcommand {
        "score" => "resumed.signals.ndjson".to_string(),
        _ => format!("resumed.{ext}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("notes.ndjson");
    let total = write_input(&input);
    assert!(total > 200);

    let full = tmp.path().join(format!("full.{ext}"));
    let run = job(subcommand, &input, &full, &[]).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let resumed = tmp.path().join(format!("resumed.{ext}"));
    let checkpoint = tmp.path().join(format!("{partial_name}.checkpoint.json"));
    let mut child = job(subcommand, &input, &resumed, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let done = loop {
        let rows_done = std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["rows_done"].as_u64())
            .unwrap_or(0);
        if rows_done >= 32 {
            break rows_done;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
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

    if lose_partial {
        let partial = tmp.path().join(format!("{partial_name}.partial"));
        std::fs::write(&partial, b"").unwrap();
    }
    let again = job(subcommand, &input, &resumed, &["--resume"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    if lose_partial {
        assert!(stderr.contains("shorter than its checkpoint"), "{stderr}");
    } else {
        assert!(stderr.contains("resuming"), "{stderr}");
    }
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

#[test]
fn killed_extract_resumes_to_identical_ndjson() {
    killed_job_resumes_to_identical_output("extract", "ndjson", false);
}

#[test]
fn killed_embed_resumes_to_identical_parquet() {
    killed_job_resumes_to_identical_output("embed", "parquet", false);
}

#[test]
fn killed_score_resumes_to_identical_scores() {
    killed_job_resumes_to_identical_output("score", "ndjson", false);
}

/// Regression: a stale checkpoint next to an emptied partial output used to be trusted, and the
/// resumed output began with NUL bytes.
#[test]
fn resume_starts_over_when_the_partial_output_is_shorter_than_its_checkpoint() {
    killed_job_resumes_to_identical_output("extract", "ndjson", true);
}
