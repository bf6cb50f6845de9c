//! CPU kernels for inference on row-major `f32` buffers: the matrix product, layer norm, GELU and
//! attention of [`RaggedEncoder`](super::RaggedEncoder). Loops are written so that the compiler
//! vectorises them; each public kernel runs an AVX2+FMA build of itself when the CPU has those
//! features (checked at run time), and a portable build otherwise.

use rayon::prelude::*;

/// Rows per parallel task for row-wise kernels: large enough that a short message runs on one
/// thread (waking the other costs more than the work) and a batch still splits.
const ROWS_PER_TASK: usize = 64;

/// `out[m, n] = x[m, k] · wᵀ + bias`, with `w` row-major `[n, k]` (the Hugging Face layout).
pub(crate) fn linear(x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = bias.len();
    assert!(n > 0 && w.len().is_multiple_of(n), "weight is not [{n}, k]");
    let k = w.len() / n;
    assert!(
        k > 0 && x.len().is_multiple_of(k),
        "input rows are not {k} wide"
    );
    let m = x.len() / k;
    assert_eq!(out.len(), m * n, "output is not [{m}, {n}]");
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers cover `m·n`, `m·k` and `n·k` elements (asserted above), with the
    // strides of row-major `out`, `x` and of `wᵀ` read from row-major `w`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Sum of `a[i]·b[i]` in eight independent lanes (so it vectorises without reassociation).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (ca, cb) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] = ca[l].mul_add(cb[l], lanes[l]);
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Sum of `a` in eight independent lanes.
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, rest) = a.split_at(a.len() / 8 * 8);
    for c in a8.chunks_exact(8) {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `rows = LayerNorm(rows + residual)` over rows of `gamma.len()`, in parallel over rows.
pub(crate) fn add_layer_norm(
    rows: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let block = gamma.len() * ROWS_PER_TASK;
    rows.par_chunks_mut(block)
        .zip(residual.par_chunks(block))
        .for_each(|(rows, residual)| normalize_rows(rows, residual, gamma, beta, eps));
}

/// `rows = LayerNorm(rows)` over rows of `gamma.len()`, in parallel over rows.
pub(crate) fn layer_norm(rows: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    rows.par_chunks_mut(gamma.len() * ROWS_PER_TASK)
        .for_each(|rows| normalize_rows(rows, &[], gamma, beta, eps));
}

simd_dispatch! {
    /// Adds `residual` (when not empty) to each row, then normalises the row to zero mean and unit
    /// variance, scales by `gamma` and shifts by `beta`.
    fn normalize_rows(rows: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let h = gamma.len();
        let n = h as f32;
        for (r, row) in rows.chunks_exact_mut(h).enumerate() {
            if !residual.is_empty() {
                row.iter_mut().zip(&residual[r * h..][..h]).for_each(|(x, y)| *x += y);
            }
            let mean = sum(row) / n;
            row.iter_mut().for_each(|x| *x -= mean);
            let variance = dot(row, row) / n;
            let inv_std = 1.0 / (variance + eps).sqrt();
            for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *x = (*x * inv_std).mul_add(*g, *b);
            }
        }
    }
}

/// `erf(x)` as a rational approximation on `[-4, 4]` (Eigen's `generic_fast_erf_float`), within
/// 5e-7 of the exact value and free of branches, so loops over it vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_600_2e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    p *= x;
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329_4e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    p / q
}

/// Elements per parallel task for element-wise kernels.
const VALUES_PER_TASK: usize = 1 << 16;

/// An activation applied in place, in parallel.
pub(crate) fn activate(values: &mut [f32], activation: crate::model::config::Activation) {
    use crate::model::config::Activation;
    let kernel: fn(&mut [f32]) = match activation {
        Activation::GeluErf => gelu_erf,
        Activation::GeluTanh => gelu_tanh,
        Activation::Relu => relu,
    };
    values.par_chunks_mut(VALUES_PER_TASK).for_each(kernel);
}

simd_dispatch! {
    /// GELU with the exact (erf) form, in place.
    fn gelu_erf(values: &mut [f32]) {
        for v in values {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

simd_dispatch! {
    /// GELU with the tanh approximation, in place.
    fn gelu_tanh(values: &mut [f32]) {
        for v in values {
            let inner = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
            *v = 0.5 * *v * (1.0 + inner.tanh());
        }
    }
}

simd_dispatch! {
    /// ReLU in place.
    fn relu(values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// Tokens from which a lone sequence's heads are spread over threads (below, one thread is faster).
const PARALLEL_HEADS_FROM: usize = 64;

/// Multi-head self-attention over a ragged batch. `qkv` holds, per token, its query, key and value
/// (`3·heads·head_dim` values, in that order); `offsets[i]..offsets[i+1]` are the tokens of
/// sequence `i`, which attend only to each other. Writes each token's context (`heads·head_dim`)
/// to `context`.
pub(crate) fn attention(
    qkv: &[f32],
    context: &mut [f32],
    offsets: &[usize],
    heads: usize,
    head_dim: usize,
) {
    let h = heads * head_dim;
    let mut tasks = Vec::with_capacity(offsets.len().saturating_sub(1));
    let mut rest = context;
    for bounds in offsets.windows(2) {
        let len = bounds[1] - bounds[0];
        let (this, tail) = rest.split_at_mut(len * h);
        tasks.push((&qkv[bounds[0] * 3 * h..bounds[1] * 3 * h], this));
        rest = tail;
    }
    if tasks.len() == 1 && offsets[1] >= PARALLEL_HEADS_FROM {
        // One long sequence: parallelise over heads instead.
        let (seq_qkv, seq_context) = tasks.pop().expect("one task");
        let len = seq_context.len() / h;
        let per_head: Vec<Vec<f32>> = (0..heads)
            .into_par_iter()
            .map(|head| {
                let mut out = vec![0f32; len * head_dim];
                attend_head(seq_qkv, &mut out, head_dim, head, heads, head_dim);
                out
            })
            .collect();
        for (head, out) in per_head.iter().enumerate() {
            for (t, row) in out.chunks_exact(head_dim).enumerate() {
                seq_context[t * h + head * head_dim..][..head_dim].copy_from_slice(row);
            }
        }
        return;
    }
    tasks.into_par_iter().for_each(|(seq_qkv, seq_context)| {
        for head in 0..heads {
            let out = &mut seq_context[head * head_dim..];
            attend_head(seq_qkv, out, h, head, heads, head_dim);
        }
    });
}

simd_dispatch! {
    /// Attention of one head over one sequence: row `t` of the result goes to
    /// `out[t·out_stride .. t·out_stride + head_dim]`.
    fn attend_head(
        qkv: &[f32],
        out: &mut [f32],
        out_stride: usize,
        head: usize,
        heads: usize,
        head_dim: usize,
    ) {
        let h = heads * head_dim;
        let len = qkv.len() / (3 * h);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let column = head * head_dim;
        // This head's keys and values, gathered into contiguous rows.
        let gather = |offset: usize| -> Vec<f32> {
            (0..len)
                .flat_map(|j| &qkv[j * 3 * h + offset + column..][..head_dim])
                .copied()
                .collect()
        };
        let (keys, values) = (gather(h), gather(2 * h));
        let mut scores = vec![0f32; len];
        for i in 0..len {
            let q = &qkv[i * 3 * h + column..][..head_dim];
            for (s, k) in scores.iter_mut().zip(keys.chunks_exact(head_dim)) {
                *s = dot(q, k) * scale;
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            scores.iter_mut().for_each(|s| *s = exp_at_most_zero(*s - max));
            let inverse_total = 1.0 / sum(&scores);
            let row = &mut out[i * out_stride..][..head_dim];
            row.fill(0.0);
            for (s, v) in scores.iter().zip(values.chunks_exact(head_dim)) {
                let p = s * inverse_total;
                row.iter_mut().zip(v).for_each(|(r, x)| *r = p.mul_add(*x, *r));
            }
        }
    }
}

/// `e^x` for `x ≤ 0` (softmax after subtracting the maximum) without branches, so loops over it
/// vectorise: Cephes' `expf` range reduction and polynomial, within 3e-7 relative error; inputs
/// below -87 count as -87 (e^-87 ≈ 1.6e-38: nothing next to the maximum's 1).
#[inline(always)]
fn exp_at_most_zero(x: f32) -> f32 {
    let x = if x > -87.0 { x } else { -87.0 };
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = r.mul_add(1.987_569_1e-4, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // SAFETY: `n` is an integer in [-126, 0] here, so it fits an i32 and `n + 127` a valid exponent.
    let exponent = unsafe { n.to_int_unchecked::<i32>() } + 127;
    y * f32::from_bits((exponent as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_5e_7_of_the_exact_value() {
        for i in -600..=600 {
            let x = i as f64 / 100.0;
            let exact = erf_reference(x);
            let got = f64::from(erf(x as f32));
            assert!(
                (got - exact).abs() < 5e-7,
                "erf({x}) = {got}, expected {exact}"
            );
        }
    }

    /// erf by its Taylor series (|x| ≤ 3) or continued fraction tail (|x| > 3), in f64.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() > 3.0 {
            let t = 1.0 / (1.0 + 0.5 * x.abs());
            // Numerical Recipes erfc with fractional error < 1.2e-7, ample at |x| > 3 (erf ≈ ±1).
            let tau = t
                * (-x * x - 1.265_512_23
                    + t * (1.000_023_68
                        + t * (0.374_091_96
                            + t * (0.096_784_18
                                + t * (-0.186_288_06
                                    + t * (0.278_868_07
                                        + t * (-1.135_203_98
                                            + t * (1.488_515_87
                                                + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                    .exp();
            return x.signum() * (1.0 - tau);
        }
        let mut term = x;
        let mut total = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            total += term / (2 * n + 1) as f64;
        }
        total * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_matches_the_library_exp_below_zero() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let (got, want) = (exp_at_most_zero(x), x.exp());
            assert!(
                (got - want).abs() <= 3e-7 * want,
                "exp({x}) = {got}, expected {want}"
            );
        }
        assert_eq!(exp_at_most_zero(f32::NEG_INFINITY), (-87f32).exp());
    }

    #[test]
    fn layer_norm_gives_zero_mean_unit_variance() {
        let mut rows: Vec<f32> = (0..2 * 10).map(|i| (i * i % 7) as f32).collect();
        layer_norm(&mut rows, &[1.0; 10], &[0.0; 10], 1e-12);
        for row in rows.chunks(10) {
            let mean: f32 = row.iter().sum::<f32>() / 10.0;
            let var: f32 = row.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 10.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{row:?}");
        }
    }

    #[test]
    fn linear_matches_a_naive_product() {
        let (m, k, n) = (5, 19, 7);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut out = vec![0f32; m * n];
        linear(&x, &w, &bias, &mut out);
        for r in 0..m {
            for c in 0..n {
                let expected: f32 =
                    bias[c] + (0..k).map(|p| x[r * k + p] * w[c * k + p]).sum::<f32>();
                assert!((out[r * n + c] - expected).abs() < 1e-4);
            }
        }
    }
}
