//! First-stage retrieval: exact inner-product search over an embedded corpus, or BM25.

use half::bf16;
use rayon::prelude::*;
use rerank_models::layers::fastmath::dot;

use crate::error::{Error, Result};

/// Corpus vectors, one row per document, held once in f32 or bf16.
#[derive(Debug, Clone)]
pub struct DenseIndex {
    dim: usize,
    rows: usize,
    data: Storage,
}

#[derive(Debug, Clone)]
enum Storage {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
}

/// Rows scored per parallel task.
const ROWS_PER_TASK: usize = 4096;

impl DenseIndex {
    /// An empty index of `dim`-wide vectors, stored in bf16 when `bf16` (half the memory;
    /// scores move by about 1e-3) else f32.
    pub fn new(dim: usize, bf16: bool) -> Self {
        let data = if bf16 {
            Storage::Bf16(Vec::new())
        } else {
            Storage::F32(Vec::new())
        };
        Self { dim, rows: 0, data }
    }

    /// Appends one document's vector.
    pub fn push(&mut self, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(Error::Input(format!(
                "vector of {} values in an index of width {}",
                vector.len(),
                self.dim
            )));
        }
        match &mut self.data {
            Storage::F32(d) => d.extend_from_slice(vector),
            Storage::Bf16(d) => d.extend(vector.iter().map(|&v| bf16::from_f32(v))),
        }
        self.rows += 1;
        Ok(())
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no document was added.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes the vectors take.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Storage::F32(d) => d.len() * 4,
            Storage::Bf16(d) => d.len() * 2,
        }
    }

    /// The inner product of `query` with every document.
    fn scores(&self, query: &[f32]) -> Vec<f32> {
        let dim = self.dim;
        let mut out = vec![0.0f32; self.rows];
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * ROWS_PER_TASK;
                for (j, score) in chunk.iter_mut().enumerate() {
                    let row = (first + j) * dim;
                    *score = match &self.data {
                        Storage::F32(d) => dot(query, &d[row..row + dim]),
                        Storage::Bf16(d) => d[row..row + dim]
                            .iter()
                            .zip(query)
                            .map(|(a, b)| a.to_f32() * b)
                            .sum(),
                    };
                }
            });
        out
    }

    /// The `k` documents with the highest inner product with `query`: `(row, score)`, best
    /// first (ties: lower row first).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(usize, f32)>> {
        if query.len() != self.dim {
            return Err(Error::Input(format!(
                "query vector of {} values for an index of width {}",
                query.len(),
                self.dim
            )));
        }
        Ok(top_k(self.scores(query), k))
    }
}

/// The best `k` of `scores` as `(index, score)`, best first, ties by lower index.
fn top_k(scores: Vec<f32>, k: usize) -> Vec<(usize, f32)> {
    let better = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut all: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    if k < all.len() {
        all.select_nth_unstable_by(k, better);
        all.truncate(k);
    }
    all.sort_by(better);
    all
}

/// BM25 over a corpus (the `bm25` crate: English stemming and stop words, k1 = 1.2,
/// b = 0.75).
pub struct Bm25Index {
    engine: bm25::SearchEngine<usize>,
}

impl Bm25Index {
    /// Indexes `texts`; documents are identified by their position.
    pub fn new<T: AsRef<str>>(texts: &[T]) -> Self {
        let documents = texts.iter().enumerate().map(|(i, t)| bm25::Document {
            id: i,
            contents: t.as_ref().to_string(),
        });
        let engine =
            bm25::SearchEngineBuilder::<usize>::with_documents(bm25::Language::English, documents)
                .build();
        Self { engine }
    }

    /// The `k` best documents for `query`: `(position, score)`, best first. Documents
    /// sharing no term with the query are not returned.
    pub fn search(&self, query: &str, k: usize) -> Vec<(usize, f32)> {
        self.engine
            .search(query, k)
            .into_iter()
            .map(|r| (r.document.id, r.score))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_search_is_exact_in_f32_and_close_in_bf16() {
        for bf16 in [false, true] {
            let mut index = DenseIndex::new(3, bf16);
            for v in [
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.6, 0.8, 0.0],
                [0.0, 0.0, 1.0],
            ] {
                index.push(&v).unwrap();
            }
            assert_eq!(index.len(), 4);
            let hits = index.search(&[0.8, 0.6, 0.0], 2).unwrap();
            assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2, 0]);
            assert!((hits[0].1 - 0.96).abs() < 1e-2);
            assert!(index.push(&[1.0]).is_err());
            assert!(index.search(&[1.0], 1).is_err());
        }
        assert_eq!(DenseIndex::new(3, true).bytes(), 0);
    }

    #[test]
    fn top_k_orders_ties_by_index() {
        assert_eq!(
            top_k(vec![1.0, 3.0, 3.0, 0.0], 3),
            vec![(1, 3.0), (2, 3.0), (0, 1.0)]
        );
        assert_eq!(top_k(vec![1.0], 5), vec![(0, 1.0)]);
    }

    #[test]
    fn bm25_finds_the_matching_document() {
        let index = Bm25Index::new(&["the giant panda eats bamboo", "Paris is in France", "cats"]);
        let hits = index.search("what do pandas eat?", 2);
        assert_eq!(hits[0].0, 0);
    }
}
