//! On-disk cache of fitted heads, keyed by everything that determines them: the training texts,
//! labels and weights, the model files' identity, and the fit settings. A changed example, model
//! or setting gives a new key; a stale entry is never read.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::classify::LogisticHeads;

/// Bump when the file layout or the training procedure changes.
const CACHE_FORMAT: u32 = 2;

/// The default cache folder: `$AUGUR_CACHE_DIR`, else `~/.cache/augur`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("AUGUR_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/augur")))
}

/// Builds a cache key from the parts that determine the heads.
#[derive(Default)]
pub struct CacheKey(Sha256);

impl CacheKey {
    /// Starts a key.
    pub fn new() -> Self {
        let mut key = Self(Sha256::new());
        key.add_bytes(&CACHE_FORMAT.to_le_bytes());
        key
    }

    /// Adds raw bytes.
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds a file's identity: canonical path, length and modification time.
    pub fn add_file_identity(&mut self, path: &Path) {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.add_bytes(canonical.display().to_string().as_bytes());
        if let Ok(meta) = std::fs::metadata(path) {
            self.add_bytes(&meta.len().to_le_bytes());
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            self.add_bytes(&modified.map_or(0, |d| d.as_nanos()).to_le_bytes());
        }
    }

    /// The key as 32 hex digits.
    pub fn digest(self) -> String {
        let hex: String = self
            .0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hex[..32].to_string()
    }

    /// The file name for this key.
    pub fn file_name(self) -> String {
        format!("heads-{}.bin", self.digest())
    }
}

fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    out.extend((values.len() as u64).to_le_bytes());
    values.iter().for_each(|v| out.extend(v.to_le_bytes()));
}

fn take_f32s(bytes: &mut &[u8]) -> Option<Vec<f32>> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let data = bytes.get(8..8 + 4 * n)?;
    *bytes = &bytes[8 + 4 * n..];
    Some(
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
    )
}

/// Reads cached heads; `None` when absent or unreadable (then they are fitted again).
pub fn load(dir: &Path, file: &str) -> Option<LogisticHeads> {
    let mut bytes = Vec::new();
    std::fs::File::open(dir.join(file))
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let mut rest = bytes.as_slice();
    let heads = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
    rest = &rest[8..];
    let mean = take_f32s(&mut rest)?;
    let inv_std = take_f32s(&mut rest)?;
    let weights = take_f32s(&mut rest)?;
    let bias = take_f32s(&mut rest)?;
    LogisticHeads::from_parts(mean, inv_std, weights, bias, heads)
}

/// Writes heads atomically (temporary file, then rename); failures only cost a refit next time.
pub fn store(dir: &Path, file: &str, heads: &LogisticHeads) {
    let (mean, inv_std, weights, bias, n) = heads.parts();
    let mut out = Vec::new();
    out.extend((n as u64).to_le_bytes());
    for values in [mean, inv_std, weights, bias] {
        put_f32s(&mut out, values);
    }
    let tmp = dir.join(format!("{file}.{}.partial", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, &out))
        .and_then(|_| std::fs::rename(&tmp, dir.join(file)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}
