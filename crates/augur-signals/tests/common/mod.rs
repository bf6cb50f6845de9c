//! Shared setup of the integration tests: the real default model, and small packs.
// Each test file uses its own part of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use augur_core::{Embedder, ModelLocator};
use augur_signals::SignalPack;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo")).join("../..")
}

/// multilingual-e5-small as `models/fetch` provisions it.
pub fn e5() -> Embedder {
    let dir = repo().join("models/multilingual-e5-small");
    assert!(
        dir.join("model.safetensors").is_file(),
        "run `models/fetch` first"
    );
    Embedder::builder(dir.display().to_string())
        .with_locator(ModelLocator::empty())
        .build()
        .unwrap()
}

/// A pack of the given `[[signal]]` table and a `complaint` signal, with a few sentiment examples.
pub fn tiny_pack(signal: &str) -> SignalPack {
    let text = format!(
        r#"
[pack]
name = "tiny"

[sentiment]
positive = ["Really happy with the rollout", "服务很好，非常满意"]
negative = ["Support has been terrible", "系统老是出问题，很不满意"]
neutral = ["The meeting is in room 4", "会议在三楼"]
{signal}
[[signal]]
id = "complaint"
kind = "risk"
name_zh = "投诉"
name_en = "Complaint"
examples = ["They are unhappy with the slow support", "客户对响应速度很不满"]
"#
    );
    SignalPack::parse(&text, "tiny.toml", |_| Ok(Vec::new())).unwrap()
}
