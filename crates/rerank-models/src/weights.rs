//! Reading model weights from safetensors files (single or sharded): converted to f32 once, or,
//! for token-embedding tables, left in the mapped file and decoded row by row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::{Dtype as FileDtype, SafeTensors};

use crate::error::{ModelError, Result};
use crate::Dtype;

/// Where one tensor lives: which file, its dtype, shape and byte range.
#[derive(Debug, Clone)]
struct TensorLocation {
    file: usize,
    dtype: FileDtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// Memory-mapped safetensors files and an index of the tensors they hold.
pub struct Weights {
    dtype: Dtype,
    paths: Vec<PathBuf>,
    maps: Vec<Arc<Mmap>>,
    tensors: HashMap<String, TensorLocation>,
}

impl Weights {
    /// Opens the weights of a model folder: `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open(&[single]);
        }
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open(&shard_paths(&index)?);
        }
        let hint = if dir.join("pytorch_model.bin").is_file() {
            " (only pytorch_model.bin is there: convert it to safetensors)"
        } else {
            ""
        };
        Err(ModelError::Io {
            path: single,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no model.safetensors or model.safetensors.index.json{hint}"),
            ),
        })
    }

    /// Opens the given safetensors files.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut tensors = HashMap::new();
        for (file, path) in paths.iter().enumerate() {
            let io_err = |source| ModelError::Io {
                path: path.clone(),
                source,
            };
            let handle = std::fs::File::open(path).map_err(io_err)?;
            // SAFETY: the file is opened read-only; like every safetensors reader we assume it is
            // not truncated by another process while mapped.
            let map = unsafe { Mmap::map(&handle) }.map_err(io_err)?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                tensors.insert(
                    name,
                    TensorLocation {
                        file,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: data_start + start,
                        end: data_start + end,
                    },
                );
            }
            maps.push(Arc::new(map));
        }
        Ok(Self {
            dtype: Dtype::F32,
            paths: paths.to_vec(),
            maps,
            tensors,
        })
    }

    /// The precision linear layers built from these weights use.
    pub fn with_dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// True when a tensor of that exact name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Finds a tensor and checks its shape and dtype; returns it with its element size.
    fn locate(&self, name: &str, shape: &[usize]) -> Result<(&TensorLocation, usize)> {
        let loc = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                files: self.file_list(),
            })?;
        if loc.shape != shape {
            return Err(ModelError::BadTensor {
                name: name.to_string(),
                message: format!("expected shape {shape:?}, found {:?}", loc.shape),
            });
        }
        let elem = match loc.dtype {
            FileDtype::F32 => 4,
            FileDtype::F16 | FileDtype::BF16 => 2,
            other => {
                return Err(ModelError::BadTensor {
                    name: name.to_string(),
                    message: format!("unsupported dtype {other:?} (expected F32, F16 or BF16)"),
                })
            }
        };
        Ok((loc, elem))
    }

    /// A `[rows, width]` table read row by row from the mapped file instead of converted up
    /// front: a batch touches a few hundred of a vocabulary's 250,002 token embeddings, so only
    /// those pages become resident (768 MB of f32 otherwise).
    pub fn get_table(&self, name: &str, rows: usize, width: usize) -> Result<MappedTable> {
        let (loc, elem) = self.locate(name, &[rows, width])?;
        let map = Arc::clone(&self.maps[loc.file]);
        // Rows are read at random: no read-ahead of neighbouring rows into memory.
        let _ = map.advise_range(memmap2::Advice::Random, loc.start, loc.end - loc.start);
        Ok(MappedTable {
            map,
            start: loc.start,
            dtype: loc.dtype,
            elem,
            rows,
            width,
        })
    }

    /// Reads a tensor as f32, checking its shape.
    pub fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (loc, elem) = self.locate(name, shape)?;
        let map = &self.maps[loc.file];
        let mut values = Vec::with_capacity((loc.end - loc.start) / elem);
        // Convert in slices and release each slice's mapped pages right away: peak memory stays
        // near the converted weights instead of file + weights (a 768 MB embedding table would
        // otherwise be resident twice).
        const SLICE: usize = 64 << 20;
        let mut at = loc.start;
        while at < loc.end {
            let end = (at + SLICE).min(loc.end);
            values.extend(decode_f32(&map[at..end], loc.dtype).unwrap_or_default());
            // SAFETY: the map is read-only and file-backed; dropped pages are re-read from the
            // file if touched again, and no reference into this range outlives this loop.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, at, end - at)
            };
            at = end;
        }
        Ok(values)
    }

    /// A view that prefixes every name with `prefix.`.
    pub fn pp(&self, prefix: &str) -> Vb<'_> {
        Vb {
            weights: self,
            prefix: prefix.to_string(),
        }
    }

    fn file_list(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A prefixed view of [`Weights`], as models walk their module tree.
#[derive(Clone)]
pub struct Vb<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Vb<'a> {
    /// A sub-view: `self.prefix + "." + name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Vb<'a> {
        Vb {
            weights: self.weights,
            prefix: self.path(&name.to_string()),
        }
    }

    /// Full tensor name of `name` under this view.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Reads `name` as f32 with the given shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.weights.get_f32(&self.path(name), shape)
    }

    /// Opens `name` as a row-addressed table left in the mapped file (see
    /// [`Weights::get_table`]).
    pub fn get_table(&self, name: &str, rows: usize, width: usize) -> Result<MappedTable> {
        self.weights.get_table(&self.path(name), rows, width)
    }

    /// The precision linear layers loaded through this view use.
    pub fn dtype(&self) -> Dtype {
        self.weights.dtype
    }

    /// True when `name` exists under this view.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.path(name))
    }
}

/// A 2-D tensor left in its memory-mapped file and decoded to f32 one row at a time.
pub struct MappedTable {
    map: Arc<Mmap>,
    start: usize,
    dtype: FileDtype,
    elem: usize,
    rows: usize,
    width: usize,
}

impl MappedTable {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds row `index` to `out` (`width` values); `None` when `index` is out of range.
    pub fn add_row_to(&self, index: usize, out: &mut [f32]) -> Option<()> {
        if index >= self.rows || out.len() != self.width {
            return None;
        }
        let bytes = self.width * self.elem;
        let at = self.start + index * bytes;
        let row = &self.map[at..at + bytes];
        match self.dtype {
            FileDtype::F32 => add_decoded(out, row.chunks_exact(4), f32_le),
            FileDtype::F16 => add_decoded(out, row.chunks_exact(2), f16_le),
            _ => add_decoded(out, row.chunks_exact(2), bf16_le),
        }
        Some(())
    }
}

fn add_decoded<'a>(
    out: &mut [f32],
    values: impl Iterator<Item = &'a [u8]>,
    decode: impl Fn(&[u8]) -> f32,
) {
    for (o, v) in out.iter_mut().zip(values) {
        *o += decode(v);
    }
}

/// One little-endian f32.
fn f32_le(c: &[u8]) -> f32 {
    f32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

/// One little-endian f16, widened.
fn f16_le(c: &[u8]) -> f32 {
    half::f16::from_le_bytes([c[0], c[1]]).to_f32()
}

/// One little-endian bf16, widened.
fn bf16_le(c: &[u8]) -> f32 {
    half::bf16::from_le_bytes([c[0], c[1]]).to_f32()
}

fn decode_f32(bytes: &[u8], dtype: FileDtype) -> Option<Vec<f32>> {
    let out = match dtype {
        FileDtype::F32 => bytes.chunks_exact(4).map(f32_le).collect(),
        FileDtype::F16 => bytes.chunks_exact(2).map(f16_le).collect(),
        FileDtype::BF16 => bytes.chunks_exact(2).map(bf16_le).collect(),
        _ => return None,
    };
    Some(out)
}

fn shard_paths(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let bad = |message: String| ModelError::Safetensors {
        path: index.to_path_buf(),
        message,
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    let dir = index.parent().unwrap_or(Path::new("."));
    files
        .into_iter()
        .map(|f| {
            if is_plain_relative(Path::new(f)) {
                Ok(dir.join(f))
            } else {
                Err(bad(format!(
                    "shard file {f:?} is not inside the model folder (an index may only name files by relative paths without '..')"
                )))
            }
        })
        .collect()
}

/// True for a relative path of plain names (no root, no `..`), naming at least one.
fn is_plain_relative(path: &Path) -> bool {
    use std::path::Component;
    path.components().any(|c| matches!(c, Component::Normal(_)))
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_files_must_stay_inside_the_folder() {
        let dir = tempfile_dir();
        let index = dir.join("model.safetensors.index.json");
        for (file, ok) in [
            ("model-00001-of-00002.safetensors", true),
            ("./shards/a.safetensors", true),
            ("../../../etc/passwd", false),
            ("shards/../../x.safetensors", false),
            ("/etc/passwd", false),
            ("", false),
        ] {
            let json = serde_json::json!({"weight_map": {"w": file}});
            std::fs::write(&index, json.to_string()).unwrap();
            let result = shard_paths(&index);
            assert_eq!(result.is_ok(), ok, "{file:?}: {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains("not inside the model folder"), "{e}");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rerank-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
