//! Turning one text's tokens into model-sized windows: truncation, or overlapping chunks whose
//! embeddings are pooled back into one vector so a long visit note is not silently cut.

use crate::error::{AugurError, Result};

/// What to do with a text longer than the model's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongTextPolicy {
    /// Keep the first window only (the rest of the text is ignored).
    Truncate,
    /// Split into windows that overlap by `overlap` tokens; the text's vector is the
    /// token-weighted mean of its windows' vectors.
    Chunk {
        /// Tokens shared by consecutive windows.
        overlap: usize,
    },
}

impl Default for LongTextPolicy {
    fn default() -> Self {
        LongTextPolicy::Chunk { overlap: 64 }
    }
}

/// One window of token ids, ready for the encoder (special tokens included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWindow {
    /// Index of the text this window belongs to.
    pub text_index: usize,
    /// Token ids, with the model's leading and trailing special tokens.
    pub ids: Vec<u32>,
}

/// Splits an encoding (`ids` with `special_mask`, as the tokenizer returns them) into windows of
/// at most `max_tokens` ids. Leading and trailing special tokens are repeated in every window.
pub fn split_windows(
    text_index: usize,
    ids: &[u32],
    special_mask: &[u32],
    max_tokens: usize,
    policy: LongTextPolicy,
) -> Result<Vec<TokenWindow>> {
    let lead = special_mask.iter().take_while(|&&m| m == 1).count();
    let trail = special_mask[lead..]
        .iter()
        .rev()
        .take_while(|&&m| m == 1)
        .count();
    let (head, body, tail) = (
        &ids[..lead],
        &ids[lead..ids.len() - trail],
        &ids[ids.len() - trail..],
    );
    let room = max_tokens.saturating_sub(lead + trail);
    if room == 0 {
        return Err(AugurError::InvalidArgument(format!(
            "window of {max_tokens} tokens leaves no room beside {} special tokens",
            lead + trail
        )));
    }
    let wrap = |chunk: &[u32]| TokenWindow {
        text_index,
        ids: [head, chunk, tail].concat(),
    };
    if body.len() <= room {
        return Ok(vec![wrap(body)]);
    }
    match policy {
        LongTextPolicy::Truncate => Ok(vec![wrap(&body[..room])]),
        LongTextPolicy::Chunk { overlap } => {
            if overlap >= room {
                return Err(AugurError::InvalidArgument(format!(
                    "chunk overlap {overlap} must be smaller than the window's {room} text tokens"
                )));
            }
            let step = room - overlap;
            let mut windows = Vec::new();
            let mut start = 0;
            loop {
                let end = (start + room).min(body.len());
                windows.push(wrap(&body[start..end]));
                if end == body.len() {
                    break;
                }
                start += step;
            }
            Ok(windows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(n: u32) -> (Vec<u32>, Vec<u32>) {
        let mut ids = vec![0];
        ids.extend(10..10 + n);
        ids.push(2);
        let mut mask = vec![0; ids.len()];
        mask[0] = 1;
        *mask.last_mut().unwrap() = 1;
        (ids, mask)
    }

    #[test]
    fn short_text_is_one_window() {
        let (ids, mask) = encoding(5);
        let w = split_windows(3, &ids, &mask, 16, LongTextPolicy::default()).unwrap();
        assert_eq!(
            w,
            vec![TokenWindow {
                text_index: 3,
                ids: ids.clone()
            }]
        );
    }

    #[test]
    fn chunks_cover_every_token_with_overlap() {
        let (ids, mask) = encoding(20);
        let w = split_windows(0, &ids, &mask, 10, LongTextPolicy::Chunk { overlap: 2 }).unwrap();
        // 8 text tokens per window, step 6: starts 0, 6, 12 (12..20 reaches the end).
        assert_eq!(w.len(), 3);
        for window in &w {
            assert!(window.ids.len() <= 10);
            assert_eq!(window.ids[0], 0);
            assert_eq!(*window.ids.last().unwrap(), 2);
        }
        let covered: std::collections::BTreeSet<u32> = w
            .iter()
            .flat_map(|x| x.ids[1..x.ids.len() - 1].to_vec())
            .collect();
        assert_eq!(covered, (10..30).collect());
        assert_eq!(
            &w[1].ids[1..3],
            &w[0].ids[7..9],
            "consecutive windows share `overlap` tokens"
        );
    }

    #[test]
    fn truncate_keeps_first_window() {
        let (ids, mask) = encoding(20);
        let w = split_windows(0, &ids, &mask, 10, LongTextPolicy::Truncate).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].ids, [vec![0], (10..18).collect(), vec![2]].concat());
    }

    #[test]
    fn overlap_too_large_is_refused() {
        let (ids, mask) = encoding(20);
        assert!(split_windows(0, &ids, &mask, 10, LongTextPolicy::Chunk { overlap: 8 }).is_err());
    }
}
