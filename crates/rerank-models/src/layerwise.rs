//! The speed knobs of the layerwise LLM rerankers: which layers score (`cutoff_layers`) and
//! how much the passage is compressed on the way (`compress_ratio` at `compress_layers`), with
//! FlagEmbedding's names and checks.
//!
//! A model says what it takes ([`LayerSupport`]); a call asks ([`LayerRequest`]); the check
//! turns the request into a [`LayerPlan`] the model runs, or a message naming the bad value.

/// What one scoring call asks of a layerwise model; `None` = the model's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerRequest {
    /// Layers whose hidden state is scored (FlagEmbedding's `cutoff_layers`), ascending.
    pub cutoff_layers: Option<Vec<usize>>,
    /// Passage tokens averaged into one (1, 2, 4 or 8; 1 = off).
    pub compress_ratio: Option<usize>,
    /// Layers before which the passage is compressed (index 0 and layers at or past the
    /// deepest cutoff are ignored, as in FlagEmbedding).
    pub compress_layers: Option<Vec<usize>>,
}

impl LayerRequest {
    /// The names of the options that are set (for errors on models that take none).
    pub fn set_names(&self) -> Vec<&'static str> {
        [
            ("cutoff_layers", self.cutoff_layers.is_some()),
            ("compress_ratio", self.compress_ratio.is_some()),
            ("compress_layers", self.compress_layers.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// The compression ratios FlagEmbedding's lightweight reranker supports.
pub const COMPRESS_RATIOS: [usize; 4] = [1, 2, 4, 8];

/// The layers a model can score from and whether it compresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSupport {
    /// Layers a cutoff may name: `first..=last` in steps of `step`.
    pub first: usize,
    /// The deepest layer (the model's layer count).
    pub last: usize,
    /// Distance between scorable layers.
    pub step: usize,
    /// Whether `compress_ratio` / `compress_layers` are taken.
    pub compress: bool,
    /// The model's default `compress_layers` (used when a ratio is given without layers).
    pub default_compress_layers: Vec<usize>,
}

/// A checked request: what the model runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// Layers to score, strictly ascending; the model stops after the last.
    pub cutoffs: Vec<usize>,
    /// Passage tokens averaged into one (1 = no compression).
    pub compress_ratio: usize,
    /// Layers before which the passage is compressed (ascending, none ≥ the last cutoff, no 0).
    pub compress_layers: Vec<usize>,
}

impl LayerPlan {
    /// One score at `layer`, nothing compressed.
    pub fn single(layer: usize) -> Self {
        Self {
            cutoffs: vec![layer],
            compress_ratio: 1,
            compress_layers: Vec::new(),
        }
    }

    /// The deepest cutoff: layers past it are not run.
    pub fn deepest(&self) -> usize {
        self.cutoffs.last().copied().unwrap_or(0)
    }

    /// True when the passage is compressed before layer `index`.
    pub fn compresses_before(&self, index: usize) -> bool {
        self.compress_ratio > 1 && self.compress_layers.contains(&index)
    }
}

impl LayerSupport {
    /// The layers a cutoff may name.
    pub fn scorable(&self) -> impl Iterator<Item = usize> + '_ {
        (self.first..=self.last).step_by(self.step.max(1))
    }

    /// Checks `request` against what the model takes and returns the plan to run, or a
    /// one-line message naming the bad value.
    pub fn plan(&self, request: &LayerRequest) -> Result<LayerPlan, String> {
        let cutoffs = match &request.cutoff_layers {
            None => vec![self.last],
            Some(list) => self.check_cutoffs(list)?,
        };
        let deepest = *cutoffs.last().unwrap_or(&self.last);
        let compressing = request.compress_ratio.is_some() || request.compress_layers.is_some();
        if compressing && !self.compress {
            return Err("this model takes no compress_ratio / compress_layers".into());
        }
        let ratio = request.compress_ratio.unwrap_or(1);
        if !COMPRESS_RATIOS.contains(&ratio) {
            return Err(format!(
                "compress_ratio {ratio} is not supported; use 1, 2, 4 or 8"
            ));
        }
        // FlagEmbedding's default layers apply wherever they fall inside the model; layers a
        // call names must be inside it when they compress anything.
        let layers = match &request.compress_layers {
            Some(layers) if ratio > 1 => {
                if let Some(&bad) = layers.iter().find(|&&l| l >= self.last) {
                    return Err(format!(
                        "compress_layers value {bad} is out of range: the model has {} \
                         layers, so a compression goes before layer 1..{}",
                        self.last,
                        self.last - 1
                    ));
                }
                layers.clone()
            }
            Some(layers) => layers.clone(),
            None => self.default_compress_layers.clone(),
        };
        let mut compress_layers: Vec<usize> = layers
            .into_iter()
            .filter(|&l| l != 0 && l < deepest)
            .collect();
        compress_layers.sort_unstable();
        compress_layers.dedup();
        Ok(LayerPlan {
            cutoffs,
            compress_ratio: ratio,
            compress_layers: if ratio > 1 {
                compress_layers
            } else {
                Vec::new()
            },
        })
    }

    fn check_cutoffs(&self, list: &[usize]) -> Result<Vec<usize>, String> {
        if list.is_empty() {
            return Err("cutoff_layers is empty; name at least one layer".into());
        }
        if let Some(&bad) = list.iter().find(|&&l| !self.scorable().any(|s| s == l)) {
            let range = if self.step > 1 {
                format!("{}..={} in steps of {}", self.first, self.last, self.step)
            } else {
                format!("{}..={}", self.first, self.last)
            };
            return Err(format!(
                "cutoff_layers value {bad} is out of range: this model scores layers {range}"
            ));
        }
        if list.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "cutoff_layers {list:?} must be ascending without repeats (FlagEmbedding \
                 pairs an unsorted list's layers with other layers' heads)"
            ));
        }
        Ok(list.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minicpm() -> LayerSupport {
        LayerSupport {
            first: 8,
            last: 40,
            step: 1,
            compress: false,
            default_compress_layers: Vec::new(),
        }
    }

    fn lightweight() -> LayerSupport {
        LayerSupport {
            first: 8,
            last: 42,
            step: 1,
            compress: true,
            default_compress_layers: vec![8],
        }
    }

    fn cutoffs(list: &[usize]) -> LayerRequest {
        LayerRequest {
            cutoff_layers: Some(list.to_vec()),
            ..LayerRequest::default()
        }
    }

    #[test]
    fn default_is_the_last_layer_uncompressed() {
        let plan = minicpm().plan(&LayerRequest::default()).unwrap();
        assert_eq!(plan, LayerPlan::single(40));
        let plan = lightweight().plan(&LayerRequest::default()).unwrap();
        assert_eq!(plan, LayerPlan::single(42));
    }

    #[test]
    fn cutoffs_must_be_in_range_and_ascending() {
        assert_eq!(
            minicpm().plan(&cutoffs(&[8, 28, 40])).unwrap().cutoffs,
            [8, 28, 40]
        );
        let err = minicpm().plan(&cutoffs(&[7])).unwrap_err();
        assert!(
            err.contains("value 7 is out of range") && err.contains("8..=40"),
            "{err}"
        );
        assert!(minicpm().plan(&cutoffs(&[41])).is_err());
        assert!(minicpm().plan(&cutoffs(&[])).unwrap_err().contains("empty"));
        assert!(minicpm()
            .plan(&cutoffs(&[28, 8]))
            .unwrap_err()
            .contains("ascending"));
        assert!(minicpm().plan(&cutoffs(&[8, 8])).is_err());
        let stepped = LayerSupport {
            step: 4,
            ..minicpm()
        };
        assert!(stepped.plan(&cutoffs(&[12])).is_ok());
        assert!(stepped
            .plan(&cutoffs(&[13]))
            .unwrap_err()
            .contains("steps of 4"));
    }

    #[test]
    fn compression_is_checked_and_trimmed_to_the_cutoff() {
        let req = LayerRequest {
            cutoff_layers: Some(vec![28]),
            compress_ratio: Some(2),
            compress_layers: Some(vec![40, 24, 0, 24]),
        };
        let plan = lightweight().plan(&req).unwrap();
        assert_eq!(plan.compress_layers, [24]);
        assert!(plan.compresses_before(24) && !plan.compresses_before(40));
        let ratio_only = LayerRequest {
            compress_ratio: Some(4),
            ..LayerRequest::default()
        };
        assert_eq!(
            lightweight().plan(&ratio_only).unwrap().compress_layers,
            [8]
        );
        let bad_ratio = LayerRequest {
            compress_ratio: Some(3),
            ..LayerRequest::default()
        };
        assert!(lightweight()
            .plan(&bad_ratio)
            .unwrap_err()
            .contains("1, 2, 4 or 8"));
        let bad_layer = LayerRequest {
            compress_ratio: Some(2),
            compress_layers: Some(vec![42]),
            ..LayerRequest::default()
        };
        assert!(lightweight().plan(&bad_layer).unwrap_err().contains("42"));
        assert!(minicpm()
            .plan(&ratio_only)
            .unwrap_err()
            .contains("no compress"));
        // Ratio 1 compresses nothing, whatever the layers.
        let off = LayerRequest {
            compress_ratio: Some(1),
            compress_layers: Some(vec![10]),
            ..LayerRequest::default()
        };
        assert!(lightweight().plan(&off).unwrap().compress_layers.is_empty());
    }

    #[test]
    fn set_names_lists_what_is_set() {
        assert_eq!(cutoffs(&[1]).set_names(), ["cutoff_layers"]);
        assert!(LayerRequest::default().set_names().is_empty());
    }
}
