//! Lexical features beside the embedding: hashed character n-grams (Chinese) and word n-grams
//! (Latin script). They carry the keywords (等保, SLA, 回款, PO) that a small encoder blurs.

/// Hashes a clause's n-grams into a fixed number of buckets.
#[derive(Debug, Clone, Copy)]
pub struct LexicalHasher {
    buckets: usize,
}

impl Default for LexicalHasher {
    fn default() -> Self {
        Self { buckets: 4096 }
    }
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c)
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x100000001b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

impl LexicalHasher {
    /// A hasher with `buckets` dimensions.
    pub fn new(buckets: usize) -> Self {
        Self {
            buckets: buckets.max(1),
        }
    }

    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        self.buckets
    }

    /// L2-normalised n-gram counts of `text`: CJK character 1–3-grams, and word 1–2-grams of
    /// lower-cased Latin text with each run of digits folded to `0`.
    pub fn features(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.buckets];
        let mut add = |parts: &[&str]| v[(fnv1a(parts) % self.buckets as u64) as usize] += 1.0;
        let mut lower = String::with_capacity(text.len());
        for c in text.to_lowercase().chars() {
            // Every run of digits becomes one `0`: "3 tickets" and "12 tickets" share n-grams.
            if c.is_ascii_digit() {
                if !lower.ends_with('0') {
                    lower.push('0');
                }
            } else {
                lower.push(c);
            }
        }
        // CJK runs: character n-grams.
        let chars: Vec<char> = lower.chars().collect();
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, add: &mut dyn FnMut(&[&str])| {
            for n in 1..=3 {
                for w in run.windows(n) {
                    let refs: Vec<&str> = std::iter::once("c")
                        .chain(w.iter().map(String::as_str))
                        .collect();
                    add(&refs);
                }
            }
            run.clear();
        };
        for &c in &chars {
            if is_cjk(c) {
                run.push(c.to_string());
            } else {
                flush(&mut run, &mut add);
            }
        }
        flush(&mut run, &mut add);
        // Latin words: unigrams and bigrams.
        let words: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '\'') || is_cjk(c))
            .filter(|w| !w.is_empty() && !w.chars().any(is_cjk))
            .collect();
        for w in &words {
            add(&["w", w]);
        }
        for pair in words.windows(2) {
            add(&["b", pair[0], pair[1]]);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_keywords_overlap_and_unrelated_texts_do_not() {
        let h = LexicalHasher::default();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let a = h.features("工单已经超时三天");
        let b = h.features("这个工单超时了");
        let c = h.features("We signed the PO today");
        assert!(dot(&a, &b) > 0.3);
        assert!(dot(&a, &c) < 0.05);
        assert!((dot(&c, &c) - 1.0).abs() < 1e-5);
        assert!(
            dot(
                &h.features("SLA breached on 3 tickets"),
                &h.features("sla breached on 12 tickets")
            ) > 0.999
        );
    }
}
