//! Element-wise kernels written so LLVM vectorises them: branch-free `exp` and `erf`, GELU,
//! softmax and LayerNorm rows. Each public function picks an AVX-512 build of the same code at
//! run time when the CPU has it, and runs the portable build otherwise (no `target-cpu=native`).

/// Generates `pub fn $name(args)` that dispatches to an AVX-512 or a portable copy of `$body`.
macro_rules! dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,fma,avx2")]
                unsafe fn wide($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: the CPU supports the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            fn portable($($arg: $ty),*) $body
            portable($($arg),*)
        }
    };
}

/// `e^x` for f32 within ~2 ulp over the whole range (0 below −87.3, +∞ above 88.7).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds x·log₂e to the nearest integer (ties to even) in the low mantissa
    // bits, so `n` and its integer bits come out without a float→int conversion (Rust's
    // saturating `as i32` does not vectorise).
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let shifted = x * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series of e^r on |r| ≤ ln2/2, degree 7 (truncation error < 5e-9).
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

/// Error function, absolute error < 5e-7 in f32: the odd/even rational minimax approximation
/// `x·P(x²) / Q(x²)` on `[−4, 4]` that Eigen (and through it TensorFlow) uses, with `x`
/// clamped there (|erf| rounds to 1 in f32 beyond). One division and eleven multiply-adds,
/// no `exp` and no branches: about twice as fast as Abramowitz & Stegun 7.1.26 with `exp`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const NUMERATOR: [f32; 7] = [
        -1.609_603_3e-2,
        -2.954_6e-3,
        -7.349_906e-4,
        -5.692_506_4e-5,
        -2.101_024e-6,
        2.770_681_4e-8,
        -2.726_142_3e-10,
    ];
    const DENOMINATOR: [f32; 5] = [
        -1.426_473_9e-2,
        -7.373_329e-3,
        -1.682_827e-3,
        -2.133_740_6e-4,
        -1.456_607_2e-5,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = NUMERATOR[..6]
        .iter()
        .rev()
        .fold(NUMERATOR[6], |acc, &c| acc * x2 + c);
    let q = DENOMINATOR[..4]
        .iter()
        .rev()
        .fold(DENOMINATOR[4], |acc, &c| acc * x2 + c);
    x * p / q
}

/// Exact (erf-based) GELU: `x·Φ(x) = ½·x·(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Sum with 16 independent lanes, so the loop vectorises (float addition is not reassociated
/// by the compiler otherwise).
#[inline(always)]
fn sum_lanes(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Maximum with 16 independent lanes.
#[inline(always)]
fn max_lanes(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

dispatch! {
    /// GELU of every value, in place.
    pub fn gelu_inplace(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = gelu(*v);
        }
    }
}

dispatch! {
    /// Softmax of one row, in place (max-subtracted).
    pub fn softmax_inplace(row: &mut [f32]) {
        let max = max_lanes(row);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = 1.0 / sum_lanes(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

dispatch! {
    /// `row = (row − mean) / √(var + eps) · weight + bias`.
    pub fn layer_norm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let n = row.len() as f32;
        let mean = sum_lanes(row) / n;
        let mut sq = [0.0f32; 16];
        let chunks = row.chunks_exact(16);
        let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for chunk in chunks {
            for (a, v) in sq.iter_mut().zip(chunk) {
                *a += (v - mean) * (v - mean);
            }
        }
        let var = (sq.iter().sum::<f32>() + tail) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

dispatch! {
    /// Tanh-approximated GELU of every value, in place: `½·x·(1 + tanh(y))` with
    /// `y = √(2/π)·(x + 0.044715·x³)`, computed as `x / (1 + e^(−2y))` (the same function,
    /// without tanh's cancellation near −1).
    pub fn gelu_tanh_inplace(values: &mut [f32]) {
        const C: f32 = 0.797_884_6; // √(2/π)
        for v in values.iter_mut() {
            let x = *v;
            let y = C * (x + 0.044_715 * x * x * x);
            *v = x / (1.0 + exp(-2.0 * y));
        }
    }
}

dispatch! {
    /// SiLU (swish) of every value, in place: `x·σ(x)`.
    pub fn silu_inplace(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v /= 1.0 + exp(-*v);
        }
    }
}

dispatch! {
    /// `gate[i] *= up[i]`: the gated MLP's product, after the gate's activation.
    pub fn gated_product(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g *= u;
        }
    }
}

dispatch! {
    /// RMSNorm of one row, in place: `row = row / √(mean(row²) + eps) · weight`.
    pub fn rms_norm_row(row: &mut [f32], weight: &[f32], eps: f32) {
        let mut sq = [0.0f32; 16];
        let chunks = row.chunks_exact(16);
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for chunk in chunks {
            for (a, v) in sq.iter_mut().zip(chunk) {
                *a += v * v;
            }
        }
        let mean = (sq.iter().sum::<f32>() + tail) / row.len() as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * inv * w;
        }
    }
}

/// Dot product with 16 independent lanes.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `a · b` over the shorter length, vectorised.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut out = 0.0;
    dot_into(&a[..n], &b[..n], std::slice::from_mut(&mut out));
    out
}

dispatch! {
    /// `out[0] = a · b` (the dispatched body of [`dot`]).
    pub fn dot_into(a: &[f32], b: &[f32], out: &mut [f32]) {
        out[0] = dot_lanes(a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), exp(-87.3));
        assert!(exp(-200.0) < 1e-37);
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f32;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf(x) - libm::erff(x)).abs());
            x += 0.000_37;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert_eq!(erf(0.0), -erf(-0.0));
        // Saturated (clamped at ±4) to within one ulp of ±1, and odd.
        assert!((erf(20.0) - 1.0).abs() <= f32::EPSILON, "{}", erf(20.0));
        assert_eq!(erf(-20.0), -erf(20.0));
    }

    #[test]
    fn gelu_matches_libm_erf() {
        let mut worst = 0.0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
            worst = worst.max((gelu(x) - want).abs());
            x += 0.001;
        }
        assert!(worst < 2e-6, "worst absolute error {worst}");
        let mut v = vec![-1.0, 0.0, 1.0, 3.0];
        gelu_inplace(&mut v);
        assert!((v[2] - 0.841_344_7).abs() < 1e-6 && v[1] == 0.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 9.0).collect();
        softmax_inplace(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn gelu_tanh_and_silu_match_their_formulas() {
        let xs: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.006).collect();
        let mut g = xs.clone();
        gelu_tanh_inplace(&mut g);
        let mut s = xs.clone();
        silu_inplace(&mut s);
        for ((&x, &g), &s) in xs.iter().zip(&g).zip(&s) {
            let x64 = f64::from(x);
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let want_g = 0.5 * x64 * (1.0 + (c * (x64 + 0.044_715 * x64.powi(3))).tanh());
            let want_s = x64 / (1.0 + (-x64).exp());
            assert!(
                (f64::from(g) - want_g).abs() < 2e-6,
                "gelu_tanh({x}) = {g}, want {want_g}"
            );
            assert!(
                (f64::from(s) - want_s).abs() < 2e-6,
                "silu({x}) = {s}, want {want_s}"
            );
        }
    }

    #[test]
    fn rms_norm_and_dot_match_naive() {
        let row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).cos() * 3.0).collect();
        let w: Vec<f32> = (0..37).map(|i| 0.5 + i as f32 * 0.01).collect();
        let mut got = row.clone();
        rms_norm_row(&mut got, &w, 1e-6);
        let ms = row.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 37.0;
        for ((g, x), w) in got.iter().zip(&row).zip(&w) {
            let want = f64::from(*x) / (ms + 1e-6).sqrt() * f64::from(*w);
            assert!((f64::from(*g) - want).abs() < 1e-5);
        }
        let want: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!((dot(&row, &w) - want).abs() < 1e-4);
        let mut gate = vec![2.0, -1.0];
        gated_product(&mut gate, &[3.0, 4.0]);
        assert_eq!(gate, vec![6.0, -4.0]);
    }
}
