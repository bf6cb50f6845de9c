//! Behaviour of the real provisioned models (run `models/fetch` first): parity with Python
//! sentence-transformers, padding invariance, batching order, long-text chunking, prefixes.

mod support;

use augur_core::embed::cosine;
use augur_core::{Embedder, InputKind, LongTextPolicy, ModelLocator};
use candle_core::{Device, Tensor};
use serde::Deserialize;
use support::{e5, minilm, real_model_dir};

#[derive(Deserialize)]
struct Reference {
    items: Vec<ReferenceItem>,
}

#[derive(Deserialize)]
struct ReferenceItem {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    let path =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo"))
            .join("../../fixtures/reference/minilm_sentence_transformers.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn minilm_tokens_match_sentence_transformers() {
    let reference = reference();
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let windows = minilm().windows(&texts, InputKind::Passage).unwrap();
    for (item, w) in reference.items.iter().zip(&windows) {
        assert_eq!(w.len(), 1, "{:?} should fit one window", item.text);
        assert_eq!(w[0].ids, item.input_ids, "token ids of {:?}", item.text);
    }
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let reference = reference();
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let ours = minilm().embed(&texts, InputKind::Passage).unwrap();
    assert!(reference.items.len() >= 16);
    for (item, v) in reference.items.iter().zip(&ours) {
        let c = cosine(v, &item.embedding);
        assert!(c >= 0.9999, "cosine {c:.6} < 0.9999 for {:?}", item.text);
    }
}

/// Runs the encoder on one row padded to `pad_to` and returns the real positions' states.
fn hidden_with_padding(embedder: &Embedder, ids: &[u32], pad_to: usize) -> Vec<Vec<f32>> {
    let pad = embedder.encoder().config().pad_token_id;
    let mut row = ids.to_vec();
    row.resize(pad_to, pad);
    let mask: Vec<u32> = (0..pad_to).map(|i| u32::from(i < ids.len())).collect();
    let ids_t = Tensor::from_vec(row, (1, pad_to), &Device::Cpu).unwrap();
    let mask_t = Tensor::from_vec(mask, (1, pad_to), &Device::Cpu).unwrap();
    let hidden = embedder.encoder().forward(&ids_t, &mask_t).unwrap();
    hidden
        .squeeze(0)
        .unwrap()
        .narrow(0, 0, ids.len())
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn padding_changes_no_hidden_state_and_no_embedding() {
    let model = e5();
    let text = "客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500";
    let ids = model
        .windows(&[text], InputKind::Passage)
        .unwrap()
        .remove(0)
        .remove(0)
        .ids;
    let plain = hidden_with_padding(model, &ids, ids.len());
    let padded = hidden_with_padding(model, &ids, ids.len() + 37);
    let max_diff = plain
        .iter()
        .flatten()
        .zip(padded.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max_diff < 1e-4,
        "padding moved a hidden state by {max_diff}"
    );

    // Through the public API: alone (no padding) vs batched with a much longer text.
    let long = "We're also talking to Rockwell about the MES piece, and the compliance audit next quarter means they need SOC 2 documentation before the end of the month.";
    let alone = model.embed(&[text], InputKind::Passage).unwrap().remove(0);
    let batched = model
        .embed(&[long, text], InputKind::Passage)
        .unwrap()
        .remove(1);
    let c = cosine(&alone, &batched);
    assert!(
        c > 0.99999,
        "batching with padding changed the embedding (cosine {c})"
    );
}

#[test]
fn batched_output_order_equals_input_order() {
    let texts = [
        "ok",
        "预算还没批下来，要等董事会。",
        "We are not looking at other vendors right now.",
        "客户：报价单什么时候能发过来？",
        "compliance audit next quarter",
        "下月初安排技术交流",
        "Ticket #4471 is past its 24h SLA and nobody has replied, the customer is furious.",
    ];
    let embedder = Embedder::builder(
        real_model_dir("multilingual-e5-small")
            .display()
            .to_string(),
    )
    .with_locator(ModelLocator::empty())
    .with_batch_size(3)
    .build()
    .unwrap();
    let batched = embedder.embed(&texts, InputKind::Passage).unwrap();
    for (text, b) in texts.iter().zip(&batched) {
        let single = e5().embed_one(text, InputKind::Passage).unwrap();
        let c = cosine(&single, b);
        assert!(
            c > 0.99999,
            "{text:?}: batched vector is not the text's own (cosine {c})"
        );
    }
}

#[test]
fn long_notes_are_chunked_so_their_ending_counts() {
    let head = "拜访张总，他们今年的重点是把三个工厂的设备数据打通，目前用的是金蝶的ERP，MES还是自己开发的老系统。".repeat(30);
    let ending_a = "最后张总说预算已经批复了，下个月签合同。";
    let ending_b = "最后张总说公司决定明年不续约了，转用竞品。";
    let (a, b) = (format!("{head}{ending_a}"), format!("{head}{ending_b}"));
    assert!(a.chars().count() > 1500);
    let windows = e5()
        .windows(&[a.as_str()], InputKind::Passage)
        .unwrap()
        .remove(0);
    assert!(
        windows.len() >= 2,
        "a {}-char note should need several windows",
        a.chars().count()
    );
    assert!(windows.iter().all(|w| w.ids.len() <= e5().max_tokens()));

    let chunked = e5()
        .embed(&[a.as_str(), b.as_str()], InputKind::Passage)
        .unwrap();
    assert!(
        cosine(&chunked[0], &chunked[1]) < 0.9999,
        "chunking must let the note's ending change its vector"
    );

    let truncating = Embedder::builder(
        real_model_dir("multilingual-e5-small")
            .display()
            .to_string(),
    )
    .with_locator(ModelLocator::empty())
    .with_long_text(LongTextPolicy::Truncate)
    .build()
    .unwrap();
    let cut = truncating
        .embed(&[a.as_str(), b.as_str()], InputKind::Passage)
        .unwrap();
    assert!(
        cosine(&cut[0], &cut[1]) > 0.99999,
        "truncation ignores everything past the first window"
    );
}

#[test]
fn e5_prefixes_come_from_the_model_card_and_matter() {
    let model = e5();
    assert_eq!(model.card().prefix(InputKind::Query), "query: ");
    assert_eq!(model.card().prefix(InputKind::Passage), "passage: ");
    let q = model
        .embed_one("budget approved", InputKind::Query)
        .unwrap();
    let p = model
        .embed_one("budget approved", InputKind::Passage)
        .unwrap();
    assert!(
        cosine(&q, &p) < 0.9999,
        "query and passage prefixes must give different vectors"
    );
    let norm: f32 = q.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "vectors are L2-normalised, norm {norm}"
    );
}

#[test]
fn e5_places_chinese_and_english_paraphrases_together() {
    let model = e5();
    let v = model
        .embed(
            &[
                "产线升级预算已批复",
                "生产线改造的预算批下来了",
                "今天天气很好，我们去公园散步。",
                "The budget for the line upgrade has been approved.",
                "The weather is nice today, let's walk in the park.",
            ],
            InputKind::Passage,
        )
        .unwrap();
    // Same language: the paraphrase beats the unrelated sentence.
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.05);
    // Across languages: the translation beats the unrelated English sentence.
    let (same, other) = (cosine(&v[0], &v[3]), cosine(&v[0], &v[4]));
    assert!(
        same > other + 0.03,
        "zh/en paraphrase {same:.3} should beat an unrelated English sentence {other:.3}"
    );
}

/// The unpadded CPU path (fused QKV, own kernels) against the candle forward on a padded batch.
fn assert_ragged_matches_padded(model: &Embedder) {
    let texts = [
        "客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500，下月初安排技术交流",
        "ok",
        "We're also talking to Rockwell about the MES piece; the compliance audit is next quarter.",
        "服务工单超过SLA三天了，客户很不满意",
    ];
    let windows = model.windows(&texts, InputKind::Passage).unwrap();
    let rows: Vec<&[u32]> = windows.iter().map(|w| w[0].ids.as_slice()).collect();
    let encoder = augur_core::RaggedEncoder::new(model.encoder()).unwrap();
    let ragged = encoder.forward(&rows).unwrap();
    let seq = rows.iter().map(|r| r.len()).max().unwrap();
    let pad = model.encoder().config().pad_token_id;
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for row in &rows {
        ids.extend_from_slice(row);
        ids.resize(ids.len() + seq - row.len(), pad);
        mask.extend((0..seq).map(|i| u32::from(i < row.len())));
    }
    let ids = Tensor::from_vec(ids, (rows.len(), seq), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (rows.len(), seq), &Device::Cpu).unwrap();
    let padded: Vec<Vec<Vec<f32>>> = model
        .encoder()
        .forward(&ids, &mask)
        .unwrap()
        .to_vec3()
        .unwrap();
    let mut max_diff = 0f32;
    for (i, row) in rows.iter().enumerate() {
        let states = ragged.sequence(i);
        assert_eq!(states.len(), row.len() * ragged.hidden);
        for (t, token) in states.chunks(ragged.hidden).enumerate() {
            for (a, b) in token.iter().zip(&padded[i][t]) {
                max_diff = max_diff.max((a - b).abs());
            }
        }
    }
    assert!(
        max_diff < 1e-4,
        "ragged vs padded forward: max abs diff {max_diff}"
    );
    // Fine-tuning runs the frozen layers once and the rest later: the two parts must compose to
    // the whole forward, whatever the split.
    let layers = encoder.layer_count();
    for split in [0, 1, layers / 2, layers] {
        let before = encoder.states_before_layer(&rows, split).unwrap();
        let after = encoder.run_layers(before, split..layers);
        assert_eq!(after.offsets, ragged.offsets);
        assert_eq!(after.states, ragged.states, "split at layer {split}");
    }
    // The middle layer's states, as the signal heads read them, agree on both paths too.
    let middle_padded: Vec<Vec<Vec<f32>>> = model
        .encoder()
        .forward_to_depths(&ids, &mask, &[layers / 2])
        .unwrap()[0]
        .to_vec3()
        .unwrap();
    let middle_ragged = encoder.states_before_layer(&rows, layers / 2).unwrap();
    let mut max_diff = 0f32;
    for (i, row) in rows.iter().enumerate() {
        let states = middle_ragged.sequence(i);
        for (t, token) in states
            .chunks(middle_ragged.hidden)
            .enumerate()
            .take(row.len())
        {
            for (a, b) in token.iter().zip(&middle_padded[i][t]) {
                max_diff = max_diff.max((a - b).abs());
            }
        }
    }
    assert!(
        max_diff < 1e-4,
        "middle layer, ragged vs padded: {max_diff}"
    );
}

/// One pass gives the last layer's vectors (exactly `embed`'s) and a middle layer's (different,
/// normalised the same way); a depth past the last layer is refused.
#[test]
fn embeddings_at_several_depths_come_from_one_pass() {
    let texts = ["产线升级预算已批复", "We're also talking to Rockwell."];
    let model = e5();
    let layers = model.layer_count();
    let at = model
        .embed_at_depths(&texts, InputKind::Query, &[layers, layers / 2])
        .unwrap();
    assert_eq!(at[0], model.embed(&texts, InputKind::Query).unwrap());
    for (last, middle) in at[0].iter().zip(&at[1]) {
        let norm = middle.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "middle-layer norm {norm}");
        assert!(
            cosine(last, middle) < 0.99,
            "the middle layer is not the last"
        );
    }
    // Asked alone, the middle layer gives the same vectors; and they are the padded forward's
    // states at that depth, mean-pooled and normalised by hand.
    let alone = model
        .embed_at_depths(&texts, InputKind::Query, &[layers / 2])
        .unwrap();
    assert_eq!(alone[0], at[1]);
    let windows = model.windows(&texts, InputKind::Query).unwrap();
    for (window, middle) in windows.iter().zip(&at[1]) {
        let ids = &window[0].ids;
        let n = ids.len();
        let ids_t = Tensor::from_vec(ids.clone(), (1, n), &Device::Cpu).unwrap();
        let mask_t = Tensor::from_vec(vec![1u32; n], (1, n), &Device::Cpu).unwrap();
        let states: Vec<Vec<f32>> = model
            .encoder()
            .forward_to_depths(&ids_t, &mask_t, &[layers / 2])
            .unwrap()[0]
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        let mut mean: Vec<f32> = (0..states[0].len())
            .map(|d| states.iter().map(|t| t[d]).sum::<f32>() / n as f32)
            .collect();
        augur_core::embed::l2_normalize(&mut mean);
        let diff = mean
            .iter()
            .zip(middle)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "middle layer vs padded forward: {diff}");
    }
    let err = model
        .embed_at_depths(&texts, InputKind::Query, &[layers + 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{} layers", layers)), "{err}");
}

#[test]
fn unpadded_cpu_path_equals_the_candle_forward() {
    assert_ragged_matches_padded(e5());
    assert_ragged_matches_padded(minilm());
}

/// The int8 path (quantised dense layers) stays within cosine 0.995 of f32 on real sentences.
#[test]
fn int8_embeddings_stay_close_to_f32() {
    let texts = [
        "客户确认产线升级预算已批复，当前PLC型号为西门子S7-1500，下月初安排技术交流",
        "We're also talking to Rockwell about the MES piece; the compliance audit is next quarter.",
        "服务工单超过SLA三天了，客户很不满意",
        "ok",
    ];
    let int8 = Embedder::builder(
        real_model_dir("multilingual-e5-small")
            .display()
            .to_string(),
    )
    .with_locator(ModelLocator::empty())
    .with_int8(true)
    .build()
    .unwrap();
    assert!(int8.int8());
    let exact = e5().embed(&texts, InputKind::Passage).unwrap();
    let quantised = int8.embed(&texts, InputKind::Passage).unwrap();
    for ((text, a), b) in texts.iter().zip(&exact).zip(&quantised) {
        let c = cosine(a, b);
        assert!(c >= 0.995, "int8 cosine {c} for {text:?}");
        assert!(c < 1.0 - 1e-7, "the int8 path did not run for {text:?}");
    }
}
