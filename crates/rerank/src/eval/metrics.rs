//! recall@k, MRR@k and nDCG@k exactly as trec_eval (and so pytrec_eval) computes them.
//!
//! A run is ordered as trec_eval orders it: score descending, ties broken by document id
//! descending (byte-wise string order). A document is relevant when its qrels grade is at least
//! 1; documents missing from the qrels are not relevant.
//!
//! - `recall@k`: relevant documents among the first k, divided by all relevant documents of the
//!   query in the qrels (0 when it has none);
//! - `mrr@k`: 1 / rank of the first relevant document among the first k, 0 if none;
//! - `ndcg@k`: DCG@k = Σ grade(rank i) / log2(i + 1) over the first k, divided by the DCG@k of
//!   the qrels' grades sorted best first (0 when the query has no relevant document).
//!
//! The mean of each metric is taken over every query of the qrels (a query missing from the run
//! scores 0).

use std::collections::BTreeMap;

/// Relevance grades: query id → document id → grade.
pub type Qrels = BTreeMap<String, BTreeMap<String, i64>>;
/// Retrieval scores: query id → document id → score (pytrec_eval's run format).
pub type Run = BTreeMap<String, BTreeMap<String, f64>>;
/// Metric name → value.
pub type Metrics = BTreeMap<String, f64>;

/// A metric of [`METRICS`]: what it measures and its cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of the relevant documents found in the top k.
    Recall(usize),
    /// Reciprocal rank of the first relevant document in the top k.
    Mrr(usize),
    /// Normalised discounted cumulative gain of the top k.
    Ndcg(usize),
}

/// The metrics `rerank eval` reports, in table order.
pub const METRICS: [Metric; 6] = [
    Metric::Recall(1),
    Metric::Recall(5),
    Metric::Recall(10),
    Metric::Mrr(1),
    Metric::Mrr(10),
    Metric::Ndcg(10),
];

impl Metric {
    /// Its name: `recall@10`, `mrr@10`, `ndcg@10`.
    pub fn name(self) -> String {
        match self {
            Metric::Recall(k) => format!("recall@{k}"),
            Metric::Mrr(k) => format!("mrr@{k}"),
            Metric::Ndcg(k) => format!("ndcg@{k}"),
        }
    }

    /// Its value for one query: `ranked` is the run's documents in trec_eval order
    /// ([`trec_order`]), `grades` the query's qrels.
    pub fn of_query(self, ranked: &[&str], grades: &BTreeMap<String, i64>) -> f64 {
        let grade = |doc: &str| grades.get(doc).copied().unwrap_or(0);
        let relevant = grades.values().filter(|&&g| g >= 1).count();
        if relevant == 0 {
            return 0.0;
        }
        match self {
            Metric::Recall(k) => {
                let found = ranked.iter().take(k).filter(|d| grade(d) >= 1).count();
                found as f64 / relevant as f64
            }
            Metric::Mrr(k) => ranked
                .iter()
                .take(k)
                .position(|d| grade(d) >= 1)
                .map_or(0.0, |i| 1.0 / (i + 1) as f64),
            Metric::Ndcg(k) => {
                let gains = ranked.iter().take(k).map(|d| grade(d).max(0) as f64);
                let mut ideal: Vec<f64> = grades
                    .values()
                    .filter(|&&g| g >= 1)
                    .map(|&g| g as f64)
                    .collect();
                ideal.sort_by(|a, b| b.total_cmp(a));
                dcg(gains) / dcg(ideal.into_iter().take(k))
            }
        }
    }
}

fn dcg(gains: impl Iterator<Item = f64>) -> f64 {
    gains
        .enumerate()
        .map(|(i, g)| g / ((i + 2) as f64).log2())
        .sum()
}

/// The documents of one query's run in trec_eval's order: score descending, then document id
/// descending.
pub fn trec_order(scores: &BTreeMap<String, f64>) -> Vec<&str> {
    let mut docs: Vec<(&str, f64)> = scores.iter().map(|(d, &s)| (d.as_str(), s)).collect();
    docs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(a.0)));
    docs.into_iter().map(|(d, _)| d).collect()
}

/// Every metric of [`METRICS`] for each query of the qrels.
pub fn per_query(qrels: &Qrels, run: &Run) -> BTreeMap<String, Metrics> {
    let empty = BTreeMap::new();
    qrels
        .iter()
        .map(|(qid, grades)| {
            let ranked = trec_order(run.get(qid).unwrap_or(&empty));
            let metrics = METRICS
                .iter()
                .map(|m| (m.name(), m.of_query(&ranked, grades)))
                .collect();
            (qid.clone(), metrics)
        })
        .collect()
}

/// The mean of every metric of [`METRICS`] over the queries of the qrels.
pub fn evaluate(qrels: &Qrels, run: &Run) -> Metrics {
    let queries = per_query(qrels, run);
    let n = queries.len().max(1) as f64;
    METRICS
        .iter()
        .map(|m| {
            let name = m.name();
            let sum: f64 = queries.values().map(|q| q[&name]).sum();
            (name, sum / n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<T: Copy>(items: &[(&str, T)]) -> BTreeMap<String, T> {
        items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn ties_break_by_document_id_descending() {
        let run = map(&[("a", 1.0), ("b", 2.0), ("c", 1.0), ("d", 0.5)]);
        assert_eq!(trec_order(&run), vec!["b", "c", "a", "d"]);
    }

    #[test]
    fn hand_computed_query() {
        let grades = map(&[("a", 2), ("x", 1), ("b", 0)]);
        let ranked = ["b", "a", "c"];
        assert_eq!(Metric::Recall(1).of_query(&ranked, &grades), 0.0);
        assert_eq!(Metric::Recall(5).of_query(&ranked, &grades), 0.5);
        assert_eq!(Metric::Mrr(1).of_query(&ranked, &grades), 0.0);
        assert_eq!(Metric::Mrr(10).of_query(&ranked, &grades), 0.5);
        let ndcg = (2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((Metric::Ndcg(10).of_query(&ranked, &grades) - ndcg).abs() < 1e-15);
        assert_eq!(Metric::Ndcg(10).of_query(&ranked, &map(&[("a", 0)])), 0.0);
    }
}
