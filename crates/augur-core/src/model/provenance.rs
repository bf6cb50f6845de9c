//! `provenance.json`: where a provisioned model's files came from and their sha256, written by
//! `models/fetch` and checked by `augur models verify`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{io_error, AugurError, Result};

/// The record beside a provisioned model.
#[derive(Debug, Clone, Deserialize)]
pub struct Provenance {
    /// The registry packages the files came from (package, wheel sha256, file).
    pub sources: Vec<serde_json::Value>,
    /// sha256 of every file, by path relative to the model directory.
    pub files: BTreeMap<String, String>,
}

impl Provenance {
    /// Reads `dir/provenance.json`; `None` when the model was not provisioned by `models/fetch`.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("provenance.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| AugurError::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }
}

/// Result of checking one file against its recorded hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Path relative to the model directory.
    pub file: String,
    /// The recorded sha256.
    pub expected: String,
    /// The sha256 found now (`None` when the file is missing).
    pub found: Option<String>,
}

impl FileCheck {
    /// Whether the file is present and unchanged.
    pub fn ok(&self) -> bool {
        self.found.as_deref() == Some(self.expected.as_str())
    }
}

/// Hashes every file the provenance record lists.
pub fn check_files(dir: &Path, provenance: &Provenance) -> Result<Vec<FileCheck>> {
    provenance
        .files
        .iter()
        .map(|(file, expected)| {
            let path = dir.join(file);
            let found = if path.is_file() {
                Some(sha256_file(&path)?)
            } else {
                None
            };
            Ok(FileCheck {
                file: file.clone(),
                expected: expected.clone(),
                found,
            })
        })
        .collect()
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
