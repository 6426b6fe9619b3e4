//! Cross-encoders exported to ONNX (optimum's `text-classification` exports, the `onnx/` folders
//! of hub repos), run by ONNX Runtime through the `ort` crate.
//!
//! ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH` (or `libonnxruntime.so` on the
//! library path), e.g. the one in PyPI's `onnxruntime` wheel (`onnxruntime/capi/`), version 1.31
//! or newer. Inputs are taken from the graph (`input_ids`, `attention_mask`, optional
//! `token_type_ids`), the output is `logits` `[batch, 1]` in f32 or f16. A graph with a fixed
//! `[batch, length]` (seed 000's export) gets batches of exactly that shape, padded; a dynamic
//! one gets each batch padded to its longest sequence.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::EncoderConfig;
use crate::models::{CrossEncoder, ModelKind};

/// The ONNX file a model folder holds, when it has no safetensors weights: `model.onnx` at the
/// root or in `onnx/`. `explicit` (relative to `dir`, or absolute) wins.
pub fn find_onnx_file(dir: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(file) = explicit {
        return Some(if file.is_absolute() {
            file.to_path_buf()
        } else {
            dir.join(file)
        });
    }
    ["model.onnx", "onnx/model.onnx"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// ONNX Runtime, loaded once per process (a second environment cannot be made).
fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let configured = std::env::var("ORT_DYLIB_PATH")
            .ok()
            .filter(|p| !p.is_empty());
        let path = configured
            .clone()
            .unwrap_or_else(|| "libonnxruntime.so".into());
        ort::init_from(&path)
            .map_err(|e| e.to_string())
            .and_then(|builder| {
                builder
                    .with_name("rerank")
                    .build()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                format!(
                    "cannot load the ONNX Runtime library {path} ({e}); set ORT_DYLIB_PATH to \
                     libonnxruntime.so ≥ 1.31 (e.g. onnxruntime/capi/libonnxruntime.so.1.32.0 \
                     of `pip install onnxruntime==1.32.0`) or put it on the library path"
                )
            })
    })
    .as_ref()
    .map_err(|e| ModelError::Onnx(e.clone()))
}

/// What a graph input is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

/// A cross-encoder run by ONNX Runtime.
pub struct OnnxCrossEncoder {
    /// `Session::run` takes `&mut self`: one forward pass at a time.
    session: Mutex<Session>,
    inputs: Vec<(String, Feed)>,
    output: String,
    f16_output: bool,
    /// `(batch, length)` of a graph with a fixed shape.
    fixed: Option<(usize, usize)>,
    kind: ModelKind,
    encoder: EncoderConfig,
    max_len: usize,
    pad_id: i64,
}

fn onnx_error(file: &Path, message: String) -> ModelError {
    if message.starts_with("cannot load the ONNX Runtime library") {
        return ModelError::Onnx(message);
    }
    ModelError::Onnx(format!("{}: {message}", file.display()))
}

impl OnnxCrossEncoder {
    /// Opens `file` (external data beside it is found) for a model of `kind`; `max_len` and
    /// `pad_id` come from its config.
    pub fn load(
        file: &Path,
        kind: ModelKind,
        encoder: &EncoderConfig,
        max_len: usize,
        pad_id: u32,
    ) -> Result<Self> {
        if !file.is_file() {
            return Err(ModelError::Onnx(format!(
                "no ONNX file at {}",
                file.display()
            )));
        }
        let session = open(file).or_else(|first| {
            // optimum's O1 exports trip ONNX Runtime ≥ 1.31's MatMulAddFusion.
            open_with_disabled(file, "MatMulAddFusion").map_err(|_| first)
        })?;
        let mut inputs = Vec::new();
        let mut fixed = None;
        for input in session.inputs() {
            let role = match input.name() {
                "input_ids" => Feed::InputIds,
                "attention_mask" => Feed::AttentionMask,
                "token_type_ids" => Feed::TokenTypeIds,
                other => {
                    return Err(ModelError::Onnx(format!(
                        "{}: unexpected graph input `{other}` (a cross-encoder takes input_ids, \
                         attention_mask and optionally token_type_ids)",
                        file.display()
                    )))
                }
            };
            if let ValueType::Tensor { shape, .. } = input.dtype() {
                if shape.len() == 2 && shape[0] > 0 && shape[1] > 0 {
                    fixed = Some((shape[0] as usize, shape[1] as usize));
                }
            }
            inputs.push((input.name().to_string(), role));
        }
        let output = session.outputs().first().ok_or_else(|| {
            ModelError::Onnx(format!("{}: the graph has no output", file.display()))
        })?;
        let f16_output = matches!(
            output.dtype(),
            ValueType::Tensor {
                ty: TensorElementType::Float16,
                ..
            }
        );
        let output = output.name().to_string();
        Ok(Self {
            session: Mutex::new(session),
            inputs,
            output,
            f16_output,
            fixed,
            kind,
            encoder: encoder.clone(),
            max_len: fixed.map_or(max_len, |(_, l)| l.min(max_len)),
            pad_id: i64::from(pad_id),
        })
    }

    /// Runs rows `seqs` of `batch` padded to `length` (plus copies of the first row up to
    /// `rows`, whose outputs are dropped); one logit per sequence of `seqs`.
    fn run(
        &self,
        batch: &PackedBatch,
        seqs: &[usize],
        rows: usize,
        length: usize,
    ) -> Result<Vec<f32>> {
        let mut ids = vec![self.pad_id; rows * length];
        let mut mask = vec![0i64; rows * length];
        let mut types = vec![0i64; rows * length];
        for r in 0..rows {
            let range = batch.range(seqs[r.min(seqs.len() - 1)]);
            let row = r * length;
            for (j, t) in range.enumerate() {
                ids[row + j] = i64::from(batch.input_ids[t]);
                mask[row + j] = 1;
                types[row + j] = i64::from(batch.token_type_ids[t]);
            }
        }
        let tensor = |data: Vec<i64>| -> Result<DynValue> {
            Tensor::from_array(([rows, length], data))
                .map(|t| t.into_dyn())
                .map_err(|e| ModelError::Onnx(e.to_string()))
        };
        let mut feed: Vec<(String, DynValue)> = Vec::with_capacity(self.inputs.len());
        for (name, role) in &self.inputs {
            let data = match role {
                Feed::InputIds => ids.clone(),
                Feed::AttentionMask => mask.clone(),
                Feed::TokenTypeIds => types.clone(),
            };
            feed.push((name.clone(), tensor(data)?));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| ModelError::Onnx("a previous run panicked".into()))?;
        let outputs = session
            .run(feed)
            .map_err(|e| ModelError::Onnx(e.to_string()))?;
        let value = &outputs[self.output.as_str()];
        let logits: Vec<f32> = if self.f16_output {
            let (_, v) = value
                .try_extract_tensor::<half::f16>()
                .map_err(|e| ModelError::Onnx(e.to_string()))?;
            v.iter().map(|x| x.to_f32()).collect()
        } else {
            let (_, v) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| ModelError::Onnx(e.to_string()))?;
            v.to_vec()
        };
        if logits.len() != rows {
            return Err(ModelError::Onnx(format!(
                "output `{}` has {} values for {rows} rows: expected logits [batch, 1]",
                self.output,
                logits.len()
            )));
        }
        Ok(logits[..seqs.len()].to_vec())
    }
}

fn session_builder() -> std::result::Result<ort::session::builder::SessionBuilder, String> {
    let threads = crate::runtime::threads().max(1);
    let env = environment().map_err(|e| e.to_string())?;
    let text = |e: &dyn std::fmt::Display| e.to_string();
    Session::builder(env)
        .map_err(|e| text(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| text(&e))?
        .with_intra_threads(threads)
        .map_err(|e| text(&e))?
        .with_inter_threads(1)
        .map_err(|e| text(&e))
}

fn open(file: &Path) -> Result<Session> {
    session_builder()
        .and_then(|mut b| b.commit_from_file(file).map_err(|e| e.to_string()))
        .map_err(|e| onnx_error(file, e))
}

fn open_with_disabled(file: &Path, optimizer: &str) -> Result<Session> {
    session_builder()
        .and_then(|b| {
            b.with_disabled_optimizers(optimizer)
                .map_err(|e| e.to_string())
        })
        .and_then(|mut b| b.commit_from_file(file).map_err(|e| e.to_string()))
        .map_err(|e| onnx_error(file, e))
}

impl CrossEncoder for OnnxCrossEncoder {
    fn kind(&self) -> ModelKind {
        self.kind
    }

    fn max_sequence_length(&self) -> usize {
        self.max_len
    }

    fn forward_flops(&self, tokens: usize) -> f64 {
        crate::models::forward_flops(&self.encoder, tokens)
    }

    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let all: Vec<usize> = (0..batch.len()).collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        match self.fixed {
            Some((rows, length)) => {
                if let Some(s) = all.iter().find(|&&s| batch.range(s).len() > length) {
                    return Err(ModelError::Input(format!(
                        "sequence {s} has {} tokens, more than the ONNX graph's fixed length {length}",
                        batch.range(*s).len()
                    )));
                }
                let mut out = Vec::with_capacity(all.len());
                for chunk in all.chunks(rows) {
                    out.extend(self.run(batch, chunk, rows, length)?);
                }
                Ok(out)
            }
            None => self.run(batch, &all, all.len(), batch.max_seqlen()),
        }
    }
}
