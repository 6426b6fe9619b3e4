//! Fully connected layer `y = x·Wᵀ + b` on packed rows.

use gemm::Parallelism;

use crate::error::Result;
use crate::kernels::amx_gemm::{self, PackedAmxBf16, PackedAmxInt8};
use crate::kernels::bf16_gemm::{self, PackedBf16};
use crate::kernels::bf16w_gemm::{self, PackedBf16W};
use crate::kernels::f32_gemm::{self, PackedF32};
use crate::kernels::int8_gemm::{self, PackedInt8};
use crate::layers::{Activation, Matrix};
use crate::runtime;
use crate::weights::Vb;
use crate::Dtype;

/// Work (multiply-adds) below which a GEMM runs on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Which kernel bf16 layers run on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bf16Choice {
    /// `tdpbf16ps` (Intel AMX tiles): weights and activations in bf16.
    Amx,
    /// `vdpbf16ps` (AVX512_BF16): weights and activations in bf16.
    Dot,
    /// bf16 weights widened to f32 in registers (AVX2+FMA).
    Widen,
    /// bf16-rounded weights on the f32 kernel.
    F32,
}

/// The bf16 kernel for this CPU, chosen once per process. Where two or more bf16 kernels can
/// run (AMX, AVX512_BF16, AVX2+FMA), a short timed GEMM on one thread (64 × 1024 × 1024, best
/// of 5, a few milliseconds) picks the fastest of AMX `tdpbf16ps`, `vdpbf16ps`, the widening
/// kernel and the f32 kernel on bf16-rounded weights: some cores run `vdpbf16ps` slower than
/// f32 FMAs, and bf16 must never be slower than f32. The bf16-storage kernels win ties within
/// 5 % (half the memory).
fn bf16_choice() -> Bf16Choice {
    static CHOICE: std::sync::OnceLock<Bf16Choice> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let mut candidates = Vec::new();
        if amx_gemm::supported() {
            candidates.push(Bf16Choice::Amx);
        }
        if bf16_gemm::supported() {
            candidates.push(Bf16Choice::Dot);
        }
        if bf16w_gemm::supported() {
            candidates.push(Bf16Choice::Widen);
        }
        if candidates.len() < 2 {
            return candidates.first().copied().unwrap_or(Bf16Choice::F32);
        }
        candidates.push(Bf16Choice::F32);
        let times = runtime::measure_alone(|| {
            let (weight, x) = probe_gemm(64, 1024, 1024);
            let layers: Vec<Linear> = candidates
                .iter()
                .map(|&choice| Linear::with_kernel(&weight, x.cols, 1024, choice))
                .collect();
            best_times(&layers, &x)
        });
        // bf16 storage wins ties within 5 % (half the memory traffic).
        let handicap = |c: Bf16Choice| if c == Bf16Choice::F32 { 1.05 } else { 1.0 };
        candidates
            .iter()
            .zip(times)
            .map(|(&c, t)| (t * handicap(c), c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(Bf16Choice::F32, |(_, c)| c)
    })
}

/// True when f32 layers run on the pre-packed AVX-512 kernel ([`f32_gemm`]) rather than the
/// `gemm` crate, chosen once per process by a short timed GEMM on one thread (256 × 768 × 768,
/// an encoder's attention output projection, best of 5, about 15 ms).
fn f32_runs_packed() -> bool {
    static PACKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PACKED.get_or_init(|| {
        if !f32_gemm::supported() {
            return false;
        }
        let times = runtime::measure_alone(|| {
            let (weight, x) = probe_gemm(256, 768, 768);
            let layer = |kernel| Linear {
                kernel,
                bias: None,
                in_dim: 768,
                out_dim: 768,
            };
            let packed = layer(Kernel::F32Packed(PackedF32::pack(&weight, None, 768, 768)));
            let crate_gemm = layer(Kernel::F32 {
                weight_t: transpose(&weight, 768, 768),
            });
            best_times(&[packed, crate_gemm], &x)
        });
        // The `gemm` crate must be clearly faster (5 %) to be chosen: one noisy round must
        // not cost the whole process the faster kernel.
        times[1] >= 0.95 * times[0]
    })
}

/// A deterministic `[n, k]` weight and `[m, k]` input for timing kernels.
fn probe_gemm(m: usize, k: usize, n: usize) -> (Vec<f32>, Matrix) {
    let weight = (0..k * n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
        .collect();
    let x = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
    (weight, Matrix::from_vec(x, m, k))
}

/// Each layer's best time for `layer.forward(x)`, in seconds, over five rounds that run the
/// layers in turn (after one warm-up round), so that a busy moment hits all of them alike.
fn best_times(layers: &[Linear], x: &Matrix) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; layers.len()];
    for round in 0..6 {
        for (layer, best) in layers.iter().zip(best.iter_mut()) {
            let start = std::time::Instant::now();
            std::hint::black_box(layer.forward(x));
            if round > 0 {
                *best = best.min(start.elapsed().as_secs_f64());
            }
        }
    }
    best
}

/// True when bf16 layers run on the AMX kernel on this CPU.
pub(crate) fn bf16_runs_on_amx() -> bool {
    bf16_choice() == Bf16Choice::Amx
}

/// How the weight is stored for its kernel.
enum Kernel {
    /// Transposed f32 (`[in, out]`, row-major) for the `gemm` crate.
    F32 { weight_t: Vec<f32> },
    /// f32 packed in panels for the AVX-512 kernel (the bias is folded in there).
    F32Packed(PackedF32),
    /// bf16 pairs packed in AMX tiles (the bias is folded in there).
    AmxBf16(PackedAmxBf16),
    /// bf16 pairs packed for the AVX512_BF16 kernel (the bias is folded in there).
    Bf16(PackedBf16),
    /// bf16 weights packed for the AVX2+FMA kernel that widens them to f32 in registers (the
    /// bias is folded in there).
    Bf16W(PackedBf16W),
    /// int8 quads packed in AMX tiles (the bias is folded in there).
    AmxInt8(PackedAmxInt8),
    /// int8 quads packed for the AVX512_VNNI kernel (the bias is folded in there).
    Int8(PackedInt8),
}

const F32_KERNEL: &str = "f32 (gemm crate)";
const F32_PACKED_KERNEL: &str = "f32 (AVX-512 pre-packed)";
const AMX_BF16_KERNEL: &str = "bf16 (AMX tdpbf16ps)";
const BF16_KERNEL: &str = "bf16 (AVX512_BF16 vdpbf16ps)";
const BF16W_KERNEL: &str = "bf16 weights widened to f32 (AVX2+FMA)";
const AMX_INT8_KERNEL: &str = "int8 (AMX tdpbusd)";
const INT8_KERNEL: &str = "int8 (AVX512_VNNI)";

/// The kernel a layer built in `dtype` runs on this CPU (for logs, `/info` and benchmarks).
pub fn kernel_for(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Bf16 => match bf16_choice() {
            Bf16Choice::Amx => AMX_BF16_KERNEL,
            Bf16Choice::Dot => BF16_KERNEL,
            Bf16Choice::Widen => BF16W_KERNEL,
            Bf16Choice::F32 if f32_runs_packed() => {
                "bf16-rounded weights on the f32 path (AVX-512 pre-packed)"
            }
            Bf16Choice::F32 => "bf16-rounded weights on the f32 path (gemm crate)",
        },
        Dtype::Int8 if amx_gemm::supported() => AMX_INT8_KERNEL,
        Dtype::Int8 if int8_gemm::supported() => INT8_KERNEL,
        Dtype::Int8 if f32_runs_packed() => {
            "int8-rounded weights on the f32 path (AVX-512 pre-packed)"
        }
        Dtype::Int8 => "int8-rounded weights on the f32 path (gemm crate)",
        Dtype::F32 if f32_runs_packed() => F32_PACKED_KERNEL,
        Dtype::F32 => F32_KERNEL,
    }
}

/// A linear layer; the weight is converted once, at load, to its kernel's layout.
pub struct Linear {
    kernel: Kernel,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// Loads `weight` (`[out, in]`) and `bias` (`[out]`) from `vb`, in `vb`'s dtype.
    pub fn load(vb: &Vb, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::load_as(vb, in_dim, out_dim, vb.dtype())
    }

    /// Like [`Linear::load`] with an explicit dtype (small heads stay f32).
    pub fn load_as(vb: &Vb, in_dim: usize, out_dim: usize, dtype: Dtype) -> Result<Self> {
        let weight = vb.get("weight", &[out_dim, in_dim])?;
        let bias = vb.get("bias", &[out_dim])?;
        Ok(Self::from_parts_as(
            &weight,
            Some(bias),
            in_dim,
            out_dim,
            dtype,
        ))
    }

    /// Stacks several layers with the same input into one wider layer (e.g. Q, K and V).
    pub fn load_stacked(vbs: &[Vb], in_dim: usize, out_dim: usize) -> Result<Self> {
        let mut weight = Vec::with_capacity(vbs.len() * out_dim * in_dim);
        let mut bias = Vec::with_capacity(vbs.len() * out_dim);
        for vb in vbs {
            weight.extend(vb.get("weight", &[out_dim, in_dim])?);
            bias.extend(vb.get("bias", &[out_dim])?);
        }
        let dtype = vbs.first().map_or(Dtype::F32, Vb::dtype);
        Ok(Self::from_parts_as(
            &weight,
            Some(bias),
            in_dim,
            vbs.len() * out_dim,
            dtype,
        ))
    }

    /// Concatenates the outputs of several bias-free layers with the same input into one wider
    /// layer: `parts` are (view, output width) pairs, e.g. a decoder's Q, K and V projections,
    /// whose widths differ under grouped-query attention. Loads `weight` only.
    pub fn load_concat_no_bias(parts: &[(Vb, usize)], in_dim: usize) -> Result<Self> {
        let out_dim: usize = parts.iter().map(|(_, out)| out).sum();
        let mut weight = Vec::with_capacity(out_dim * in_dim);
        for (vb, out) in parts {
            weight.extend(vb.get("weight", &[*out, in_dim])?);
        }
        let dtype = parts.first().map_or(Dtype::F32, |(vb, _)| vb.dtype());
        Ok(Self::from_parts_as(&weight, None, in_dim, out_dim, dtype))
    }

    /// Loads a bias-free layer (`weight` only, `[out, in]`), in `vb`'s dtype.
    pub fn load_no_bias(vb: &Vb, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::load_concat_no_bias(&[(vb.clone(), out_dim)], in_dim)
    }

    /// Builds an f32 layer from a PyTorch-layout weight (`[out, in]`, row-major).
    pub fn from_parts(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Self {
        Self::from_parts_as(weight, bias, in_dim, out_dim, Dtype::F32)
    }

    /// Builds a layer in `dtype` (on the kernel [`kernel_for`] names). bf16 runs the fastest of
    /// AMX tiles, `vdpbf16ps` (AVX512_BF16) and the kernel that keeps its weights in bf16 and
    /// widens them to f32 in registers (AVX2+FMA), by a timed GEMM; int8 runs its AMX kernel,
    /// else its AVX512_VNNI one. Elsewhere both keep the rounded/quantised weights on the f32
    /// path.
    pub fn from_parts_as(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
        dtype: Dtype,
    ) -> Self {
        let kernel = match dtype {
            Dtype::Bf16 => {
                return Self::with_kernel_bias(weight, bias, in_dim, out_dim, bf16_choice())
            }
            Dtype::Int8 if amx_gemm::supported() => Kernel::AmxInt8(PackedAmxInt8::pack(
                weight,
                bias.as_deref(),
                in_dim,
                out_dim,
            )),
            Dtype::Int8 if int8_gemm::supported() => {
                Kernel::Int8(PackedInt8::pack(weight, bias.as_deref(), in_dim, out_dim))
            }
            Dtype::Int8 => f32_kernel(
                &PackedInt8::dequantized(weight, in_dim, out_dim),
                bias.as_deref(),
                in_dim,
                out_dim,
            ),
            Dtype::F32 => f32_kernel(weight, bias.as_deref(), in_dim, out_dim),
        };
        Self {
            kernel,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// A bf16 layer on the given kernel, without bias (for the kernel choice).
    fn with_kernel(weight: &[f32], in_dim: usize, out_dim: usize, choice: Bf16Choice) -> Self {
        Self::with_kernel_bias(weight, None, in_dim, out_dim, choice)
    }

    /// A bf16 layer on the given kernel.
    fn with_kernel_bias(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
        choice: Bf16Choice,
    ) -> Self {
        let kernel = match choice {
            Bf16Choice::Amx => Kernel::AmxBf16(PackedAmxBf16::pack(
                weight,
                bias.as_deref(),
                in_dim,
                out_dim,
            )),
            Bf16Choice::Dot => {
                Kernel::Bf16(PackedBf16::pack(weight, bias.as_deref(), in_dim, out_dim))
            }
            Bf16Choice::Widen => {
                Kernel::Bf16W(PackedBf16W::pack(weight, bias.as_deref(), in_dim, out_dim))
            }
            Bf16Choice::F32 => {
                let rounded: Vec<f32> = weight
                    .iter()
                    .map(|&w| bf16_gemm::from_bf16_bits(bf16_gemm::to_bf16_bits(w)))
                    .collect();
                f32_kernel(&rounded, bias.as_deref(), in_dim, out_dim)
            }
        };
        Self {
            kernel,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// The kernel this layer runs on this CPU (for logs and benchmarks).
    pub fn kernel_name(&self) -> &'static str {
        match self.kernel {
            Kernel::F32 { .. } => F32_KERNEL,
            Kernel::F32Packed(_) => F32_PACKED_KERNEL,
            Kernel::AmxBf16(_) => AMX_BF16_KERNEL,
            Kernel::Bf16(_) => BF16_KERNEL,
            Kernel::Bf16W(_) => BF16W_KERNEL,
            Kernel::AmxInt8(_) => AMX_INT8_KERNEL,
            Kernel::Int8(_) => INT8_KERNEL,
        }
    }

    /// `x·Wᵀ + b` for every row of `x` (`[rows, in]` → `[rows, out]`).
    pub fn forward(&self, x: &Matrix) -> Matrix {
        match &self.kernel {
            Kernel::AmxBf16(packed) => packed.matmul(x, None),
            Kernel::Bf16(packed) => packed.matmul(x, None),
            Kernel::Bf16W(packed) => packed.matmul(x, None),
            Kernel::AmxInt8(packed) => packed.matmul(x, None),
            Kernel::Int8(packed) => packed.matmul(x, None),
            Kernel::F32Packed(packed) => packed.matmul(x, None),
            Kernel::F32 { weight_t } => self.forward_f32(weight_t, x),
        }
    }

    /// `act(x·Wᵀ + b)`: the pre-packed kernels apply the activation to each output tile while
    /// it is in cache; the `gemm` crate's path applies it afterwards.
    pub fn forward_activated(&self, x: &Matrix, act: Activation) -> Matrix {
        let post = |values: &mut [f32]| act.apply_serial(values);
        match &self.kernel {
            Kernel::AmxBf16(packed) => packed.matmul(x, Some(&post)),
            Kernel::Bf16(packed) => packed.matmul(x, Some(&post)),
            Kernel::Bf16W(packed) => packed.matmul(x, Some(&post)),
            Kernel::AmxInt8(packed) => packed.matmul(x, Some(&post)),
            Kernel::Int8(packed) => packed.matmul(x, Some(&post)),
            Kernel::F32Packed(packed) => packed.matmul(x, Some(&post)),
            Kernel::F32 { weight_t } => {
                let mut out = self.forward_f32(weight_t, x);
                act.apply(&mut out.data);
                out
            }
        }
    }

    /// The f32 path: the `gemm` crate on the transposed weight.
    fn forward_f32(&self, weight_t: &[f32], x: &Matrix) -> Matrix {
        assert_eq!(x.cols, self.in_dim, "linear input width");
        let (m, n, k) = (x.rows, self.out_dim, self.in_dim);
        let mut out = match &self.bias {
            Some(b) => Matrix::from_vec(b.repeat(m), m, n),
            None => Matrix::zeros(m, n),
        };
        if m == 0 {
            return out;
        }
        let parallelism = if m * n * k >= PARALLEL_MIN_WORK && runtime::threads() > 1 {
            Parallelism::Rayon(runtime::threads())
        } else {
            Parallelism::None
        };
        // SAFETY: all three buffers are row-major with the sizes asserted above.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.data.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.data.as_ptr(),
                1,
                k as isize,
                weight_t.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        out
    }
}

/// The f32 kernel for a PyTorch-layout weight (`[out, in]`): pre-packed AVX-512 where it is
/// the faster one on this CPU, else the `gemm` crate.
fn f32_kernel(weight: &[f32], bias: Option<&[f32]>, in_dim: usize, out_dim: usize) -> Kernel {
    if f32_runs_packed() {
        Kernel::F32Packed(PackedF32::pack(weight, bias, in_dim, out_dim))
    } else {
        Kernel::F32 {
            weight_t: transpose(weight, in_dim, out_dim),
        }
    }
}

/// `[out, in]` → `[in, out]`.
fn transpose(weight: &[f32], in_dim: usize, out_dim: usize) -> Vec<f32> {
    let mut weight_t = vec![0.0; in_dim * out_dim];
    for o in 0..out_dim {
        for i in 0..in_dim {
            weight_t[i * out_dim + o] = weight[o * in_dim + i];
        }
    }
    weight_t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bf16 kernel computes the same product (within bf16 rounding), and layers are
    /// built on the kernel `kernel_for` reports.
    #[test]
    fn bf16_kernels_agree_and_the_chosen_one_is_used() {
        let (k, n) = (64, 48);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7 % 29) as f32 - 14.0) / 30.0)
            .collect();
        let x = Matrix::from_vec(
            (0..5 * k).map(|i| ((i % 11) as f32 - 5.0) / 6.0).collect(),
            5,
            k,
        );
        let reference = Linear::with_kernel(&w, k, n, Bf16Choice::F32).forward(&x);
        let mut candidates = vec![];
        if amx_gemm::supported() {
            candidates.push(Bf16Choice::Amx);
        }
        if bf16_gemm::supported() {
            candidates.push(Bf16Choice::Dot);
        }
        if bf16w_gemm::supported() {
            candidates.push(Bf16Choice::Widen);
        }
        for choice in candidates {
            let got = Linear::with_kernel(&w, k, n, choice).forward(&x);
            for (a, b) in got.data.iter().zip(&reference.data) {
                // vdpbf16ps also rounds the activations to bf16.
                assert!(
                    (a - b).abs() < 0.05 * (1.0 + b.abs()),
                    "{choice:?}: {a} vs {b}"
                );
            }
        }
        let layer = Linear::from_parts_as(&w, None, k, n, Dtype::Bf16);
        match bf16_choice() {
            Bf16Choice::F32 => assert_eq!(layer.kernel_name(), kernel_for(Dtype::F32)),
            _ => assert_eq!(layer.kernel_name(), kernel_for(Dtype::Bf16)),
        }
    }

    #[test]
    fn forward_matches_naive() {
        let (i, o) = (3, 2);
        let w = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
        let lin = Linear::from_parts(&w, Some(vec![0.1, -0.2]), i, o);
        let x = Matrix::from_vec(vec![1.0, 1.0, 1.0, 2.0, 0.0, -1.0], 2, 3);
        let y = lin.forward(&x);
        // Within f32 rounding: kernels add the bias first or last.
        for (got, want) in y.data.iter().zip([6.1f32, -0.7, -0.9, -2.2]) {
            assert!((got - want).abs() <= 1e-6, "{got} vs {want}");
        }
    }
}
