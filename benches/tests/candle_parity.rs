//! Augur's own BERT forward against stock candle-transformers on the real weights: same ids, same
//! padding, last hidden state within 1e-4.

use std::path::PathBuf;

use augur_benches::{first_windows, pad_batch, CandleBaseline};
use augur_core::{Embedder, InputKind, LongTextPolicy, ModelLocator};

fn model_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join("../models")
        .join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} missing: run `models/fetch` first",
        dir.display()
    );
    dir
}

const TEXTS: &[&str] = &[
    "客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500，下月初安排技术交流",
    "We're also talking to a competitor about pricing.",
    "compliance audit next quarter",
    "客户：报价单什么时候能发过来？我们采购那边在催。",
    "ok",
    "Ticket #4471 is past its 24h SLA; the customer says they will not renew if this keeps happening, and their CFO is now involved.",
];

fn check(name: &str) {
    let dir = model_dir(name);
    let ours = Embedder::builder(dir.display().to_string())
        .with_locator(ModelLocator::empty())
        .with_long_text(LongTextPolicy::Truncate)
        .build()
        .unwrap();
    let baseline = CandleBaseline::load(&dir).unwrap();
    let ids = first_windows(ours.windows(TEXTS, InputKind::Passage).unwrap());
    let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let (ids_t, mask_t) = pad_batch(&rows, ours.encoder().config().pad_token_id).unwrap();

    let a = ours.encoder().forward(&ids_t, &mask_t).unwrap();
    let b = baseline.forward(&ids_t, &mask_t).unwrap();
    assert_eq!(a.dims(), b.dims());
    let max_diff: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(
        max_diff < 1e-4,
        "{name}: last hidden state differs by {max_diff} (limit 1e-4)"
    );
}

#[test]
fn e5_hidden_state_matches_candle_transformers() {
    check("multilingual-e5-small");
}

#[test]
fn minilm_hidden_state_matches_candle_transformers() {
    check("all-MiniLM-L6-v2");
}
