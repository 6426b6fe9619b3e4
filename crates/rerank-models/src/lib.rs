//! The rerank inference engine.
//!
//! Transformer encoders (BERT, XLM-RoBERTa) that run on *packed* batches: all tokens of all
//! sequences live in one `[total_tokens, hidden]` matrix with per-sequence offsets, so the linear
//! layers never see padding. Weights are read from safetensors (f32, f16 or bf16) and converted
//! once, at load, to the layout the kernels want.
//!
//! The crate knows nothing of tokenizers or text: it takes token ids and returns logits or hidden
//! states. The `rerank` crate builds the token ids.

pub mod batch;
pub mod error;
pub mod layers;
pub mod models;
pub mod runtime;
pub mod weights;

pub use batch::PackedBatch;
pub use error::{ModelError, Result};
pub use layers::Matrix;
pub use models::{load_cross_encoder, load_text_encoder, CrossEncoder, ModelKind, TextEncoder};
pub use weights::Weights;
