//! Fully connected layer `y = x·Wᵀ + b` on packed rows.

use gemm::Parallelism;

use crate::error::Result;
use crate::kernels::bf16_gemm::{self, PackedBf16};
use crate::kernels::bf16w_gemm::{self, PackedBf16W};
use crate::kernels::int8_gemm::{self, PackedInt8};
use crate::layers::{Activation, Matrix};
use crate::runtime;
use crate::weights::Vb;
use crate::Dtype;

/// Work (multiply-adds) below which a GEMM runs on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// How the weight is stored for its kernel.
enum Kernel {
    /// Transposed f32 (`[in, out]`, row-major) for the `gemm` crate.
    F32 { weight_t: Vec<f32> },
    /// bf16 pairs packed for the AVX512_BF16 kernel (the bias is folded in there).
    Bf16(PackedBf16),
    /// bf16 weights packed for the AVX2+FMA kernel that widens them to f32 in registers (the
    /// bias is folded in there).
    Bf16W(PackedBf16W),
    /// int8 quads packed for the AVX512_VNNI kernel (the bias is folded in there).
    Int8(PackedInt8),
}

const F32_KERNEL: &str = "f32 (gemm crate)";
const BF16_KERNEL: &str = "bf16 (AVX512_BF16 vdpbf16ps)";
const BF16W_KERNEL: &str = "bf16 weights widened to f32 (AVX2+FMA)";
const INT8_KERNEL: &str = "int8 (AVX512_VNNI)";

/// The kernel a layer built in `dtype` runs on this CPU (for logs, `/info` and benchmarks).
pub fn kernel_for(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Bf16 if bf16_gemm::supported() => BF16_KERNEL,
        Dtype::Bf16 if bf16w_gemm::supported() => BF16W_KERNEL,
        Dtype::Bf16 => "bf16-rounded weights on the f32 path (gemm crate)",
        Dtype::Int8 if int8_gemm::supported() => INT8_KERNEL,
        Dtype::Int8 => "int8-rounded weights on the f32 path (gemm crate)",
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

    /// Builds a layer in `dtype` (on the kernel [`kernel_for`] names). bf16 runs `vdpbf16ps` where the CPU has AVX512_BF16, else
    /// keeps its weights in bf16 and widens them to f32 in registers where it has AVX2+FMA;
    /// int8 runs its AVX512_VNNI kernel. Elsewhere both keep the rounded/quantised weights on
    /// the f32 path.
    pub fn from_parts_as(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
        dtype: Dtype,
    ) -> Self {
        let kernel = match dtype {
            Dtype::Bf16 if bf16_gemm::supported() => {
                Kernel::Bf16(PackedBf16::pack(weight, bias.as_deref(), in_dim, out_dim))
            }
            Dtype::Bf16 if bf16w_gemm::supported() => {
                Kernel::Bf16W(PackedBf16W::pack(weight, bias.as_deref(), in_dim, out_dim))
            }
            Dtype::Bf16 => {
                let rounded: Vec<f32> = weight
                    .iter()
                    .map(|&w| bf16_gemm::from_bf16_bits(bf16_gemm::to_bf16_bits(w)))
                    .collect();
                Kernel::F32 {
                    weight_t: transpose(&rounded, in_dim, out_dim),
                }
            }
            Dtype::Int8 if int8_gemm::supported() => {
                Kernel::Int8(PackedInt8::pack(weight, bias.as_deref(), in_dim, out_dim))
            }
            Dtype::Int8 => Kernel::F32 {
                weight_t: transpose(
                    &PackedInt8::dequantized(weight, in_dim, out_dim),
                    in_dim,
                    out_dim,
                ),
            },
            Dtype::F32 => Kernel::F32 {
                weight_t: transpose(weight, in_dim, out_dim),
            },
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
            Kernel::Bf16(_) => BF16_KERNEL,
            Kernel::Bf16W(_) => BF16W_KERNEL,
            Kernel::Int8(_) => INT8_KERNEL,
        }
    }

    /// `x·Wᵀ + b` for every row of `x` (`[rows, in]` → `[rows, out]`).
    pub fn forward(&self, x: &Matrix) -> Matrix {
        match &self.kernel {
            Kernel::Bf16(packed) => packed.matmul(x, None),
            Kernel::Bf16W(packed) => packed.matmul(x, None),
            Kernel::Int8(packed) => packed.matmul(x, None),
            Kernel::F32 { weight_t } => self.forward_f32(weight_t, x),
        }
    }

    /// `act(x·Wᵀ + b)`: the bf16 and int8 kernels apply the activation to each output tile
    /// while it is in cache; the f32 path applies it afterwards.
    pub fn forward_activated(&self, x: &Matrix, act: Activation) -> Matrix {
        let post = |values: &mut [f32]| act.apply_serial(values);
        match &self.kernel {
            Kernel::Bf16(packed) => packed.matmul(x, Some(&post)),
            Kernel::Bf16W(packed) => packed.matmul(x, Some(&post)),
            Kernel::Int8(packed) => packed.matmul(x, Some(&post)),
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

    #[test]
    fn forward_matches_naive() {
        let (i, o) = (3, 2);
        let w = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
        let lin = Linear::from_parts(&w, Some(vec![0.1, -0.2]), i, o);
        let x = Matrix::from_vec(vec![1.0, 1.0, 1.0, 2.0, 0.0, -1.0], 2, 3);
        let y = lin.forward(&x);
        assert_eq!(y.data, vec![6.1, -0.7, -1.0 + 0.1, -2.0 - 0.2]);
    }
}
