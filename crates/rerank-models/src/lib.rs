//! The rerank inference engine.
//!
//! Transformer encoders (BERT, XLM-RoBERTa) and decoder rerankers (Gemma) that run on *packed*
//! batches: all tokens of all sequences live in one `[total_tokens, hidden]` matrix with
//! per-sequence offsets, so the linear layers never see padding. Weights are read from safetensors (f32, f16 or bf16) and converted
//! once, at load, to the layout the kernels want.
//!
//! The crate knows nothing of tokenizers or text: it takes token ids and returns logits or hidden
//! states. The `rerank` crate builds the token ids.

pub mod batch;
pub mod error;
pub mod kernels;
pub mod layers;
pub mod layerwise;
pub mod models;
pub mod runtime;
pub mod weights;

pub use batch::{PackedBatch, PromptSpan};
pub use error::{ModelError, Result};
pub use layers::Matrix;
pub use layerwise::{LayerPlan, LayerRequest, LayerSupport};
pub use models::{
    load_cross_encoder, load_cross_encoder_with, load_onnx_cross_encoder, load_text_encoder,
    model_kind, CrossEncoder, LoadOptions, ModelKind, TextEncoder,
};
pub use weights::Weights;

/// Precision of the encoder's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// f32 weights and activations (the reference's numbers).
    #[default]
    F32,
    /// bf16 weights, f32 accumulation: on Intel AMX (tile `tdpbf16ps`) and with AVX512_BF16
    /// (`vdpbf16ps`) the activations are rounded to bf16 too; elsewhere, with AVX2+FMA, bf16 weights are widened in registers and
    /// multiplied with f32 activations; without either, bf16-rounded weights run the f32 path.
    /// Where several kernels exist, a short timed GEMM picks the fastest (or f32, if faster still).
    Bf16,
    /// int8 weights (per-channel scales) and activations (dynamic per-token scales), i32
    /// accumulation (AMX `tdpbusd` tiles, else AVX512_VNNI, where the CPU has them).
    Int8,
}
