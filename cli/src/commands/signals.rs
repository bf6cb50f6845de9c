//! Shared by `extract` and `eval-signals`: loading the pack and building the extractor.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use augur_core::encoder::LoraAdapter;
use augur_core::finetune::TextClassifier;
use augur_core::Embedder;
use augur_signals::{SignalExtractor, SignalPack};

use crate::commands::ModelArgs;

/// Signal pack and threshold flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PackArgs {
    /// A signal pack (TOML) that extends the built-in B2B pack: signals with the same id replace
    /// the built-in ones, new ids are added. The format is in the README ("Using it") and
    /// crates/augur-signals/packs/b2b.toml is a complete example.
    #[arg(long, value_name = "FILE")]
    pub signals: Option<PathBuf>,
    /// Use only the --signals pack, without the built-in one.
    #[arg(long, requires = "signals")]
    pub no_builtin: bool,
    /// Probability above which a signal fires, for signals whose pack sets no threshold
    /// (0 to 1).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = augur_signals::extract::DEFAULT_THRESHOLD
    )]
    pub threshold: f32,
    /// A directory written by `augur fit` whose labels are signal ids (and/or `positive` /
    /// `negative` for sentiment): its adapter embeds the clauses and its head decides those
    /// signals. Add examples, refit, and the signal improves. A PEFT adapter without a head
    /// only changes the embeddings (the pack's heads are refitted on them).
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Weight of a clause's context (the mean embedding of the clauses before and after it) among
    /// its features; 0 scores every clause on its own.
    #[arg(
        long,
        value_name = "W",
        allow_negative_numbers = true,
        default_value_t = augur_signals::extract::DEFAULT_CONTEXT_WEIGHT
    )]
    pub context_weight: f32,
    /// Also read each clause after N encoder layers (default: half the model's layers; 0: the
    /// last layer only).
    #[arg(long, value_name = "N")]
    pub middle_layer: Option<usize>,
}

/// What a resumed batch job must find unchanged: the flags, and the extractor's fingerprint
/// (model files, adapter, head, pack contents), which an edit in place changes.
pub fn resume_settings(
    columns: &impl std::fmt::Debug,
    pack: &PackArgs,
    model: &ModelArgs,
    chunk_size: usize,
    extractor: &SignalExtractor,
) -> String {
    format!(
        "{columns:?} {pack:?} {model:?} {chunk_size} {}",
        extractor.fingerprint()
    )
}

/// The pack of `--signals` / `--no-builtin`: the built-in B2B pack, extended or replaced.
pub fn load_pack(pack: &PackArgs) -> Result<SignalPack> {
    Ok(match &pack.signals {
        None => SignalPack::builtin(),
        Some(path) => {
            let own = SignalPack::from_file(path)?;
            if pack.no_builtin {
                own
            } else {
                SignalPack::builtin().extended_with(own)
            }
        }
    })
}

/// Labels an adapter's head may use for clauses with no signal: expected, so not reported.
const NO_SIGNAL_LABELS: [&str; 5] = ["none", "other", "no_signal", "nothing", "neutral"];

/// Loads the model and the pack, then fits the few-shot heads (a few seconds).
pub fn build_extractor(model: &ModelArgs, pack: &PackArgs) -> Result<SignalExtractor> {
    let signals = load_pack(pack)?;
    let sentiment = &signals.sentiment;
    // An adapter's head may decide sentiment itself (labels `positive` / `negative`).
    if sentiment.positive.is_empty() && sentiment.negative.is_empty() && pack.adapter.is_none() {
        eprintln!(
            "warning: pack {} has no positive or negative sentiment examples: every note's sentiment will be 0 and sentiment will not move any score (add a [sentiment] table, or drop --no-builtin)",
            signals.name
        );
    }
    let embedder = Embedder::builder(&model.model)
        .with_locator(model.locator())
        .with_int8(model.int8)
        .build()
        .with_context(|| format!("loading model `{}`", model.model))?;
    eprintln!(
        "model: {} ({}); pack: {} v{} ({} signals, {} labelled notes)",
        model.model,
        embedder.files().dir.display(),
        signals.name,
        signals.version,
        signals.signals.len(),
        signals.labelled_notes.len()
    );
    let mut builder = SignalExtractor::builder(embedder.clone())
        .with_pack(signals)
        .with_threshold(pack.threshold)
        .with_context_weight(pack.context_weight);
    if let Some(depth) = pack.middle_layer {
        let layers = embedder.layer_count();
        if depth >= layers {
            if layers < 2 {
                bail!("--middle-layer {depth}: the model has {layers} layer, so only 0 (the last layer only)");
            }
            bail!(
                "--middle-layer {depth}: expected 0 (the last layer only) or 1 to {} (the model has {layers} layers)",
                layers - 1
            );
        }
        builder = builder.with_middle_layer((depth > 0).then_some(depth));
    }
    match &pack.adapter {
        None => {}
        Some(dir) if dir.join("head.safetensors").is_file() => {
            let classifier = TextClassifier::load(&embedder, dir)
                .with_context(|| format!("loading the fitted adapter in {}", dir.display()))?;
            eprintln!(
                "adapter: {} with its head (labels {})",
                dir.display(),
                classifier.labels.join(", ")
            );
            builder = builder.with_classifier(classifier);
        }
        Some(dir) => {
            let adapter = LoraAdapter::load(dir, embedder.encoder().device())
                .with_context(|| format!("loading the adapter in {}", dir.display()))?;
            eprintln!(
                "adapter: {} (no head.safetensors: it embeds the clauses, the pack's heads decide)",
                dir.display()
            );
            builder = builder.with_embedder(embedder.with_adapter(&adapter)?);
        }
    }
    let extractor = builder.build()?;
    // `none` (or the like) is the "no signal" class the README asks for, not a typo.
    let unexpected: Vec<&str> = extractor
        .unused_classifier_labels()
        .iter()
        .map(String::as_str)
        .filter(|label| !NO_SIGNAL_LABELS.contains(&label.trim().to_lowercase().as_str()))
        .collect();
    if !unexpected.is_empty() {
        eprintln!(
            "adapter: labels {} name no signal of the pack and decide nothing (a typo in a signal id?)",
            unexpected.join(", ")
        );
    }
    Ok(extractor)
}
