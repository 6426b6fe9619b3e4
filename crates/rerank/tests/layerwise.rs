//! Parity with FlagEmbedding 1.4.2's layerwise LLM rerankers on the committed tiny
//! random-weight models:
//!
//! - `minicpm-tiny`: `LayerWiseFlagLLMReranker` (bge-reranker-v2-minicpm-layerwise), made by
//!   `scripts/reference/make_layerwise_fixtures.py` under transformers 4.57.6;
//! - `gemma2-tiny`: `LightWeightFlagLLMReranker` (bge-reranker-v2.5-gemma2-lightweight), made by
//!   `scripts/reference/make_lightweight_fixtures.py` under transformers 4.46.0.
//!
//! Every case the reference scored with a strictly ascending list of valid cutoffs must give
//! equal token ids and the same scores at every layer (raw and sigmoid); the cases where
//! FlagEmbedding silently drops or re-pairs cutoffs must be refused with a message.

mod common;

use common::SCORE_TOLERANCE;
use rerank::{Dtype, ModelKind, Reranker, ScoreOptions};
use rerank_fixtures::{layer_reference, max_abs_diff, model_dir, LayerCase};

const MINICPM: &str = "minicpm-tiny";
const GEMMA2: &str = "gemma2-tiny";

fn load(model: &str, softcap: bool) -> Reranker {
    Reranker::load_dir_with(model, &model_dir(model), Dtype::F32, softcap).expect("load fixture")
}

/// The options a case was scored with; `cutoffs` replaces the case's own list.
fn options(case: &LayerCase, normalize: bool, cutoffs: Option<Vec<usize>>) -> ScoreOptions {
    ScoreOptions {
        normalize,
        max_length: case.max_length,
        query_max_length: case.query_max_length,
        prompt: case.prompt.clone(),
        cutoff_layers: cutoffs,
        compress_ratio: case.compress_ratio,
        compress_layers: case.compress_layers.clone(),
        ..ScoreOptions::default()
    }
}

/// True when FlagEmbedding scored the list as given: ascending, no repeats, none dropped.
fn taken_as_given(case: &LayerCase) -> bool {
    case.cutoff_layers
        .as_ref()
        .is_none_or(|list| *list == case.layers)
}

fn assert_lists_close(name: &str, what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    assert_eq!(got.len(), want.len(), "{name}: number of layers ({what})");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| max_abs_diff(g, w))
        .fold(0.0, f32::max);
    assert!(worst <= SCORE_TOLERANCE, "{name}: {what} diff {worst}");
    worst
}

/// Ids, raw and sigmoid scores of every case scored as given; returns the cases checked.
fn check_parity(model: &str, reranker: &Reranker) -> usize {
    let reference = layer_reference(model);
    assert_eq!(reference.model, model);
    let mut checked = 0;
    for case in reference.cases.iter().filter(|c| taken_as_given(c)) {
        let opts = options(case, false, case.cutoff_layers.clone());
        let limits = reranker.check_options(&opts).expect("options");
        let encoded = reranker
            .encode_pairs_with(&case.pairs, &limits, &opts.prompt_options())
            .expect("encode");
        for (i, (got, want)) in encoded.iter().zip(&case.input_ids).enumerate() {
            assert_eq!(&got.ids, want, "{}: input ids of pair {i}", case.name);
            if let (Some(q), Some(p)) = (&case.query_lengths, case.prompt_length) {
                let span = got.span.expect("LLM pairs carry their span");
                assert_eq!((span.head, span.tail), (q[i], p), "{}: span {i}", case.name);
            }
        }
        let raw = reranker
            .compute_score_layers(&case.pairs, &opts)
            .expect("score");
        assert_eq!(raw.layers, case.layers, "{}: layers", case.name);
        let normalized = reranker
            .compute_score_layers(
                &case.pairs,
                &options(case, true, case.cutoff_layers.clone()),
            )
            .expect("score normalized");
        let r = assert_lists_close(&case.name, "raw", &raw.scores, &case.scores.lists());
        let n = assert_lists_close(
            &case.name,
            "sigmoid",
            &normalized.scores,
            &case.normalized.lists(),
        );
        println!(
            "{model} {:<36} layers {:?}  max|raw-ref| {r:.2e}  max|sigmoid-ref| {n:.2e}",
            case.name, case.layers
        );
        checked += 1;
    }
    checked
}

#[test]
fn minicpm_matches_layerwise_flag_llm_reranker() {
    let reranker = load(MINICPM, false);
    assert_eq!(reranker.kind(), ModelKind::MiniCpmLayerwise);
    assert_eq!(check_parity(MINICPM, &reranker), 5);
}

#[test]
fn gemma2_matches_lightweight_flag_llm_reranker() {
    let reranker = load(GEMMA2, false);
    assert_eq!(reranker.kind(), ModelKind::Gemma2Lightweight);
    assert!(check_parity(GEMMA2, &reranker) >= 9);
}

/// With the switch, the attention logits are soft-capped as transformers' eager attention
/// does; the reference recorded those scores too.
#[test]
fn gemma2_attention_softcap_matches_eager_attention() {
    let reranker = load(GEMMA2, true);
    let reference = layer_reference(GEMMA2);
    let mut checked = 0;
    for case in reference.cases.iter().filter(|c| taken_as_given(c)) {
        let Some(eager) = &case.scores_attn_softcap else {
            continue;
        };
        let opts = options(case, false, case.cutoff_layers.clone());
        let got = reranker.compute_score_layers(&case.pairs, &opts).unwrap();
        assert_lists_close(&case.name, "eager raw", &got.scores, &eager.lists());
        let sdpa = case.scores.lists();
        let moved = max_abs_diff(&got.scores[0], &sdpa[0]);
        assert!(
            moved > 1e-3,
            "{}: the cap changes scores ({moved})",
            case.name
        );
        checked += 1;
    }
    assert!(checked >= 5);
}

/// The cases where FlagEmbedding drops out-of-range cutoffs or pairs an unsorted list with
/// other layers' heads are refused; the ascending list of the layers it did score gives its
/// scores wherever its head choice is the layer's own.
#[test]
fn unsorted_repeated_or_out_of_range_cutoffs_are_refused() {
    for model in [MINICPM, GEMMA2] {
        let reranker = load(model, false);
        let reference = layer_reference(model);
        for case in reference.cases.iter().filter(|c| !taken_as_given(c)) {
            let opts = options(case, false, case.cutoff_layers.clone());
            let err = reranker
                .compute_score_layers(&case.pairs, &opts)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("out of range") || err.contains("ascending"),
                "{model} {}: {err}",
                case.name
            );
            assert_eq!(err.lines().count(), 1, "one-line message: {err}");
        }
    }
    // Gemma-2 picks heads by rank among the sorted cutoffs: [6, 1, 4] scored like [4, 6].
    let reranker = load(GEMMA2, false);
    let reference = layer_reference(GEMMA2);
    let case = reference
        .cases
        .iter()
        .find(|c| c.name == "multi-cut-unsorted")
        .expect("case");
    let opts = options(case, false, Some(case.layers.clone()));
    let got = reranker.compute_score_layers(&case.pairs, &opts).unwrap();
    assert_lists_close(&case.name, "sorted", &got.scores, &case.scores.lists());
}

#[test]
fn compute_score_and_rank_need_exactly_one_cutoff() {
    let reranker = load(MINICPM, false);
    let pairs = [("what is panda?", "hi"), ("what is panda?", "a bear")];
    let several = ScoreOptions {
        cutoff_layers: Some(vec![2, 6]),
        ..ScoreOptions::default()
    };
    let err = reranker.compute_score(&pairs, &several).unwrap_err();
    assert!(err.to_string().contains("exactly one"), "{err}");
    let err = reranker
        .rank("what is panda?", &["hi"], None, &several)
        .unwrap_err();
    assert!(err.to_string().contains("exactly one"), "{err}");
    // One cutoff: the same scores as the matching list of a multi-layer call.
    let both = reranker.compute_score_layers(&pairs, &several).unwrap();
    let one = ScoreOptions {
        cutoff_layers: Some(vec![2]),
        ..ScoreOptions::default()
    };
    let at2 = reranker.compute_score(&pairs, &one).unwrap();
    assert!(max_abs_diff(&at2, &both.scores[0]) < 1e-5);
    let ranked = reranker
        .rank("what is panda?", &["hi", "a bear"], None, &one)
        .unwrap();
    assert_eq!(ranked.len(), 2);
    assert!((ranked[0].score - at2.iter().cloned().fold(f32::MIN, f32::max)).abs() < 1e-6);
}

#[test]
fn options_a_model_does_not_take_name_themselves() {
    let minicpm = load(MINICPM, false);
    let compress = ScoreOptions {
        compress_ratio: Some(2),
        ..ScoreOptions::default()
    };
    let err = minicpm.compute_score(&[("q", "p")], &compress).unwrap_err();
    assert!(err.to_string().contains("compress"), "{err}");
    let gemma2 = load(GEMMA2, false);
    let bad_ratio = ScoreOptions {
        compress_ratio: Some(3),
        ..ScoreOptions::default()
    };
    let err = gemma2.compute_score(&[("q", "p")], &bad_ratio).unwrap_err();
    assert!(err.to_string().contains("1, 2, 4 or 8"), "{err}");
    let encoder = Reranker::load_dir("xlmr-tiny", &model_dir("xlmr-tiny")).unwrap();
    let cutoff = ScoreOptions {
        cutoff_layers: Some(vec![1]),
        ..ScoreOptions::default()
    };
    let err = encoder.compute_score(&[("q", "p")], &cutoff).unwrap_err();
    assert!(err.to_string().contains("`cutoff_layers`"), "{err}");
    assert!(minicpm.model_options().contains(&"cutoff_layers"));
    assert!(!minicpm.model_options().contains(&"compress_ratio"));
    assert!(gemma2.model_options().contains(&"compress_layers"));
}

/// Packing pairs of different lengths, compressed, into one batch gives the scores of one
/// pair at a time, to float noise: batched, a query's passages share one run of its prompt
/// head, so the GEMMs see other row counts and round a few sums differently (measured: 1.4e-5
/// on logits up to 7.4; the decoder's unit test shows the shared arithmetic itself is exact).
#[test]
fn batch_size_does_not_change_compressed_scores() {
    let reranker = load(GEMMA2, false);
    let reference = layer_reference(GEMMA2);
    let case = reference
        .cases
        .iter()
        .find(|c| c.name == "cut6-r4-c2-4")
        .expect("case");
    let opts = options(case, false, case.cutoff_layers.clone());
    let one = ScoreOptions {
        batch_size: 1,
        ..opts.clone()
    };
    let a = reranker.compute_score(&case.pairs, &one).unwrap();
    let b = reranker.compute_score(&case.pairs, &opts).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-4, "{a:?} vs {b:?}");
}
