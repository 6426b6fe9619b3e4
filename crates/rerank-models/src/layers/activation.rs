//! Activation functions named by config.json's `hidden_act`.

use serde::Deserialize;

/// The activations BERT-family and decoder (Gemma, Llama-style) configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))`.
    #[default]
    Gelu,
    /// Tanh approximation of GELU.
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    /// `max(0, x)`.
    Relu,
    /// `x·sigmoid(x)`.
    #[serde(alias = "swish")]
    Silu,
}

impl Activation {
    /// Applies the activation to every value in place, spread over the engine's threads.
    pub fn apply(self, values: &mut [f32]) {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        if values.len() <= CHUNK {
            self.apply_serial(values);
        } else {
            values
                .par_chunks_mut(CHUNK)
                .for_each(|chunk| self.apply_serial(chunk));
        }
    }

    /// Applies the activation to every value in place, on the calling thread.
    pub fn apply_serial(self, values: &mut [f32]) {
        match self {
            Activation::Gelu => super::fastmath::gelu_inplace(values),
            Activation::GeluNew => super::fastmath::gelu_tanh_inplace(values),
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Silu => super::fastmath::silu_inplace(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_known_values() {
        let mut v = [0.0, 1.0, -1.0, 3.0];
        Activation::Gelu.apply(&mut v);
        let want: [f64; 4] = [0.0, 0.841_344_746, -0.158_655_254, 2.995_950_2];
        for (a, b) in v.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn parses_hf_names() {
        let a: Activation = serde_json::from_str("\"gelu_pytorch_tanh\"").unwrap();
        assert_eq!(a, Activation::GeluNew);
        let a: Activation = serde_json::from_str("\"gelu\"").unwrap();
        assert_eq!(a, Activation::Gelu);
    }
}
