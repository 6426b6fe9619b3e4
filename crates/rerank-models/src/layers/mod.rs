//! Building blocks shared by the architectures: linear layers, norms, activations, attention and
//! the BERT-style transformer encoder.

pub mod activation;
pub mod attention;
pub mod encoder;
pub mod fastmath;
pub mod linear;
pub mod matrix;
pub mod norm;

pub use activation::Activation;
pub use encoder::{EncoderConfig, TransformerEncoder};
pub use linear::Linear;
pub use matrix::Matrix;
pub use norm::LayerNorm;
