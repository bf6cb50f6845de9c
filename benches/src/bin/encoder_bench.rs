//! Encoder throughput: Augur's encoder vs stock candle-transformers BertModel on the same token
//! ids, same length-sorted buckets, same mean pooling, in one run.
//!
//! cargo run -p augur-benches --bin encoder_bench -- [--model DIR] [--corpus FILE] [--limit N]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use augur_benches::{first_windows, CandleBaseline};
use augur_core::embed::{cosine, TokenWindow};
use augur_core::{Embedder, InputKind, LongTextPolicy, ModelLocator};

struct Args {
    model: PathBuf,
    corpus: PathBuf,
    limit: usize,
    max_tokens: usize,
    batch_sizes: Vec<usize>,
    single_runs: usize,
    python: String,
}

fn parse_args() -> Result<Args> {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo")).join("..");
    let mut args = Args {
        model: root.join("models/multilingual-e5-small"),
        corpus: root.join("benches/corpus/encoder_corpus.jsonl"),
        limit: usize::MAX,
        max_tokens: 256,
        batch_sizes: vec![1, 8, 32],
        single_runs: 30,
        python: "python3".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = value()?.into(),
            "--corpus" => args.corpus = value()?.into(),
            "--limit" => args.limit = value()?.parse()?,
            "--max-tokens" => args.max_tokens = value()?.parse()?,
            "--batch-sizes" => {
                args.batch_sizes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--single-runs" => args.single_runs = value()?.parse()?,
            "--python" => args.python = value()?,
            "-h" | "--help" => {
                println!("encoder_bench [--model DIR] [--corpus FILE.jsonl] [--limit N] [--max-tokens 256] [--batch-sizes 1,8,32] [--single-runs 30] [--python python3|none]");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}; see --help"),
        }
    }
    Ok(args)
}

fn load_corpus(path: &PathBuf, limit: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .take(limit)
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            v["text"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("{}: line {}: no `text`", path.display(), i + 1))
        })
        .collect()
}

/// Runs `encode` over `ids` in length-sorted buckets of `batch` (given the bucket's indices and
/// rows); returns seconds.
fn time_buckets(
    ids: &[Vec<u32>],
    batch: usize,
    mut encode: impl FnMut(&[usize], &[&[u32]]) -> Result<()>,
) -> Result<f64> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let start = Instant::now();
    for bucket in order.chunks(batch) {
        let rows: Vec<&[u32]> = bucket.iter().map(|&i| ids[i].as_slice()).collect();
        encode(bucket, &rows)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One single-window text per row of token ids.
fn as_windows(ids: &[Vec<u32>]) -> Vec<TokenWindow> {
    ids.iter()
        .enumerate()
        .map(|(i, w)| TokenWindow {
            text_index: i,
            ids: w.clone(),
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let texts = load_corpus(&args.corpus, args.limit)?;
    let build_with = |batch: usize, int8: bool| {
        Embedder::builder(args.model.display().to_string())
            .with_locator(ModelLocator::empty())
            .with_long_text(LongTextPolicy::Truncate)
            .with_max_tokens(args.max_tokens)
            .with_batch_size(batch)
            .with_int8(int8)
            .build()
    };
    let build = |batch: usize| build_with(batch, false);
    let augur = build(32)?;
    let baseline = CandleBaseline::load(&args.model)?;
    let ids = first_windows(augur.windows(&texts, InputKind::Passage)?);
    let tokens: usize = ids.iter().map(Vec::len).sum();
    println!(
        "corpus: {} texts, {tokens} tokens (mean {:.1}, truncated at {}), model {}",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        args.max_tokens,
        args.model.display()
    );
    println!(
        "threads: {} (candle/gemm), machine: {} cores",
        rayon_threads(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:>5} | {:>14} {:>14} | {:>14} {:>14} | {:>6} | {:>10}",
        "batch", "augur texts/s", "tokens/s", "candle texts/s", "tokens/s", "ratio", "min cosine"
    );
    let mut batch32_seconds = None;
    let mut batch32_vectors = Vec::new();
    for &batch in &args.batch_sizes {
        let embedder = build(batch)?;
        let windows = as_windows(&ids);
        let start = Instant::now();
        let our_vectors = embedder.encode_windows(&windows)?;
        let ours = start.elapsed().as_secs_f64();
        let mut their_vectors = vec![Vec::new(); ids.len()];
        let theirs = time_buckets(&ids, batch, |bucket, rows| {
            for (&i, v) in bucket.iter().zip(baseline.embed_rows(rows)?) {
                their_vectors[i] = v;
            }
            Ok(())
        })?;
        let min_cosine = our_vectors
            .iter()
            .zip(&their_vectors)
            .map(|(a, b)| cosine(a, b))
            .fold(f32::INFINITY, f32::min);
        let n = texts.len() as f64;
        if batch == PYTHON_BATCH {
            batch32_seconds = Some(ours);
            batch32_vectors = our_vectors.clone();
        }
        println!(
            "{batch:>5} | {:>14.1} {:>14.0} | {:>14.1} {:>14.0} | {:>5.2}x | {min_cosine:>10.6}",
            n / ours,
            tokens as f64 / ours,
            n / theirs,
            tokens as f64 / theirs,
            theirs / ours
        );
    }
    let message = "客户说产线升级的预算已经批下来了";
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..args.single_runs {
        let start = Instant::now();
        augur.embed_one(message, InputKind::Passage)?;
        ours.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let w = first_windows(augur.windows(&[message], InputKind::Passage)?);
        baseline.embed_rows(&[w[0].as_slice()])?;
        theirs.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "single message ({} chars) p50: augur {ours:.1} ms, candle {theirs:.1} ms, ratio {:.2}x",
        message.chars().count(),
        theirs / ours
    );
    int8_path(
        &args,
        &ids,
        &batch32_vectors,
        batch32_seconds,
        ours,
        build_with(PYTHON_BATCH, true)?,
    )?;
    if args.python != "none" {
        let single = first_windows(augur.windows(&[message], InputKind::Passage)?).remove(0);
        let single_vector = augur
            .encode_windows(&[TokenWindow {
                text_index: 0,
                ids: single.clone(),
            }])?
            .remove(0);
        let augur_run = AugurRun {
            batch_seconds: batch32_seconds,
            single_ms: ours,
            single_vector,
        };
        python_baselines(&args, &ids, &single, &augur_run)?;
    }
    Ok(())
}

/// The int8 path at batch [`PYTHON_BATCH`]: throughput and single-message p50 as ratios to the
/// f32 path, and the smallest cosine between its vectors and the f32 ones.
fn int8_path(
    args: &Args,
    ids: &[Vec<u32>],
    f32_vectors: &[Vec<f32>],
    f32_seconds: Option<f64>,
    f32_single_ms: f64,
    int8: Embedder,
) -> Result<()> {
    let windows = as_windows(ids);
    let start = Instant::now();
    let vectors = int8.encode_windows(&windows)?;
    let seconds = start.elapsed().as_secs_f64();
    let message = "客户说产线升级的预算已经批下来了";
    let mut single = Vec::new();
    for _ in 0..args.single_runs {
        let start = Instant::now();
        int8.embed_one(message, InputKind::Passage)?;
        single.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let single = median(single);
    let min_cosine = vectors
        .iter()
        .zip(f32_vectors)
        .map(|(a, b)| cosine(a, b))
        .fold(f32::INFINITY, f32::min);
    let vs_f32 = f32_seconds.map_or(String::new(), |f| {
        format!(", {:.2}x the f32 path", f / seconds)
    });
    println!(
        "int8 (batch {PYTHON_BATCH}): {:.1} texts/s{vs_f32}; single p50 {single:.1} ms ({:.2}x); min cosine to f32 {min_cosine:.6}",
        ids.len() as f64 / seconds,
        f32_single_ms / single,
    );
    Ok(())
}

/// Batch size of the Python baselines' run (the protocol).
const PYTHON_BATCH: usize = 32;

/// What the Python baselines are compared with.
struct AugurRun {
    /// Seconds for the corpus at batch [`PYTHON_BATCH`] (if that batch size was run).
    batch_seconds: Option<f64>,
    /// Single-message p50.
    single_ms: f64,
    /// Mean-pooled vector of the single message.
    single_vector: Vec<f32>,
}

/// Runs `benches/python_baselines.py` (PyTorch, onnxruntime fp32 / int8, when importable) on the
/// same token ids in the same buckets, and prints Augur's ratio to each and the cosine between
/// their vector and Augur's for the single message.
fn python_baselines(args: &Args, ids: &[Vec<u32>], single: &[u32], augur: &AugurRun) -> Result<()> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let batches: Vec<Vec<&Vec<u32>>> = order
        .chunks(PYTHON_BATCH)
        .map(|b| b.iter().map(|&i| &ids[i]).collect())
        .collect();
    let work = std::env::temp_dir().join(format!("augur-bench-ids-{}.json", std::process::id()));
    std::fs::write(
        &work,
        serde_json::json!({"batches": batches, "single": single, "runs": args.single_runs})
            .to_string(),
    )?;
    let script = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join("python_baselines.py");
    let output = std::process::Command::new(&args.python)
        .arg(&script)
        .arg("--model")
        .arg(&args.model)
        .arg("--ids")
        .arg(&work)
        .arg("--threads")
        .arg(rayon_threads().to_string())
        .output();
    std::fs::remove_file(&work).ok();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "python baselines: failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return Ok(());
        }
        Err(e) => {
            println!("python baselines: cannot run {}: {e}", args.python);
            return Ok(());
        }
    };
    let n = ids.len() as f64;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let backend = v["backend"].as_str().unwrap_or("?");
        if let Some(why) = v["skipped"].as_str() {
            println!("{backend}: skipped ({why})");
            continue;
        }
        let (Some(seconds), Some(p50)) = (v["seconds"].as_f64(), v["single_ms_p50"].as_f64())
        else {
            continue;
        };
        let vector: Vec<f32> = v["single_vector"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect()
            })
            .unwrap_or_default();
        let throughput = match augur.batch_seconds {
            Some(ours) => format!(
                "{:.1} texts/s at batch {PYTHON_BATCH}, augur {:.2}x",
                n / seconds,
                seconds / ours
            ),
            None => format!("{:.1} texts/s at batch {PYTHON_BATCH}", n / seconds),
        };
        println!(
            "{backend}: {throughput}; single p50 {p50:.1} ms, augur {:.2}x; cosine to augur {:.6}",
            p50 / augur.single_ms,
            cosine(&vector, &augur.single_vector)
        );
    }
    Ok(())
}

fn rayon_threads() -> usize {
    candle_core::utils::get_num_threads()
}
