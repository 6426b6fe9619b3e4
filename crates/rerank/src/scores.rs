//! Turning logits into what users see: sigmoid, sorting, top-n.

/// `1 / (1 + e^-x)` in f32, as `torch.sigmoid` on an f32 tensor.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Indices of `scores` sorted by score, highest first (ties keep input order), cut to `top_n`.
pub fn ranking(scores: &[f32], top_n: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(top_n.unwrap_or(order.len()));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_values() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(6.182_112) - 0.997_938_3).abs() < 1e-6);
        assert!(sigmoid(-100.0) >= 0.0);
    }

    #[test]
    fn ranking_sorts_desc_and_cuts() {
        let s = [0.1, 3.0, -2.0, 3.0];
        assert_eq!(ranking(&s, None), vec![1, 3, 0, 2]);
        assert_eq!(ranking(&[1.0, 2.0, 0.0], Some(2)), vec![1, 0]);
        assert_eq!(ranking(&[1.0], Some(5)), vec![0]);
    }
}
