//! The pre-norm decoder block shared by the LLM rerankers (Gemma, MiniCPM, Gemma-2), on packed
//! sequences with causal attention and positions `0..n` per sequence.
//!
//! ```text
//! a = attention(rope(qkv(input_norm(h))))          causal, GQA/MQA, optional window and cap
//! h = h + s · [attn_out_norm](o_proj(a))            s = residual_scale; the norm for Gemma-2
//! h = h + s · [mlp_out_norm](mlp(mlp_norm(h)))      gated MLP
//! ```
//!
//! Weight names are those of Hugging Face's Llama family: `self_attn.{q,k,v,o}_proj`,
//! `mlp.{gate,up,down}_proj`, `input_layernorm`, `post_attention_layernorm` (the MLP's input
//! norm), or with Gemma-2's sandwich norms `post_attention_layernorm` (on the attention output),
//! `pre_feedforward_layernorm` and `post_feedforward_layernorm`.

use crate::batch::PromptSpan;
use crate::error::{ModelError, Result};
use crate::layers::attention::{attention_packed, AttentionSpec, QueryRows};
use crate::layers::compress::compress_passages;
use crate::layers::encoder::{blockwise_where, query_rows};
use crate::layers::mlp::GatedMlp;
use crate::layers::norm::{RmsNorm, RmsScale};
use crate::layers::rope::{Rope, RopeTables};
use crate::layers::{Activation, Linear, Matrix, Packing};
use crate::layerwise::LayerPlan;
use crate::weights::Vb;

/// What one decoder layer computes: the sizes and variants the LLM rerankers differ in.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderSpec {
    /// Model width.
    pub hidden: usize,
    /// Width of the gated MLP.
    pub intermediate: usize,
    /// Heads, head size, scale, causal window and soft-cap of the self-attention.
    pub attention: AttentionSpec,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// `w` or `1 + w` norms.
    pub rms_scale: RmsScale,
    /// The MLP gate's activation.
    pub activation: Activation,
    /// Factor on each residual branch before it is added (MiniCPM's
    /// `scale_depth / √num_hidden_layers`; 1 elsewhere).
    pub residual_scale: f32,
    /// Gemma-2's extra norms on the attention and MLP outputs.
    pub sandwich_norms: bool,
}

impl DecoderSpec {
    /// Checks that the sizes fit together (a message for the config error).
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.attention.validate()?;
        if self.hidden == 0 || self.intermediate == 0 {
            return Err("hidden_size and intermediate_size must be positive".into());
        }
        if !self.attention.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                self.attention.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("rope_theta {} must be positive", self.rope_theta));
        }
        Ok(())
    }
}

/// One decoder layer.
pub struct DecoderLayer {
    input_norm: RmsNorm,
    /// `[Q | K | V]`: one GEMM for all three (the last layer too: its queries other than the
    /// last token's are wasted, a fraction of a percent of the model's work, but its keys
    /// and values are needed for every token).
    qkv: Linear,
    o_proj: Linear,
    attn_out_norm: Option<RmsNorm>,
    mlp_norm: RmsNorm,
    mlp: GatedMlp,
    mlp_out_norm: Option<RmsNorm>,
    spec: DecoderSpec,
}

impl DecoderLayer {
    /// Loads `model.layers.{i}` (`vb`) with the Llama-family names.
    pub fn load(vb: &Vb, spec: &DecoderSpec) -> Result<Self> {
        spec.validate().map_err(ModelError::Input)?;
        let (h, a) = (spec.hidden, &spec.attention);
        let attn = vb.pp("self_attn");
        let parts = [
            (attn.pp("q_proj"), a.q_width()),
            (attn.pp("k_proj"), a.kv_width()),
            (attn.pp("v_proj"), a.kv_width()),
        ];
        let norm = |name: &str| RmsNorm::load(&vb.pp(name), h, spec.rms_eps, spec.rms_scale);
        let (attn_out_norm, mlp_norm, mlp_out_norm) = if spec.sandwich_norms {
            (
                Some(norm("post_attention_layernorm")?),
                norm("pre_feedforward_layernorm")?,
                Some(norm("post_feedforward_layernorm")?),
            )
        } else {
            (None, norm("post_attention_layernorm")?, None)
        };
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            qkv: Linear::load_concat_no_bias(&parts, h)?,
            o_proj: Linear::load_no_bias(&attn.pp("o_proj"), a.q_width(), h)?,
            attn_out_norm,
            mlp_norm,
            mlp: GatedMlp::load(&vb.pp("mlp"), h, spec.intermediate, spec.activation)?,
            mlp_out_norm,
            spec: spec.clone(),
        })
    }

    /// Runs the layer on packed hidden states `[tokens, hidden]` (sequences as `packing` lays
    /// them out); with [`QueryRows::LastOnly`] only the last token of each sequence goes past
    /// the keys and values (its attention row, output projection and MLP), and the output has
    /// one row per sequence. `rope` must cover every position ([`Packing::positions_needed`]).
    pub fn forward(
        &self,
        x: &Matrix,
        packing: &Packing,
        rope: &RopeTables,
        rows: QueryRows,
    ) -> Matrix {
        let may_start = |s| packing.starts_group(s);
        blockwise_where(x, packing.cu_seqlens, may_start, |block, first, cu| {
            let prefix_of = packing.local_prefixes(first, first + cu.len() - 1);
            let local = Packing {
                cu_seqlens: cu,
                prefix_of: &prefix_of,
            };
            self.forward_block(block, &local, rope, rows)
        })
    }

    fn forward_block(
        &self,
        x: &Matrix,
        packing: &Packing,
        rope: &RopeTables,
        rows: QueryRows,
    ) -> Matrix {
        let a = &self.spec.attention;
        let mut qkv = self.qkv.forward(&self.input_norm.forward(x));
        rope.apply_at(&mut qkv, &packing.positions(), a.heads + a.kv_heads);
        let context = attention_packed(&qkv, packing, a, rows);
        drop(qkv);
        let mut branch = self.o_proj.forward(&context);
        drop(context);
        let mut h = match query_rows(packing.cu_seqlens, rows) {
            None => x.clone(),
            Some(selected) => x.select_rows(&selected),
        };
        if let Some(norm) = &self.attn_out_norm {
            norm.forward_inplace(&mut branch);
        }
        self.add_branch(&mut h, &branch);
        let mut branch = self.mlp.forward(&self.mlp_norm.forward(&h));
        if let Some(norm) = &self.mlp_out_norm {
            norm.forward_inplace(&mut branch);
        }
        self.add_branch(&mut h, &branch);
        h
    }

    /// `h += residual_scale · branch`.
    fn add_branch(&self, h: &mut Matrix, branch: &Matrix) {
        assert_eq!(h.data.len(), branch.data.len(), "residual shape");
        let s = self.spec.residual_scale;
        if s == 1.0 {
            h.data
                .iter_mut()
                .zip(&branch.data)
                .for_each(|(h, b)| *h += b);
        } else {
            h.data
                .iter_mut()
                .zip(&branch.data)
                .for_each(|(h, b)| *h += b * s);
        }
    }
}

/// A stack of decoder layers sharing one rotary table (`model.layers.N.*`).
pub struct Decoder {
    layers: Vec<DecoderLayer>,
    rope: Rope,
}

impl Decoder {
    /// Loads `count` layers under `vb` (the `model.layers` prefix); `spec(i)` describes layer
    /// `i` (Gemma-2 alternates sliding-window and global layers). RoPE uses layer 0's head size
    /// and base.
    pub fn load(vb: &Vb, count: usize, spec: impl Fn(usize) -> DecoderSpec) -> Result<Self> {
        let first = spec(0);
        let layers = (0..count)
            .map(|i| DecoderLayer::load(&vb.pp(i), &spec(i)))
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            rope: Rope::new(first.attention.head_dim, first.rope_theta),
        })
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True without layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Runs the layers `plan` needs over packed embeddings `[tokens, hidden]` (sequences as
    /// `packing` lays them out) and returns, for each of its cutoffs `c` (ascending), the
    /// hidden state of the last token of each sequence after `c` layers (`[sequences, hidden]`,
    /// before any final norm). Layers past the deepest cutoff are not run, and the deepest runs
    /// only the last tokens' rows. Before each of `plan.compress_layers` the passages are
    /// compressed ([`compress_passages`]; `spans` gives them; a continuation's positions still
    /// start after its head).
    pub fn forward_plan(
        &self,
        x: Matrix,
        packing: Packing,
        spans: &[PromptSpan],
        plan: &LayerPlan,
    ) -> Result<Vec<Matrix>> {
        let deepest = plan.deepest();
        if deepest > self.layers.len() {
            return Err(ModelError::Input(format!(
                "cutoff layer {deepest} is past the model's {} layers",
                self.layers.len()
            )));
        }
        crate::runtime::on_pool(|| {
            // Compression only shortens sequences: these tables cover every later position.
            let rope = self.rope.tables(packing.positions_needed());
            let (mut x, mut cu) = (x, packing.cu_seqlens.to_vec());
            let mut states = Vec::with_capacity(plan.cutoffs.len());
            for index in 0..=deepest {
                if index == deepest {
                    // The previous layer kept only the last tokens' rows.
                    states.push(if index > 0 { x } else { last_rows(&x, &cu) });
                    break;
                }
                if plan.cutoffs.contains(&index) {
                    states.push(last_rows(&x, &cu));
                }
                if plan.compresses_before(index) {
                    (x, cu) = compress_passages(&x, &cu, spans, plan.compress_ratio)?;
                }
                let rows = if index + 1 == deepest {
                    QueryRows::LastOnly
                } else {
                    QueryRows::All
                };
                let layout = Packing {
                    cu_seqlens: &cu,
                    prefix_of: packing.prefix_of,
                };
                x = self.layers[index].forward(&x, &layout, &rope, rows);
            }
            Ok(states)
        })
    }
}

/// The rows of the last token of each sequence.
fn last_rows(x: &Matrix, cu_seqlens: &[usize]) -> Matrix {
    match query_rows(cu_seqlens, QueryRows::LastOnly) {
        Some(rows) => x.select_rows(&rows),
        None => x.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::attention::{attention, AttentionSpec};
    use crate::weights::Weights;
    use safetensors::tensor::TensorView;

    /// Deterministic small values.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7 + seed * 13) % 23) as f32 - 11.0) / 40.0)
            .collect()
    }

    /// A Gemma-2-like layer (sandwich norms, window, soft-cap, residual scale, `w` norms)
    /// written to a safetensors file and loaded back.
    fn layer(dir: &std::path::Path) -> (Weights, DecoderSpec, Vec<(String, Vec<f32>)>) {
        layers(dir, &[""])
    }

    /// [`layer`]'s weights under each of `prefixes` (`"0."`, `"1."`, … for a [`Decoder`]).
    fn layers(
        dir: &std::path::Path,
        prefixes: &[&str],
    ) -> (Weights, DecoderSpec, Vec<(String, Vec<f32>)>) {
        let spec = DecoderSpec {
            hidden: 12,
            intermediate: 10,
            attention: AttentionSpec {
                scale: 0.4,
                sliding_window: Some(3),
                softcap: Some(5.0),
                ..AttentionSpec::causal(4, 2, 4)
            },
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            rms_scale: RmsScale::Weight,
            activation: Activation::Silu,
            residual_scale: 0.5,
            sandwich_norms: true,
        };
        let shapes: [(&str, [usize; 2]); 7] = [
            ("self_attn.q_proj", [16, 12]),
            ("self_attn.k_proj", [8, 12]),
            ("self_attn.v_proj", [8, 12]),
            ("self_attn.o_proj", [12, 16]),
            ("mlp.gate_proj", [10, 12]),
            ("mlp.up_proj", [10, 12]),
            ("mlp.down_proj", [12, 10]),
        ];
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = shapes
            .iter()
            .enumerate()
            .map(|(i, (name, s))| (format!("{name}.weight"), s.to_vec(), values(s[0] * s[1], i)))
            .collect();
        for (i, name) in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ]
        .iter()
        .enumerate()
        {
            let w = values(12, 20 + i).iter().map(|v| v + 1.0).collect();
            tensors.push((format!("{name}.weight"), vec![12], w));
        }
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = prefixes
            .iter()
            .enumerate()
            .flat_map(|(i, prefix)| {
                tensors.iter().map(move |(name, shape, v)| {
                    let v = v.iter().map(|x| x * (1.0 + 0.1 * i as f32)).collect();
                    (format!("{prefix}{name}"), shape.clone(), v)
                })
            })
            .collect();
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| {
                let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap();
                (name.clone(), view)
            })
            .collect();
        let path = dir.join(format!("layers-{}.safetensors", prefixes.len()));
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let named = tensors.into_iter().map(|(n, _, v)| (n, v)).collect();
        (Weights::open(&[path]).unwrap(), spec, named)
    }

    #[test]
    fn layer_wires_norms_residual_scale_and_last_token_rows() {
        let dir = std::env::temp_dir().join(format!("rerank-decoder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (weights, spec, tensors) = layer(&dir);
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == &format!("{name}.weight"))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let decoder = DecoderLayer::load(&weights.pp(""), &spec).unwrap();
        let rope = Rope::new(4, 10_000.0);
        let cu = [0, 5, 6, 13];
        let tables = rope.tables(7);
        let x = Matrix::from_vec(values(13 * 12, 99), 13, 12);
        let all = decoder.forward(&x, &Packing::plain(&cu), &tables, QueryRows::All);
        let last = decoder.forward(&x, &Packing::plain(&cu), &tables, QueryRows::LastOnly);

        // The same block composed by hand from the (separately tested) parts.
        let norm =
            |name: &str, m: &Matrix| RmsNorm::new(get(name), 1e-6, RmsScale::Weight).forward(m);
        let linear = |names: &[&str], m: &Matrix| {
            let w: Vec<f32> = names.iter().flat_map(|n| get(n)).collect();
            let out = w.len() / m.cols;
            Linear::from_parts(&w, None, m.cols, out).forward(m)
        };
        let mut qkv = linear(
            &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            &norm("input_layernorm", &x),
        );
        rope.apply(&mut qkv, &cu, 6);
        let attn = attention(&qkv, &cu, &spec.attention, QueryRows::All);
        let a = norm(
            "post_attention_layernorm",
            &linear(&["self_attn.o_proj"], &attn),
        );
        let mut h = x.clone();
        h.data
            .iter_mut()
            .zip(&a.data)
            .for_each(|(h, a)| *h += 0.5 * a);
        let m_in = norm("pre_feedforward_layernorm", &h);
        let gu = linear(&["mlp.gate_proj", "mlp.up_proj"], &m_in);
        let mut inner = Matrix::zeros(13, 10);
        for r in 0..13 {
            for c in 0..10 {
                let g = gu.row(r)[c];
                inner.row_mut(r)[c] = g / (1.0 + (-g).exp()) * gu.row(r)[10 + c];
            }
        }
        let m = norm(
            "post_feedforward_layernorm",
            &linear(&["mlp.down_proj"], &inner),
        );
        h.data
            .iter_mut()
            .zip(&m.data)
            .for_each(|(h, m)| *h += 0.5 * m);

        for (a, b) in all.data.iter().zip(&h.data) {
            assert!((a - b).abs() < 1e-5, "all rows: {a} vs {b}");
        }
        assert_eq!((last.rows, last.cols), (3, 12));
        for (s, &end) in cu[1..].iter().enumerate() {
            for (a, b) in last.row(s).iter().zip(h.row(end - 1)) {
                assert!((a - b).abs() < 1e-5, "last row of {s}: {a} vs {b}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shared_heads_give_the_scores_of_whole_sequences() {
        let dir = std::env::temp_dir().join(format!("rerank-decoder-heads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (weights, spec, _) = layers(&dir, &["0.", "1.", "2."]);
        let decoder = Decoder::load(&weights.pp(""), 3, |_| spec.clone()).unwrap();
        // Sequences A = head + 4, B = head + 7 (the same 5 head rows), C = 6 rows of its own.
        let row = |seed: usize| values(12, seed);
        let head: Vec<usize> = (0..5).collect();
        let seq_a: Vec<usize> = head.iter().copied().chain(10..14).collect();
        let seq_b: Vec<usize> = head.iter().copied().chain(20..27).collect();
        let seq_c: Vec<usize> = (30..36).collect();
        let whole = [&seq_a, &seq_b, &seq_c];
        let x_of = |seeds: &[&[usize]]| {
            let data: Vec<f32> = seeds
                .iter()
                .flat_map(|s| s.iter())
                .flat_map(|&i| row(i))
                .collect();
            Matrix::from_vec(data.clone(), data.len() / 12, 12)
        };
        let plain_cu = [0, 9, 21, 27];
        let plain_x = x_of(&[&seq_a, &seq_b, &seq_c]);
        let shared_cu = [0, 5, 9, 16, 22];
        let shared_x = x_of(&[&head, &seq_a[5..], &seq_b[5..], &seq_c]);
        let prefix_of = [None, Some(0), Some(0), None];
        let shared = Packing {
            cu_seqlens: &shared_cu,
            prefix_of: &prefix_of,
        };
        let span = |head, tail| PromptSpan { head, tail };
        let plain_spans = [span(5, 1), span(5, 2), span(2, 1)];
        let shared_spans = [span(5, 0), span(0, 1), span(0, 2), span(2, 1)];
        let plans = [
            LayerPlan::single(3),
            LayerPlan {
                cutoffs: vec![1, 3],
                compress_ratio: 2,
                compress_layers: vec![1],
            },
        ];
        for plan in &plans {
            let want = decoder
                .forward_plan(
                    plain_x.clone(),
                    Packing::plain(&plain_cu),
                    &plain_spans,
                    plan,
                )
                .unwrap();
            let got = decoder
                .forward_plan(shared_x.clone(), shared, &shared_spans, plan)
                .unwrap();
            for (w, g) in want.iter().zip(&got) {
                assert_eq!((w.rows, g.rows), (whole.len(), 4));
                for s in 0..whole.len() {
                    assert_eq!(w.row(s), g.row(s + 1), "{plan:?}: sequence {s}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
