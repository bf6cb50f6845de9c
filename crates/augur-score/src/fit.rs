//! Learning scorer weights from outcome labels: L2-regularised logistic regression on
//! standardised features, k-fold cross-validated AUC and a calibration table.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ScoreError};
use crate::features::Feature;
use crate::scorer::{Bands, Scorer, Term};

/// Settings of [`fit_scorer`].
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// L2 penalty (on standardised weights).
    pub l2: f64,
    /// Cross-validation folds.
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Gradient steps.
    pub steps: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            l2: 0.01,
            folds: 5,
            seed: 7,
            steps: 800,
        }
    }
}

/// Predicted vs observed rate in one probability bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the bin (0.0, 0.1, ...).
    pub from: f64,
    /// Mean predicted probability in the bin.
    pub predicted: f64,
    /// Observed positive rate in the bin.
    pub observed: f64,
    /// Accounts in the bin.
    pub count: usize,
}

/// What fitting found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Scorer name.
    pub target: String,
    /// Accounts used.
    pub accounts: usize,
    /// Of which positive.
    pub positives: usize,
    /// Features with variation (the rest are dropped).
    pub features: usize,
    /// Mean out-of-fold AUC.
    pub cv_auc: f64,
    /// Folds.
    pub folds: usize,
    /// Out-of-fold calibration.
    pub calibration: Vec<CalibrationBin>,
}

/// Area under the ROC curve (probability a random positive outranks a random negative).
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[order[k]] = rank;
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

struct Standardized {
    ids: Vec<String>,
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Standardized {
    fn new(rows: &[Vec<Feature>]) -> Self {
        let ids: Vec<String> = rows
            .iter()
            .flatten()
            .map(|f| f.id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let matrix: Vec<Vec<f64>> = rows.iter().map(|r| Self::dense(&ids, r)).collect();
        let n = matrix.len().max(1) as f64;
        let mean: Vec<f64> = (0..ids.len())
            .map(|j| matrix.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let std: Vec<f64> = (0..ids.len())
            .map(|j| (matrix.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt())
            .collect();
        // Keep only features that vary.
        let keep: Vec<usize> = (0..ids.len()).filter(|&j| std[j] > 1e-12).collect();
        Self {
            ids: keep.iter().map(|&j| ids[j].clone()).collect(),
            mean: keep.iter().map(|&j| mean[j]).collect(),
            std: keep.iter().map(|&j| std[j]).collect(),
        }
    }

    fn dense(ids: &[String], row: &[Feature]) -> Vec<f64> {
        ids.iter()
            .map(|id| row.iter().find(|f| &f.id == id).map_or(0.0, |f| f.value))
            .collect()
    }

    fn row(&self, row: &[Feature]) -> Vec<f64> {
        Self::dense(&self.ids, row)
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(x, (m, s))| (x - m) / s)
            .collect()
    }
}

/// Full-batch gradient descent (Adam) on the L2-regularised logistic loss; returns (w, b).
fn logistic(x: &[Vec<f64>], y: &[f64], l2: f64, steps: usize) -> (Vec<f64>, f64) {
    let d = x.first().map_or(0, Vec::len);
    let n = x.len().max(1) as f64;
    let (mut w, mut b) = (vec![0f64; d], 0f64);
    let (mut m, mut v) = (vec![0f64; d + 1], vec![0f64; d + 1]);
    let (lr, b1, b2) = (0.05, 0.9f64, 0.999f64);
    for step in 1..=steps {
        let mut g = vec![0f64; d + 1];
        for (row, &t) in x.iter().zip(y) {
            let z = b + row.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>();
            let err = 1.0 / (1.0 + (-z).exp()) - t;
            row.iter()
                .enumerate()
                .for_each(|(j, a)| g[j] += err * a / n);
            g[d] += err / n;
        }
        for j in 0..d {
            g[j] += l2 * w[j];
        }
        for j in 0..=d {
            m[j] = b1 * m[j] + (1.0 - b1) * g[j];
            v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
            let update = lr * (m[j] / (1.0 - b1.powi(step as i32)))
                / ((v[j] / (1.0 - b2.powi(step as i32))).sqrt() + 1e-8);
            if j < d {
                w[j] -= update
            } else {
                b -= update
            }
        }
    }
    (w, b)
}

fn predict(w: &[f64], b: f64, row: &[f64]) -> f64 {
    1.0 / (1.0 + (-(b + row.iter().zip(w).map(|(a, c)| a * c).sum::<f64>())).exp())
}

/// Fits a scorer named `name` on accounts' features and 0/1 `labels`, with cross-validation.
pub fn fit_scorer(
    name: &str,
    rows: &[Vec<Feature>],
    labels: &[bool],
    options: FitOptions,
) -> Result<(Scorer, FitReport)> {
    if rows.len() != labels.len() {
        return Err(ScoreError::Fit(format!(
            "expected one label per feature row; found {} rows and {} labels",
            rows.len(),
            labels.len()
        )));
    }
    if let Some((row, feature)) = rows
        .iter()
        .enumerate()
        .find_map(|(i, row)| row.iter().find(|f| !f.value.is_finite()).map(|f| (i, f)))
    {
        return Err(ScoreError::Fit(format!(
            "feature `{}` of row {row} is {}; every feature value must be a finite number",
            feature.id, feature.value
        )));
    }
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == labels.len() {
        return Err(ScoreError::Fit(format!(
            "labels must contain both outcomes; found {positives} positive of {}",
            labels.len()
        )));
    }
    let folds = options.folds.clamp(2, labels.len());
    // Seeded fold assignment.
    let mut state = options
        .seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1);
    let mut order: Vec<usize> = (0..labels.len()).collect();
    for i in (1..order.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (state >> 33) as usize % (i + 1));
    }
    let mut fold_of = vec![0usize; labels.len()];
    for (k, &i) in order.iter().enumerate() {
        fold_of[i] = k % folds;
    }
    let mut out_of_fold = vec![0f64; labels.len()];
    let mut fold_aucs = Vec::new();
    for fold in 0..folds {
        let train: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] != fold).collect();
        let test: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] == fold).collect();
        let train_rows: Vec<Vec<Feature>> = train.iter().map(|&i| rows[i].clone()).collect();
        let std = Standardized::new(&train_rows);
        let x: Vec<Vec<f64>> = train.iter().map(|&i| std.row(&rows[i])).collect();
        let y: Vec<f64> = train
            .iter()
            .map(|&i| f64::from(u8::from(labels[i])))
            .collect();
        let (w, b) = logistic(&x, &y, options.l2, options.steps);
        for &i in &test {
            out_of_fold[i] = predict(&w, b, &std.row(&rows[i]));
        }
        let scores: Vec<f64> = test.iter().map(|&i| out_of_fold[i]).collect();
        let truth: Vec<bool> = test.iter().map(|&i| labels[i]).collect();
        if truth.iter().any(|t| *t) && truth.iter().any(|t| !*t) {
            fold_aucs.push(auc(&scores, &truth));
        }
    }
    let calibration = (0..10)
        .filter_map(|bin| {
            let from = bin as f64 / 10.0;
            let members: Vec<usize> = (0..labels.len())
                .filter(|&i| out_of_fold[i] >= from && (out_of_fold[i] < from + 0.1 || bin == 9))
                .collect();
            (!members.is_empty()).then(|| CalibrationBin {
                from,
                predicted: members.iter().map(|&i| out_of_fold[i]).sum::<f64>()
                    / members.len() as f64,
                observed: members.iter().filter(|&&i| labels[i]).count() as f64
                    / members.len() as f64,
                count: members.len(),
            })
        })
        .collect();

    let std = Standardized::new(rows);
    let x: Vec<Vec<f64>> = rows.iter().map(|r| std.row(r)).collect();
    let y: Vec<f64> = labels.iter().map(|&l| f64::from(u8::from(l))).collect();
    let (w, b) = logistic(&x, &y, options.l2, options.steps);
    let report = FitReport {
        target: name.to_string(),
        accounts: labels.len(),
        positives,
        features: std.ids.len(),
        cv_auc: if fold_aucs.is_empty() {
            0.5
        } else {
            fold_aucs.iter().sum::<f64>() / fold_aucs.len() as f64
        },
        folds,
        calibration,
    };
    let terms = std
        .ids
        .iter()
        .zip(w.iter().zip(std.mean.iter().zip(&std.std)))
        .map(|(id, (wj, (m, s)))| Term {
            feature: id.clone(),
            weight: wj / s,
            baseline: *m,
        })
        .collect();
    let scorer = Scorer {
        name: name.to_string(),
        bias: b,
        terms,
        bands: Bands::default(),
        source: format!(
            "fitted on {} accounts ({} positive), {}-fold CV AUC {:.3}",
            report.accounts, positives, folds, report.cv_auc
        ),
    };
    Ok((scorer, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ordered_pairs_and_ties() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
    }

    fn feature(id: &str, value: f64) -> Feature {
        Feature {
            id: id.into(),
            name_en: id.into(),
            name_zh: id.into(),
            value,
            evidence: vec![],
        }
    }

    /// Regression: fewer rows than labels panicked on an index, and a NaN feature value fitted
    /// a scorer that gave NaN scores (saved as `null`, which its own loader then refused).
    #[test]
    fn mismatched_lengths_and_nan_features_are_refused() {
        let rows: Vec<Vec<Feature>> = (0..4).map(|i| vec![feature("x", i as f64)]).collect();
        let labels = [false, true, false, true, true];
        let err = fit_scorer("churn_risk", &rows, &labels, FitOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("found 4 rows and 5 labels"),
            "{err}"
        );

        let mut rows = rows;
        rows.push(vec![feature("x", f64::NAN)]);
        let err = fit_scorer("churn_risk", &rows, &labels, FitOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("feature `x` of row 4 is NaN"),
            "{err}"
        );
    }

    #[test]
    fn fit_recovers_a_planted_driver() {
        let rows: Vec<Vec<Feature>> = (0..200)
            .map(|i| {
                vec![
                    feature("driver", (i % 10) as f64),
                    feature("noise", ((i / 10) % 7) as f64),
                ]
            })
            .collect();
        let labels: Vec<bool> = (0..200).map(|i| (i % 10) >= 6).collect();
        let (scorer, report) =
            fit_scorer("churn_risk", &rows, &labels, FitOptions::default()).unwrap();
        assert!(report.cv_auc > 0.95, "{report:?}");
        let driver = scorer.terms.iter().find(|t| t.feature == "driver").unwrap();
        let noise = scorer.terms.iter().find(|t| t.feature == "noise").unwrap();
        assert!(
            driver.weight > 5.0 * noise.weight.abs(),
            "{:?}",
            scorer.terms
        );
    }
}
