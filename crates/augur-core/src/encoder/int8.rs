//! Dense layers with int8 weights (per-output-row symmetric scales) and dynamically quantised
//! activations (per-row asymmetric u8), the scheme of onnxruntime's dynamic quantisation. On CPUs
//! with AVX-512 VNNI the products run on `vpdpbusd` (64 u8·i8 products per instruction); other
//! CPUs get a portable loop with the same arithmetic.

use rayon::prelude::*;

thread_local! {
    /// Quantised activations, reused from one product to the next on the calling thread.
    static QUANTISED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Output features per packed panel (one 512-bit register of i32 sums).
const PANEL: usize = 16;
/// Rows quantised per parallel task.
const QUANTISE_ROWS_PER_TASK: usize = 64;
/// Input rows per tile of the VNNI kernel.
const TILE_ROWS: usize = 8;

/// A dense layer `y = x·Wᵀ + b` with `W` quantised to int8, packed for the kernel.
#[derive(Debug, Clone)]
pub(crate) struct Int8Dense {
    /// Panels of [`PANEL`] output features: for each group of 4 inputs, 16 features × 4 bytes.
    packed: Vec<i8>,
    /// Per output feature: the dequantisation scale of its weights.
    scales: Vec<f32>,
    /// Per output feature: the sum of its quantised weights (for the activations' zero point).
    sums: Vec<i32>,
    bias: Vec<f32>,
    /// Inputs, rounded up to a multiple of 4.
    k4: usize,
    k: usize,
}

impl Int8Dense {
    /// Quantises `weight` (`[n, k]` row-major) with per-row scales.
    pub(crate) fn new(weight: &[f32], bias: &[f32]) -> Self {
        let n = bias.len();
        let k = weight.len() / n;
        let k4 = k.div_ceil(4) * 4;
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0i8; panels * PANEL * k4];
        let mut scales = vec![0f32; n];
        let mut sums = vec![0i32; n];
        for (j, row) in weight.chunks_exact(k).enumerate() {
            let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[j] = scale;
            let (panel, lane) = (j / PANEL, j % PANEL);
            for (p, w) in row.iter().enumerate() {
                let q = (w / scale).round().clamp(-127.0, 127.0) as i8;
                sums[j] += i32::from(q);
                packed[panel * PANEL * k4 + (p / 4) * PANEL * 4 + lane * 4 + p % 4] = q;
            }
        }
        Self {
            packed,
            scales,
            sums,
            bias: bias.to_vec(),
            k4,
            k,
        }
    }

    /// `out[m, n] = x[m, k] · Wᵀ + b`.
    pub(crate) fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        let (n, k, k4) = (self.bias.len(), self.k, self.k4);
        let m = x.len() / k;
        out.resize(m * n, 0.0);
        // The buffer is taken out of the cell for the product: a rayon thread waiting inside it
        // may run another caller's product on this same thread (nested `apply`), which then
        // finds the cell empty and allocates instead of panicking on a second borrow.
        let mut quantised = QUANTISED.take();
        quantised.resize(m * k4, 0);
        self.apply_quantised(x, &mut quantised, out);
        QUANTISED.set(quantised);
    }

    /// [`Int8Dense::apply`] with a buffer for the quantised activations.
    fn apply_quantised(&self, x: &[f32], quantised: &mut [u8], out: &mut [f32]) {
        let (n, k, k4) = (self.bias.len(), self.k, self.k4);
        let m = x.len() / k;
        let mut row_scales = vec![0f32; m];
        let mut zeros = vec![0i32; m];
        quantised
            .par_chunks_mut(k4)
            .zip(x.par_chunks(k))
            .zip(row_scales.par_iter_mut().zip(zeros.par_iter_mut()))
            .with_min_len(QUANTISE_ROWS_PER_TASK)
            .for_each(|((q, row), (scale, zero))| (*scale, *zero) = quantise_row(row, q));
        let rows = Rows {
            quantised,
            scales: &row_scales,
            zeros: &zeros,
        };
        out.par_chunks_mut(TILE_ROWS * n)
            .enumerate()
            .for_each(|(tile, out)| {
                let first = tile * TILE_ROWS;
                self.rows_product(&rows, first, out.len() / n, out);
            });
    }

    /// Rows `first..first + count` of the product into `out` (`[count, n]`).
    fn rows_product(&self, rows: &Rows, first: usize, count: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if vnni_available() {
            // SAFETY: the CPU has the features (checked above); `out` holds `count·n` values
            // and the rows and panels are read within their lengths (see `tile_vnni`).
            unsafe { self.tile_vnni(rows, first, count, out) };
            return;
        }
        self.rows_portable(rows, first, count, out);
    }

    /// The arithmetic of the kernel with plain loops.
    fn rows_portable(&self, rows: &Rows, first: usize, count: usize, out: &mut [f32]) {
        let n = self.bias.len();
        let k4 = self.k4;
        for r in 0..count {
            let q = &rows.quantised[(first + r) * k4..][..k4];
            for j in 0..n {
                let (panel, lane) = (j / PANEL, j % PANEL);
                let base = &self.packed[panel * PANEL * k4..];
                let mut dot = 0i32;
                for g in 0..k4 / 4 {
                    for b in 0..4 {
                        dot +=
                            i32::from(q[g * 4 + b]) * i32::from(base[g * PANEL * 4 + lane * 4 + b]);
                    }
                }
                out[r * n + j] = self.dequantise(dot, rows, first + r, j);
            }
        }
    }

    #[inline(always)]
    fn dequantise(&self, dot: i32, rows: &Rows, row: usize, j: usize) -> f32 {
        let centred = dot - rows.zeros[row] * self.sums[j];
        centred as f32 * (rows.scales[row] * self.scales[j]) + self.bias[j]
    }

    /// Rows `first..first + count` (`count ≤ TILE_ROWS`) × all panels with `vpdpbusd`; a short
    /// tile repeats its last row in the unused slots and stores only its own rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_vnni(&self, rows: &Rows, first: usize, count: usize, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = self.bias.len();
        let k4 = self.k4;
        let groups = k4 / 4;
        let row_ptr: [*const u8; TILE_ROWS] =
            std::array::from_fn(|r| rows.quantised[(first + r.min(count - 1)) * k4..].as_ptr());
        let full_panels = n / PANEL;
        for panel in 0..full_panels {
            let weights = self.packed[panel * PANEL * k4..].as_ptr();
            let mut acc = [_mm512_setzero_si512(); TILE_ROWS];
            for g in 0..groups {
                let w = _mm512_loadu_si512(weights.add(g * PANEL * 4) as *const _);
                for r in 0..TILE_ROWS {
                    let x =
                        _mm512_set1_epi32((row_ptr[r].add(g * 4) as *const i32).read_unaligned());
                    acc[r] = _mm512_dpbusd_epi32(acc[r], x, w);
                }
            }
            let j0 = panel * PANEL;
            let sums = _mm512_loadu_si512(self.sums[j0..].as_ptr() as *const _);
            let scales = _mm512_loadu_ps(self.scales[j0..].as_ptr());
            let bias = _mm512_loadu_ps(self.bias[j0..].as_ptr());
            for r in 0..count {
                let row = first + r;
                let zero = _mm512_set1_epi32(rows.zeros[row]);
                let centred = _mm512_sub_epi32(acc[r], _mm512_mullo_epi32(zero, sums));
                let scale = _mm512_mul_ps(_mm512_set1_ps(rows.scales[row]), scales);
                let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(centred), scale, bias);
                _mm512_storeu_ps(out[r * n + j0..].as_mut_ptr(), y);
            }
        }
        // Features of a last, partial panel.
        if full_panels * PANEL < n {
            let mut tail = vec![0f32; count * n];
            self.rows_portable(rows, first, count, &mut tail);
            for r in 0..count {
                let from = r * n + full_panels * PANEL;
                out[from..(r + 1) * n].copy_from_slice(&tail[from..(r + 1) * n]);
            }
        }
    }
}

/// Quantised activations of one product.
struct Rows<'a> {
    quantised: &'a [u8],
    scales: &'a [f32],
    zeros: &'a [i32],
}

/// Quantises one row to u8 with its own scale and zero point; returns `(scale, zero_point)`.
fn quantise_row(row: &[f32], out: &mut [u8]) -> (f32, i32) {
    let mut range = [0f32; 2];
    min_max(row, &mut range);
    let [min, max] = range;
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let zero = (-min / scale).round().clamp(0.0, 255.0);
    quantise_values(row, out, 1.0 / scale, zero);
    // Padding inputs (k rounded up to 4) hold the zero point, so they add nothing once centred.
    out[row.len()..].fill(zero as u8);
    (scale, zero as i32)
}

simd_dispatch! {
    /// `range = [min(0, row…), max(0, row…)]`, in eight independent lanes.
    fn min_max(row: &[f32], range: &mut [f32; 2]) {
        let (mut lo, mut hi) = ([0f32; 8], [0f32; 8]);
        let (body, tail) = row.split_at(row.len() / 8 * 8);
        for chunk in body.chunks_exact(8) {
            for l in 0..8 {
                // Comparisons rather than f32::min/max (whose NaN rules keep them scalar).
                lo[l] = if chunk[l] < lo[l] { chunk[l] } else { lo[l] };
                hi[l] = if chunk[l] > hi[l] { chunk[l] } else { hi[l] };
            }
        }
        let lo = tail.iter().chain(&lo).fold(0f32, |m, &v| m.min(v));
        let hi = tail.iter().chain(&hi).fold(0f32, |m, &v| m.max(v));
        *range = [lo, hi];
    }
}

simd_dispatch! {
    /// `out = round(row / scale) + zero`, clamped to u8 (`inverse_scale = 1 / scale`).
    fn quantise_values(row: &[f32], out: &mut [u8], inverse_scale: f32, zero: f32) {
        for (q, v) in out.iter_mut().zip(row) {
            // Clamped to [0.5, 255.5] (NaN to 0.5), so truncating rounds to nearest.
            let shifted = v.mul_add(inverse_scale, zero + 0.5);
            let clamped = if shifted > 0.5 { shifted } else { 0.5 };
            let clamped = if clamped < 255.5 { clamped } else { 255.5 };
            // SAFETY: `clamped` is finite and within [0.5, 255.5], so it fits an i32.
            *q = unsafe { clamped.to_int_unchecked::<i32>() } as u8;
        }
    }
}

/// True when this CPU runs the VNNI kernel.
#[cfg(target_arch = "x86_64")]
fn vnni_available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_product_is_close_to_f32_and_kernels_agree() {
        for (m, k, n) in [(19, 64, 48), (8, 30, 17), (3, 384, 32)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 60.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let dense = Int8Dense::new(&w, &bias);
            let mut out = Vec::new();
            dense.apply(&x, &mut out);
            let mut worst = 0f32;
            for r in 0..m {
                for c in 0..n {
                    let exact: f32 =
                        bias[c] + (0..k).map(|p| x[r * k + p] * w[c * k + p]).sum::<f32>();
                    let scale = (0..k)
                        .map(|p| (x[r * k + p] * w[c * k + p]).abs())
                        .sum::<f32>();
                    worst = worst.max((out[r * n + c] - exact).abs() / scale.max(1.0));
                }
            }
            assert!(worst < 0.02, "m {m} k {k} n {n}: relative error {worst}");
        }
    }

    /// Products called from a parallel loop (as `extract` from `par_iter`) agree with a single
    /// product. The activation buffer used to stay borrowed from a thread-local `RefCell` for
    /// the whole product, so a rayon thread that picked up another product while waiting inside
    /// one would panic with "already borrowed"; that timing is rare, and this loop did not
    /// reproduce it on the old code here, so it guards the results, not the fix itself.
    #[test]
    fn products_in_parallel_loops_agree() {
        let (m, k, n) = (8 * QUANTISE_ROWS_PER_TASK, 64, 32);
        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 / 7.0 - 0.9).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 11) as f32 / 9.0 - 0.5).collect();
        let dense = Int8Dense::new(&w, &vec![0.1; n]);
        let mut expected = Vec::new();
        dense.apply(&x, &mut expected);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let agreeing = pool.install(|| {
            (0..2000)
                .into_par_iter()
                .filter(|_| {
                    let mut out = Vec::new();
                    dense.apply(&x, &mut out);
                    out == expected
                })
                .count()
        });
        assert_eq!(agreeing, 2000);
    }

    /// The SIMD kernel (when this CPU has it) and the portable loop compute the same sums.
    #[test]
    fn fast_and_portable_kernels_agree() {
        let (m, k, n) = (11, 40, 48);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 29 % 89) as f32 - 44.0) / 20.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 31 % 83) as f32 - 41.0) / 50.0)
            .collect();
        let bias = vec![0.5f32; n];
        let dense = Int8Dense::new(&w, &bias);
        let mut fast = Vec::new();
        dense.apply(&x, &mut fast);
        let mut quantised = vec![0u8; m * dense.k4];
        let mut scales = vec![0f32; m];
        let mut zeros = vec![0i32; m];
        for r in 0..m {
            (scales[r], zeros[r]) = quantise_row(
                &x[r * k..(r + 1) * k],
                &mut quantised[r * dense.k4..][..dense.k4],
            );
        }
        let rows = Rows {
            quantised: &quantised,
            scales: &scales,
            zeros: &zeros,
        };
        let mut portable = vec![0f32; m * n];
        dense.rows_portable(&rows, 0, m, &mut portable);
        for (a, b) in fast.iter().zip(&portable) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
