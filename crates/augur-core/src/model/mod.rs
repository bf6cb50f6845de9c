//! Finding a model: a local directory, Augur's provisioned `models/` folder, or the Hugging Face
//! cache (offline), in that order; downloading only when asked for.

pub mod config;
pub mod provenance;
pub mod weights;

use std::path::{Path, PathBuf};

use crate::error::{AugurError, Result};

pub use config::{EncoderConfig, InputKind, ModelCardSettings, PoolingMode};

/// The default model: multilingual (Chinese + English), provisioned by `models/fetch`.
pub const DEFAULT_MODEL: &str = "intfloat/multilingual-e5-small";

/// The command that provisions the models Augur ships support for.
pub const PROVISION_HINT: &str =
    "run `models/fetch` in the Augur checkout (it provisions multilingual-e5-small and all-MiniLM-L6-v2 into models/); \
     from another folder, set AUGUR_MODELS_DIR to that models/ folder; or point --model at a local Hugging Face model \
     directory, or allow downloading (--allow-download, built with `--features download`)";

/// Short names of the models `models/fetch` provisions, with their Hugging Face repo ids.
pub const KNOWN_MODELS: &[(&str, &str)] = &[
    ("multilingual-e5-small", "intfloat/multilingual-e5-small"),
    ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
];

/// Where a resolved model was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOrigin {
    /// The name was a directory.
    Directory,
    /// Found under one of Augur's models directories.
    ModelsDir,
    /// Found in the Hugging Face cache, in this snapshot directory.
    HfCache,
    /// Downloaded from the hub in this run.
    Downloaded,
}

/// The files of one resolved model.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The name that was asked for.
    pub name: String,
    /// The directory the files live in (a snapshot directory for the Hugging Face cache).
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// How it was found.
    pub origin: ModelOrigin,
}

impl ModelFiles {
    /// The model's Hugging Face repo id where it can be told (a known short name, a repo id, or a
    /// directory inside the Hugging Face cache layout `models--ORG--NAME/snapshots/…`), else the
    /// directory's name. This is what adapters record as `base_model_name_or_path`.
    pub fn model_id(&self) -> String {
        if let Some(repo) = repo_id_in_cache_path(&self.dir) {
            return repo;
        }
        match self.origin {
            ModelOrigin::Directory => self
                .dir
                .canonicalize()
                .unwrap_or_else(|_| self.dir.clone())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.name.clone()),
            _ => repo_id_for(&self.name),
        }
    }
}

/// The repo id of a path inside the Hugging Face cache layout (`…/models--ORG--NAME/snapshots/…`
/// is `ORG/NAME`), if it is one.
pub fn repo_id_in_cache_path(path: &Path) -> Option<String> {
    path.ancestors().find_map(|dir| {
        let name = dir.file_name()?.to_str()?;
        let repo = name.strip_prefix("models--")?;
        Some(repo.replacen("--", "/", 1))
    })
}

/// Resolves model names to files. Build with [`ModelLocator::from_env`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct ModelLocator {
    models_dirs: Vec<PathBuf>,
    hf_cache: Option<PathBuf>,
    allow_download: bool,
}

impl ModelLocator {
    /// Searches `$AUGUR_MODELS_DIR` (colon-separated), then `./models`, then the Hugging Face cache
    /// (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). No downloads.
    pub fn from_env() -> Self {
        let mut models_dirs: Vec<PathBuf> = std::env::var_os("AUGUR_MODELS_DIR")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        models_dirs.push(PathBuf::from("models"));
        let hf_cache = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| Some(hf_hub::Cache::from_env().path().clone()));
        Self {
            models_dirs,
            hf_cache,
            allow_download: false,
        }
    }

    /// A locator that searches only what the `with_*` methods add.
    pub fn empty() -> Self {
        Self {
            models_dirs: Vec::new(),
            hf_cache: None,
            allow_download: false,
        }
    }

    /// Searches `dir` before the other models directories.
    pub fn with_models_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.models_dirs.insert(0, dir.into());
        self
    }

    /// Uses `dir` as the Hugging Face hub cache (the folder holding `models--ORG--NAME`).
    pub fn with_hf_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hf_cache = Some(dir.into());
        self
    }

    /// Allows downloading from the Hugging Face hub when nothing is found locally (off by default;
    /// needs the `download` cargo feature).
    pub fn with_allow_download(mut self, allow: bool) -> Self {
        self.allow_download = allow;
        self
    }

    /// Finds the model called `name`: a directory path, a short name (`multilingual-e5-small`) or a
    /// Hugging Face repo id (`intfloat/multilingual-e5-small`).
    pub fn resolve(&self, name: &str) -> Result<ModelFiles> {
        let mut searched = Vec::new();
        let as_path = Path::new(name);
        if as_path.is_dir() {
            return model_files(name, as_path, ModelOrigin::Directory);
        }
        searched.push(format!(
            "{} (as a directory: does not exist)",
            as_path.display()
        ));

        let repo_id = repo_id_for(name);
        let short = repo_id.rsplit('/').next().unwrap_or(&repo_id).to_string();
        for dir in &self.models_dirs {
            let candidate = dir.join(&short);
            if candidate.is_dir() {
                return model_files(name, &candidate, ModelOrigin::ModelsDir);
            }
            searched.push(format!("{} (models directory)", candidate.display()));
        }

        if let Some(cache_root) = &self.hf_cache {
            let cache = hf_hub::Cache::new(cache_root.clone());
            let repo = cache.model(repo_id.clone());
            if let Some(config) = repo.get("config.json") {
                let dir = config.parent().unwrap_or(cache_root).to_path_buf();
                return model_files(name, &dir, ModelOrigin::HfCache);
            }
            searched.push(format!(
                "{}/models--{}/snapshots/<refs/main> (Hugging Face cache)",
                cache_root.display(),
                repo_id.replace('/', "--")
            ));
        }

        if self.allow_download {
            return download(name, &repo_id);
        }
        Err(AugurError::ModelNotFound {
            name: name.to_string(),
            searched,
            hint: format!("To fix: {PROVISION_HINT}."),
        })
    }
}

impl Default for ModelLocator {
    fn default() -> Self {
        Self::from_env()
    }
}

/// Maps a short name to its repo id; anything else is taken as a repo id already.
fn repo_id_for(name: &str) -> String {
    KNOWN_MODELS
        .iter()
        .find(|(short, _)| *short == name)
        .map(|(_, id)| id.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Checks that `dir` has what an encoder needs and returns the paths.
fn model_files(name: &str, dir: &Path, origin: ModelOrigin) -> Result<ModelFiles> {
    let require = |file: &str, hint: &str| -> Result<PathBuf> {
        let path = dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(AugurError::MissingModelFile {
                dir: dir.to_path_buf(),
                file: file.to_string(),
                hint: hint.to_string(),
            })
        }
    };
    let config = require("config.json", "the Hugging Face model config")?;
    let tokenizer = require(
        "tokenizer.json",
        "a Hugging Face `tokenizers` file; `vocab.txt` alone is not read",
    )?;
    let weights = if dir.join("model.safetensors").is_file() {
        dir.join("model.safetensors")
    } else {
        let pickle = ["pytorch_model.bin", "model.bin"]
            .iter()
            .find(|f| dir.join(f).is_file());
        let hint = match pickle {
            Some(found) => format!(
                "found `{found}`, but only safetensors are loaded (pickle files can run code); convert it with \
                 `python -c \"import torch, safetensors.torch as s; s.save_file(torch.load('{found}'), 'model.safetensors')\"`"
            ),
            None => "the weights in safetensors format".to_string(),
        };
        return Err(AugurError::MissingModelFile {
            dir: dir.to_path_buf(),
            file: "model.safetensors".into(),
            hint,
        });
    };
    Ok(ModelFiles {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        config,
        tokenizer,
        weights,
        origin,
    })
}

#[cfg(feature = "download")]
fn download(name: &str, repo_id: &str) -> Result<ModelFiles> {
    let fail = |e: hf_hub::api::sync::ApiError| AugurError::DownloadDisabled {
        name: name.to_string(),
        hint: format!("download from the hub failed: {e}"),
    };
    let api = hf_hub::api::sync::Api::new().map_err(fail)?;
    let repo = api.model(repo_id.to_string());
    let config = repo.get("config.json").map_err(fail)?;
    repo.get("tokenizer.json").map_err(fail)?;
    repo.get("model.safetensors").map_err(fail)?;
    for optional in [
        "1_Pooling/config.json",
        "config_sentence_transformers.json",
        "modules.json",
    ] {
        let _ = repo.get(optional);
    }
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    model_files(name, &dir, ModelOrigin::Downloaded)
}

#[cfg(not(feature = "download"))]
fn download(name: &str, _repo_id: &str) -> Result<ModelFiles> {
    Err(AugurError::DownloadDisabled {
        name: name.to_string(),
        hint: "this build has no HTTP client; rebuild with `cargo build --features download`, or run `models/fetch`".into(),
    })
}
