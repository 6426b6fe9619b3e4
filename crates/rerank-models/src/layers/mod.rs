//! Building blocks shared by the architectures: linear layers, norms, activations, attention,
//! rotary embeddings, gated MLPs, the BERT-style transformer encoder and the Llama-style
//! decoder block.

pub mod activation;
pub mod attention;
pub mod compress;
pub mod decoder;
pub mod encoder;
pub mod fastmath;
pub mod linear;
pub mod matrix;
pub mod mlp;
pub mod norm;
pub mod prefix;
pub mod rope;

pub use activation::Activation;
pub use attention::{AttentionSpec, QueryRows};
pub use decoder::{Decoder, DecoderLayer, DecoderSpec};
pub use encoder::{EncoderConfig, TransformerEncoder};
pub use linear::{kernel_for, Linear};
pub use matrix::Matrix;
pub use mlp::GatedMlp;
pub use norm::{LayerNorm, RmsNorm, RmsScale};
pub use prefix::{Packing, SharedHeads};
pub use rope::{Rope, RopeTables};
