//! The transformer encoder: BERT-family forward pass over Hugging Face weight names.

/// Defines `fn $name` that runs `$body` compiled with AVX2+FMA when the CPU supports them.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: both features were detected on this CPU just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

pub mod adapter;
pub mod bert;
mod int8;
mod kernels;
pub mod linear;
pub mod ragged;

pub use adapter::{AdapterConfig, LoraAdapter};
pub use bert::{BertEncoder, EncoderLayer};
pub use linear::{LoraLinear, LoraPair};
pub use ragged::{RaggedEncoder, RaggedStates};
