//! Account scoring end to end on synthetic timelines with planted drivers
//! (`fixtures/scoring/generate.py`), on the real default model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo")).join("..")
}

fn augur(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("augur runs");
    assert!(
        out.status.success(),
        "augur {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn generate(dir: &Path) {
    let status = Command::new("python3")
        .args([
            "fixtures/scoring/generate.py",
            "--seed",
            "7",
            "--accounts",
            "80",
            "--out",
        ])
        .arg(dir)
        .current_dir(repo())
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Which features express each planted driver.
fn driver_features(driver: &str) -> &'static [&'static str] {
    match driver {
        "falling_sentiment" => &[
            "sentiment.change_last3",
            "sentiment.last3_mean",
            "sentiment.slope_90d",
            "signal.complaint.recency",
            "account.usage_change_pct",
        ],
        "sla_breach" => &["signal.sla_breach.recency", "account.tickets_overdue"],
        "competitor" => &[
            "signal.competitor_evaluation.recency",
            "account.competitor_site_visits_30d",
        ],
        _ => &[],
    }
}

fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            if labels[i] && !labels[j] {
                pairs += 1.0;
                wins += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

#[test]
fn planted_drivers_explain_the_scores_and_fitting_learns_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    generate(dir);
    let truth: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    let notes = dir.join("notes.csv").display().to_string();
    let accounts = dir.join("accounts.csv").display().to_string();
    let scores_path = dir.join("scores.ndjson");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[settings]\ndedupe_days = 30\n\n[[rule]]\nid = \"budget_to_presales\"\nwhen = { signal = \"budget_approved\" }\naction = \"push solution pack to technical consultant\"\nteam = \"presales\"\n\n[[rule]]\nid = \"retention\"\nwhen = { score = \"churn_risk\", band = \"high\" }\naction = \"open retention task for CSM\"\nteam = \"customer_success\"\n",
    )
    .unwrap();
    let events = dir.join("events.ndjson");
    let score_args = [
        "score",
        &notes,
        "--accounts",
        &accounts,
        "--as-of",
        "2026-12-01",
        "-o",
        scores_path.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ];
    augur(&score_args);
    let rows = read_ndjson(&scores_path);
    assert_eq!(rows.len(), 80);

    // Contributions plus bias sum exactly to the log-odds, for every account and score.
    for row in &rows {
        for name in ["churn_risk", "lead_intent"] {
            let factors: Vec<serde_json::Value> =
                serde_json::from_str(row[format!("{name}_factors")].as_str().unwrap()).unwrap();
            let sum: f64 = factors
                .iter()
                .map(|f| f["contribution"].as_f64().unwrap())
                .sum::<f64>()
                + row[format!("{name}_bias")].as_f64().unwrap();
            let log_odds = row[format!("{name}_log_odds")].as_f64().unwrap();
            assert!(
                (sum - log_odds).abs() < 1e-9,
                "{}: {name} factors sum to {sum}, log-odds {log_odds}",
                row["account_id"]
            );
            let score = row[name].as_f64().unwrap();
            assert!((score - 100.0 / (1.0 + (-log_odds).exp())).abs() < 0.06);
        }
    }

    // The planted account: falling sentiment + SLA breaches rank first among its churn factors.
    let planted = rows.iter().find(|r| r["account_id"] == "ACC-P01").unwrap();
    assert_eq!(planted["churn_risk_band"], "high");
    let factors: Vec<serde_json::Value> =
        serde_json::from_str(planted["churn_risk_factors"].as_str().unwrap()).unwrap();
    let top3: Vec<&str> = factors
        .iter()
        .take(3)
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    let planted_features: BTreeSet<&str> = ["falling_sentiment", "sla_breach"]
        .iter()
        .flat_map(|d| driver_features(d).iter().copied())
        .collect();
    assert!(
        top3.iter().all(|f| planted_features.contains(f)),
        "top churn factors {top3:?} should all be planted drivers"
    );
    assert!(
        top3.iter()
            .any(|f| driver_features("sla_breach").contains(f)),
        "{top3:?}"
    );
    assert!(
        top3.iter()
            .any(|f| driver_features("falling_sentiment").contains(f)),
        "{top3:?}"
    );
    let with_evidence = factors
        .iter()
        .find(|f| {
            f["feature"] == "signal.sla_breach.recency"
                || f["feature"] == "signal.complaint.recency"
        })
        .unwrap();
    assert!(
        !with_evidence["evidence"].as_array().unwrap().is_empty(),
        "text factors link to their notes"
    );

    // Across all churn accounts, the first factor is one of that account's planted drivers.
    let mut first_ok = 0;
    let mut churn_accounts = 0;
    for row in &rows {
        let t = &truth[row["account_id"].as_str().unwrap()];
        if t["profile"] != "churn" {
            continue;
        }
        churn_accounts += 1;
        let drivers: BTreeSet<&str> = t["churn_drivers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| driver_features(d.as_str().unwrap()).iter().copied())
            .collect();
        let factors: Vec<serde_json::Value> =
            serde_json::from_str(row["churn_risk_factors"].as_str().unwrap()).unwrap();
        if factors
            .first()
            .is_some_and(|f| drivers.contains(f["feature"].as_str().unwrap()))
        {
            first_ok += 1;
        }
    }
    assert!(
        first_ok as f64 >= 0.9 * churn_accounts as f64,
        "first factor is a planted driver for {first_ok}/{churn_accounts} churn accounts"
    );

    // Events: one per account and rule; a second run adds nothing new (de-duplicated).
    let first_events = read_ndjson(&events);
    assert!(first_events
        .iter()
        .any(|e| e["rule"] == "retention" && e["account_id"] == "ACC-P01"));
    assert!(first_events
        .iter()
        .any(|e| e["rule"] == "budget_to_presales"));
    let keys: BTreeSet<(String, String)> = first_events
        .iter()
        .map(|e| (e["rule"].to_string(), e["account_id"].to_string()))
        .collect();
    assert!(keys.len() <= first_events.len());
    augur(&score_args);
    assert_eq!(
        read_ndjson(&events).len(),
        first_events.len(),
        "re-running emits no duplicate events"
    );

    // --previous: deltas and the factors that moved, against the first run.
    let second = dir.join("second.ndjson");
    augur(&[
        "score",
        &notes,
        "--accounts",
        &accounts,
        "--as-of",
        "2026-12-20",
        "-o",
        second.to_str().unwrap(),
        "--previous",
        scores_path.to_str().unwrap(),
    ]);
    let planted_later = read_ndjson(&second)
        .into_iter()
        .find(|r| r["account_id"] == "ACC-P01")
        .unwrap();
    let delta = planted_later["churn_risk_delta"]
        .as_f64()
        .expect("delta against --previous");
    let expected =
        planted_later["churn_risk"].as_f64().unwrap() - planted["churn_risk"].as_f64().unwrap();
    assert!(
        (delta - expected).abs() < 0.1,
        "delta {delta} vs {expected}"
    );
    let moved: Vec<serde_json::Value> =
        serde_json::from_str(planted_later["churn_risk_moved"].as_str().unwrap()).unwrap();
    assert!(
        !moved.is_empty(),
        "19 days later the recency factors have moved"
    );

    // explain: readable, with evidence dates.
    let explained = String::from_utf8(
        augur(&[
            "explain",
            "ACC-P01",
            "--from",
            scores_path.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        explained.contains("churn risk") && explained.contains("2026-1"),
        "{explained}"
    );
    let zh = String::from_utf8(
        augur(&[
            "explain",
            "ACC-P01",
            "--from",
            scores_path.to_str().unwrap(),
            "--lang",
            "zh",
        ])
        .stdout,
    )
    .unwrap();
    assert!(zh.contains("流失风险"), "{zh}");
    // Regression: facts about a note and the speaker stayed English under --lang zh.
    let pairs = [
        ("note sentiment", "笔记情绪"),
        ("latest note", "最近一条笔记"),
        ("[customer]", "[客户]"),
    ];
    assert!(
        pairs
            .iter()
            .filter(|(en, _)| explained.contains(en))
            .count()
            >= 2,
        "{explained}"
    );
    for (en, chinese) in pairs {
        assert!(!zh.contains(en), "{en} under --lang zh:\n{zh}");
        assert_eq!(
            explained.contains(en),
            zh.contains(chinese),
            "{en} / {chinese}:\n{zh}"
        );
    }

    // Fitting on the train accounts, scoring the held-out ones.
    let model = dir.join("churn_model.json");
    let fit = augur(&[
        "fit-scorer",
        &notes,
        "--accounts",
        dir.join("accounts_train.csv").to_str().unwrap(),
        "--labels",
        "churned",
        "--as-of",
        "2026-12-01",
        "-o",
        model.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&fit.stdout);
    assert!(report.contains("cross-validated AUC"), "{report}");
    let held_out_scores = dir.join("held_out.ndjson");
    augur(&[
        "score",
        &notes,
        "--accounts",
        &accounts,
        "--as-of",
        "2026-12-01",
        "--churn-model",
        model.to_str().unwrap(),
        "-o",
        held_out_scores.to_str().unwrap(),
    ]);
    let labels: BTreeMap<String, (bool, String)> =
        std::fs::read_to_string(dir.join("accounts.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_string(), (f[5] == "1", f[7].to_string()))
            })
            .collect();
    let (mut s, mut y) = (Vec::new(), Vec::new());
    for row in read_ndjson(&held_out_scores) {
        let (label, split) = &labels[row["account_id"].as_str().unwrap()];
        if split == "test" {
            s.push(row["churn_risk"].as_f64().unwrap());
            y.push(*label);
        }
    }
    // Regression: a churn model given as --lead-model replaced the lead-intent column without
    // a word (and the churn column appeared twice in the summary); it is refused before any
    // note is read.
    let swapped = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args([
            "score",
            &notes,
            "--lead-model",
            model.to_str().unwrap(),
            "-o",
            dir.join("swapped.ndjson").to_str().unwrap(),
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&swapped.stderr);
    assert!(!swapped.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "this model scores `churn_risk`, not `lead_intent`; give it to --churn-model"
        ) && !stderr.contains("rows/s"),
        "{stderr}"
    );
    let held_out_auc = auc(&s, &y);
    println!(
        "held-out churn AUC {held_out_auc:.3} on {} accounts",
        s.len()
    );
    assert!(
        held_out_auc >= 0.85,
        "held-out AUC {held_out_auc:.3} < 0.85"
    );
}

/// Regression: `--labels` only worked for `churned` / `won`, and a label such as `yes` or `TRUE`
/// silently counted as negative.
#[test]
fn fit_scorer_takes_any_label_column_and_refuses_unreadable_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let notes = repo().join("fixtures/notes/sample_notes.csv");
    let accounts = tmp.path().join("accounts.csv");
    std::fs::write(
        &accounts,
        "account_id,lost\nACC-1001,0\nACC-1002,1\nACC-1003,TRUE\nACC-1004,yes\nACC-1005,no\n",
    )
    .unwrap();
    let model = tmp.path().join("model.json");
    let fit = augur(&[
        "fit-scorer",
        notes.to_str().unwrap(),
        "--accounts",
        accounts.to_str().unwrap(),
        "--labels",
        "lost",
        "-o",
        model.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&fit.stdout);
    assert!(report.contains("on 5 accounts (3 positive"), "{report}");
    // Regression: an AUC over 3 + 2 accounts was printed as if it meant something, and the
    // progress line was labelled `score: extract`.
    let stderr = String::from_utf8_lossy(&fit.stderr);
    assert!(
        stderr.contains("warning: only 2 negative accounts (3 positive): too few")
            && stderr.contains("fit-scorer: extract:"),
        "{stderr}"
    );
    // The label column is an outcome, not a feature of the model.
    let saved = std::fs::read_to_string(&model).unwrap();
    assert!(!saved.contains("account.lost"), "{saved}");

    std::fs::write(&accounts, "account_id,lost\nACC-1001,0\nACC-1002,maybe\n").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(["fit-scorer", notes.to_str().unwrap(), "--accounts"])
        .arg(&accounts)
        .args(["--labels", "lost", "-o"])
        .arg(&model)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("row 2 (account ACC-1002): label `lost` is `maybe`"),
        "{stderr}"
    );
    // Refused before any note is extracted: no model is loaded.
    assert!(!stderr.contains("model:"), "{stderr}");
    // Regression: a negative penalty was read as a flag, and accepted when written `=-1`.
    let negative = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(["fit-scorer", notes.to_str().unwrap(), "--accounts"])
        .arg(&accounts)
        .args(["--labels", "lost", "--l2", "-1", "-o"])
        .arg(&model)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!negative.status.success());
    let stderr = String::from_utf8_lossy(&negative.stderr);
    assert!(
        stderr.contains("--l2 -1: give 0 (no penalty) or more"),
        "{stderr}"
    );
}
