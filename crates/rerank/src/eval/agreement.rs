//! How closely two lists of scores agree (`rerank validate`): seed 000's `eval_metric` (max and
//! mean absolute difference) and the ranking measures beside it.

use std::ops::Range;

/// Agreement of scores `a` with reference scores `b`, pair by pair and query by query.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Agreement {
    /// Pairs compared.
    pub pairs: usize,
    /// Query groups with at least two pairs (the ranking measures' base).
    pub queries: usize,
    /// max |a − b|.
    pub max_abs_diff: f64,
    /// mean |a − b|.
    pub mean_abs_diff: f64,
    /// Pearson correlation of all pairs' scores (numpy's `corrcoef`); 1 when both are constant
    /// and equal, 0 when only one is constant.
    pub pearson: f64,
    /// Kendall's τ-b of each query group's ranking (scipy's `kendalltau`), averaged over groups.
    pub kendall_tau: f64,
    /// Share of query groups whose best pair is the same.
    pub top1_agreement: f64,
}

/// Compares `a` with `b` (same length, same order); `groups` are the row ranges of each query.
pub fn agreement(a: &[f64], b: &[f64], groups: &[Range<usize>]) -> Agreement {
    assert_eq!(a.len(), b.len(), "score lists of different lengths");
    let n = a.len().max(1) as f64;
    let diffs = a.iter().zip(b).map(|(x, y)| (x - y).abs());
    let ranked: Vec<Range<usize>> = groups.iter().filter(|g| g.len() >= 2).cloned().collect();
    let taus: Vec<f64> = ranked
        .iter()
        .map(|g| kendall_tau_b(&a[g.clone()], &b[g.clone()]))
        .collect();
    let same_top = ranked
        .iter()
        .filter(|g| argmax(&a[(*g).clone()]) == argmax(&b[(*g).clone()]))
        .count();
    let groups_n = ranked.len().max(1) as f64;
    Agreement {
        pairs: a.len(),
        queries: ranked.len(),
        max_abs_diff: diffs.clone().fold(0.0, f64::max),
        mean_abs_diff: diffs.sum::<f64>() / n,
        pearson: pearson(a, b),
        kendall_tau: if taus.is_empty() {
            1.0
        } else {
            taus.iter().sum::<f64>() / groups_n
        },
        top1_agreement: if ranked.is_empty() {
            1.0
        } else {
            same_top as f64 / groups_n
        },
    }
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

/// Pearson's r.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.is_empty() {
        return 1.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    match (saa == 0.0, sbb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => sab / (saa * sbb).sqrt(),
    }
}

/// Kendall's τ-b (ties in either list counted as scipy does); 1 for fewer than two items.
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> f64 {
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let (da, db) = (a[i] - a[j], b[i] - b[j]);
            match (da == 0.0, db == 0.0) {
                (true, true) => {}
                (true, false) => ties_a += 1,
                (false, true) => ties_b += 1,
                _ if (da > 0.0) == (db > 0.0) => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let n_a = (concordant + discordant + ties_a) as f64;
    let n_b = (concordant + discordant + ties_b) as f64;
    if n_a == 0.0 || n_b == 0.0 {
        return 1.0;
    }
    (concordant - discordant) as f64 / (n_a * n_b).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from numpy 2.4.6 / scipy 1.17.1 on the same numbers.
    #[test]
    fn equals_numpy_and_scipy() {
        let a = [0.1, 0.5, -1.2, 2.0, 2.0, 0.3, 0.9];
        let b = [0.12, 0.45, -1.0, 2.1, 1.9, 0.3, 1.5];
        let m = agreement(&a, &b, &[0..4, 4..7]);
        assert!((m.max_abs_diff - 0.6).abs() < 1e-12);
        assert!((m.mean_abs_diff - 0.15285714285714286).abs() < 1e-12);
        assert!((m.pearson - 0.9775360848958041).abs() < 1e-12);
        assert_eq!(m.kendall_tau, 1.0);
        assert_eq!(m.top1_agreement, 1.0);
        assert_eq!((m.pairs, m.queries), (7, 2));
        let tau = kendall_tau_b(&[1.0, 1.0, 2.0, 3.0], &[1.0, 2.0, 2.0, 3.0]);
        assert!((tau - 0.7999999999999999).abs() < 1e-12);
    }

    #[test]
    fn disagreement_shows() {
        let whole = [std::ops::Range { start: 0, end: 3 }];
        let m = agreement(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0], &whole);
        assert_eq!(m.kendall_tau, -1.0);
        assert_eq!(m.top1_agreement, 0.0);
        assert!((m.pearson + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
    }
}
