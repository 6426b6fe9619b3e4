#!/usr/bin/env python3
"""Build the benchmark model folder: a random-weight XLMRobertaForSequenceClassification with the
REAL bge-reranker-base configuration, the real XLM-R tokenizer, and its ONNX exports.

Writes (default folder target/bench-model/, never committed; ~3.5 GB in all):
  config.json, model.safetensors      f32 weights (~1.1 GB), seeded N(0, 0.02) init (transformers')
  tokenizer.json, tokenizer_config.json, special_tokens_map.json   from shared/data/xlm-roberta-tokenizer
  model.onnx                          torch.onnx.export (TorchScript exporter), opset 17,
                                      inputs input_ids/attention_mask [batch, sequence] (int64),
                                      output logits [batch, 1]
  model.opt.onnx                      onnxruntime.transformers.optimizer (model_type='bert'):
                                      fused Attention / SkipLayerNormalization / BiasGelu
  model.int8.onnx                     onnxruntime.quantization.quantize_dynamic of model.opt.onnx
                                      (or model.onnx with --no-optimize): QInt8 weights, u8 activations
  bench-model.json                    what was built, with which versions, and how long each step took

Random weights are fine for speed: the work per token does not depend on the values.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# BAAI/bge-reranker-base config.json (transformers-specific bookkeeping keys left to save_pretrained)
BGE_RERANKER_BASE = {
    "architectures": ["XLMRobertaForSequenceClassification"],
    "model_type": "xlm-roberta",
    "attention_probs_dropout_prob": 0.1,
    "bos_token_id": 0,
    "classifier_dropout": None,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "output_past": True,
    "pad_token_id": 1,
    "position_embedding_type": "absolute",
    "type_vocab_size": 1,
    "use_cache": True,
    "vocab_size": 250002,
}

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def log(msg):
    print(f"[make_model] {msg}", flush=True)


def patch_config(path: Path):
    """Record the transformers version of BAAI's own config.json (4.30.0) instead of the one that
    saved it: transformers 4.57.3+ prints a spurious "incorrect regex pattern ... fix_mistral_regex"
    warning when loading the tokenizer of any local folder whose config says 4.57.3 <= v < 5."""
    cfg = json.loads(path.read_text())
    cfg["transformers_version"] = "4.30.0"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build_torch(out: Path, seed: int, layers: int):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    cfg = dict(BGE_RERANKER_BASE)
    cfg["num_hidden_layers"] = layers
    config = XLMRobertaConfig(**cfg)
    torch.manual_seed(seed)
    model = XLMRobertaForSequenceClassification(config).eval()  # _init_weights: N(0, 0.02), LN=1/0
    assert model.dtype == torch.float32
    model.save_pretrained(out, safe_serialization=True)
    patch_config(out / "config.json")
    for name in TOKENIZER_FILES:
        shutil.copyfile(common.TOKENIZER_DIR / name, out / name)
    return model


def export_onnx(model, out: Path, opset: int):
    import torch

    tok = common.load_tokenizer(out)
    enc = tok(["what is panda?", "hello"], ["The giant panda is a bear species endemic to China.", "hi"],
              padding=True, return_tensors="pt")
    inputs = (enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        torch.onnx.export(
            model, inputs, str(out / "model.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch"}},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
        ref = model(input_ids=inputs[0], attention_mask=inputs[1]).logits.numpy()
    return {"input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()}, ref


def optimize_onnx(out: Path, layers_cfg):
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(out / "model.onnx"), model_type="bert", num_heads=layers_cfg["num_attention_heads"],
                         hidden_size=layers_cfg["hidden_size"], opt_level=0, use_gpu=False)
    stats = opt.get_fused_operator_statistics()
    opt.save_model_to_file(str(out / "model.opt.onnx"))
    return {k: v for k, v in stats.items() if v}


def quantize(src: Path, dst: Path, per_channel: bool):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # DefaultTensorType: shape inference cannot type the outputs of the com.microsoft fused ops
    # (Attention, SkipLayerNormalization) of model.opt.onnx; they are all float32.
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def check_onnx(path: Path, feeds, ref):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {k: v.astype(np.int64) for k, v in feeds.items()})[0]
    return float(np.abs(got - ref).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=common.DEFAULT_MODEL_DIR, help="model folder [target/bench-model]")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--layers", type=int, default=12, help="encoder layers (12 = bge-reranker-base; "
                    "fewer only to test this script quickly)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-onnx", action="store_true", help="safetensors + tokenizer only")
    ap.add_argument("--no-optimize", action="store_true", help="skip onnxruntime.transformers.optimizer; "
                    "int8 is then quantized from the plain export")
    ap.add_argument("--per-channel", action="store_true", help="quantize_dynamic per_channel=True "
                    "(default per-tensor)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    manifest = {"config": "BAAI/bge-reranker-base" if args.layers == 12 else f"bge-reranker-base with {args.layers} layers",
                "seed": args.seed, "init": "transformers _init_weights: normal(0, 0.02), LayerNorm 1/0",
                "dtype": "float32", "files": {}}

    t0 = time.perf_counter()
    model = build_torch(out, args.seed, args.layers)
    timings["torch model + safetensors"] = time.perf_counter() - t0
    log(f"model.safetensors written in {timings['torch model + safetensors']:.1f} s")

    if not args.no_onnx:
        t0 = time.perf_counter()
        feeds, ref = export_onnx(model, out, args.opset)
        timings["onnx export"] = time.perf_counter() - t0
        log(f"model.onnx written in {timings['onnx export']:.1f} s")
        del model
        manifest["files"]["model.onnx"] = {"max_abs_diff_vs_torch": check_onnx(out / "model.onnx", feeds, ref)}

        src = out / "model.onnx"
        if not args.no_optimize:
            t0 = time.perf_counter()
            try:
                fused = optimize_onnx(out, BGE_RERANKER_BASE)
                timings["onnx optimize"] = time.perf_counter() - t0
                log(f"model.opt.onnx written in {timings['onnx optimize']:.1f} s; fused: {fused}")
                manifest["files"]["model.opt.onnx"] = {
                    "fused_ops": fused,
                    "max_abs_diff_vs_torch": check_onnx(out / "model.opt.onnx", feeds, ref)}
                src = out / "model.opt.onnx"
            except Exception as e:  # noqa: BLE001 — the plain export still works with ORT_ENABLE_ALL
                log(f"onnxruntime.transformers.optimizer failed ({type(e).__name__}: {e}); "
                    "int8 will be quantized from model.onnx")
                (out / "model.opt.onnx").unlink(missing_ok=True)

        t0 = time.perf_counter()
        quantize(src, out / "model.int8.onnx", args.per_channel)
        timings["int8 quantize_dynamic"] = time.perf_counter() - t0
        log(f"model.int8.onnx written in {timings['int8 quantize_dynamic']:.1f} s (from {src.name})")
        manifest["files"]["model.int8.onnx"] = {
            "from": src.name, "weight_type": "QInt8", "per_channel": args.per_channel,
            "max_abs_diff_vs_torch": check_onnx(out / "model.int8.onnx", feeds, ref)}

    import onnxruntime
    import transformers

    manifest["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "onnxruntime": onnxruntime.__version__}
    try:
        import onnx

        manifest["versions"]["onnx"] = onnx.__version__
    except ImportError:
        pass
    for f in sorted(out.iterdir()):
        manifest["files"].setdefault(f.name, {})["bytes"] = f.stat().st_size
    manifest["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (out / "bench-model.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"done: {out} (total {sum(timings.values()):.1f} s)")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
