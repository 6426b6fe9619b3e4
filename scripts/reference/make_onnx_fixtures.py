#!/usr/bin/env python3
"""Build the ONNX fixtures under tests/fixtures/onnx/ (see scripts/reference/README.md).

Exports the committed tiny rerankers (tests/fixtures/xlmr-tiny, tests/fixtures/bert-tiny, loaded
from their bf16 / f16 files, i.e. upcast to f32) to ONNX with optimum's exporter and records what
ONNX Runtime (CPUExecutionProvider, 1 thread) returns on the 38 pairs of case "flag-512" of
tests/fixtures/{xlmr,bert}-tiny.reference.json, fed the ids recorded there.

Writes (each folder: the exported graph + the tokenizer files of the source fixture, byte for byte):
  onnx/xlmr-tiny-dynamic/        model.onnx.gz: dynamic [batch, sequence], f32, weights inline
  onnx/xlmr-tiny-static-b2-s512/ onnx/model.onnx.gz + onnx/model.onnx_data.gz: static [2, 512],
                                 f32, optimum --optimize O1, weights as EXTERNAL DATA; ort_config.json
  onnx/bert-tiny-dynamic/        model.onnx.gz: dynamic, f32, inputs incl. token_type_ids
  onnx/bert-tiny-int8/           model.onnx.gz: quantize_dynamic(bert-tiny-dynamic, QInt8)
  onnx/bert-tiny-fp16/           model.onnx.gz: optimum --dtype fp16 (f16 weights, f16 logits)
  onnx/reference.json            per export: graph inputs/outputs, ids fed, ORT logits, deviations

Every *.gz is gzip(mtime=0, no name) of the file without .gz: gunzip in place into a temp folder
(the static export keeps its graph under onnx/, so the copy must recurse). Deterministic: re-running
in the same environment (requirements.txt + requirements-onnx.txt) rewrites identical files.

ONNX Runtime 1.31 / 1.32 refuse to load the O1-optimized static graph with default session options
(see loads_with_defaults); reference.json records that and the config entry that makes it load.
"""

import gzip
import importlib.metadata as md
import json
import logging
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import FIX, gzip_bytes, materialize, write_json  # noqa: E402

GENERATOR = "scripts/reference/make_onnx_fixtures.py"
OUT = FIX / "onnx"
CASE = "flag-512"
STATIC_BATCH, STATIC_SEQ = 2, 512
CHECK_BATCH = 8  # dynamic exports: also run in batches of 8, right-padded to the batch's longest

torch.set_num_threads(1)

TOKENIZER_FILES = {
    "xlmr-tiny": ["tokenizer.json.gz", "tokenizer_config.json", "special_tokens_map.json"],
    "bert-tiny": ["tokenizer.json.gz", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"],
}
PAD_ID = {"xlmr-tiny": 1, "bert-tiny": 0}


def versions():
    import onnx
    import onnxruntime
    import transformers

    v = {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
         "onnxruntime": onnxruntime.__version__}
    for pkg in ("optimum", "optimum-onnx"):
        v[pkg] = md.version(pkg)
    return v


# --------------------------------------------------------------------------------------------
# exports


def optimum_export(src: Path, out: Path, **kw):
    from optimum.exporters.onnx import main_export

    main_export(str(src), output=str(out), task="text-classification", monolith=True, device="cpu",
                do_validation=True, **kw)
    return out


def resave_external(src_onnx: Path, dst_onnx: Path, data_name: str):
    import onnx

    m = onnx.load(str(src_onnx))
    dst_onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(m, str(dst_onnx), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024, convert_attribute=False)


def quantize_int8(src: Path, dst: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False)


def write_folder(name: str, source: str, graph_files: dict, extra_files: dict):
    """graph_files / extra_files: {relative dst path: src Path}; graphs are gzipped."""
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for rel, src in graph_files.items():
        p = d / (rel + ".gz")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gzip_bytes(src.read_bytes()))
    for rel, src in extra_files.items():
        shutil.copyfile(src, d / rel)
    for f in TOKENIZER_FILES[source]:
        shutil.copyfile(FIX / source / f, d / f)
    return d


# --------------------------------------------------------------------------------------------
# running


def ort_session(path: Path, config=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def loads_with_defaults(path: Path):
    """ORT >= 1.31 (not 1.22) refuses the O1-optimized static graph at the default level
    (ORT_ENABLE_ALL): its MatMulAddFusion fails with 'AddInitializedOrtValue Attempt to replace the
    existing tensor'. Disabling that one optimizer (a session config entry, also settable from
    ort's SessionBuilder::with_disabled_optimizers) or using ORT_ENABLE_BASIC loads it."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    try:
        ort_session(path)
        return True, None
    except Exception as e:  # noqa: BLE001
        msg = str(e)
        return False, msg[msg.rfind("[ONNXRuntimeError]"):].strip()
    finally:
        ort.set_default_logger_severity(2)


def graph_io(sess):
    return ({"inputs": [{"name": i.name, "type": i.type, "shape": i.shape} for i in sess.get_inputs()],
             "outputs": [{"name": o.name, "type": o.type, "shape": o.shape} for o in sess.get_outputs()]})


def batches(ids, tts, size, pad_id, pad_to=None):
    """Right-pad each batch of `size` rows (pair order) to `pad_to` or the batch's longest."""
    for s in range(0, len(ids), size):
        rows = ids[s:s + size]
        L = pad_to or max(len(r) for r in rows)
        n = len(rows)
        x = np.full((n, L), pad_id, dtype=np.int64)
        m = np.zeros((n, L), dtype=np.int64)
        t = np.zeros((n, L), dtype=np.int64)
        for i, r in enumerate(rows):
            x[i, :len(r)] = r
            m[i, :len(r)] = 1
            if tts is not None:
                t[i, :len(r)] = tts[s + i]
        feed = {"input_ids": x, "attention_mask": m}
        if tts is not None:
            feed["token_type_ids"] = t
        yield feed


def run_ort(sess, feeds):
    names = {i.name for i in sess.get_inputs()}
    out = []
    for f in feeds:
        assert set(f) == names, (set(f), names)
        (logits,) = sess.run(["logits"], f)
        assert logits.shape == (f["input_ids"].shape[0], 1), logits.shape
        out.extend(float(v) for v in logits[:, 0].astype(np.float32))  # f16 → f32 exactly
    return out


def run_torch(model, feeds):
    out = []
    with torch.no_grad():
        for f in feeds:
            logits = model(**{k: torch.from_numpy(v) for k, v in f.items()}).logits
            out.extend(float(v) for v in logits[:, 0].float())
    return out


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# --------------------------------------------------------------------------------------------


def main():
    from transformers import AutoModelForSequenceClassification

    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    refs = {m: json.loads((FIX / f"{m}.reference.json").read_text(encoding="utf-8")) for m in PAD_ID}
    cases = {m: next(c for c in r["cases"] if c["name"] == CASE) for m, r in refs.items()}
    pairs = cases["xlmr-tiny"]["pairs"]
    assert pairs == cases["bert-tiny"]["pairs"] and len(pairs) == 38

    OUT.mkdir(parents=True, exist_ok=True)
    exports = []
    with tempfile.TemporaryDirectory(prefix="rerank-onnx-fixtures-") as tmps:
        tmp = Path(tmps)
        src = {m: materialize(FIX / m, tmp / m) for m in PAD_ID}
        torch_models = {m: AutoModelForSequenceClassification.from_pretrained(str(src[m])).eval()
                        for m in PAD_ID}
        for m in torch_models.values():
            assert m.dtype == torch.float32

        # (a) xlmr-tiny, dynamic axes, f32
        xd = optimum_export(src["xlmr-tiny"], tmp / "xlmr-dyn")
        # (b) xlmr-tiny, static [2, 512], O1, external data under onnx/
        xs = optimum_export(src["xlmr-tiny"], tmp / "xlmr-static", no_dynamic_axes=True,
                            batch_size=STATIC_BATCH, sequence_length=STATIC_SEQ, optimize="O1")
        resave_external(xs / "model.onnx", tmp / "xlmr-static-ext" / "model.onnx", "model.onnx_data")
        # (c) bert-tiny, dynamic, f32 (token_type_ids)
        bd = optimum_export(src["bert-tiny"], tmp / "bert-dyn")
        # (d) int8 graph of (c); fp16 export of bert-tiny
        quantize_int8(bd / "model.onnx", tmp / "bert-int8.onnx")
        bh = optimum_export(src["bert-tiny"], tmp / "bert-fp16", dtype="fp16")

        ext = tmp / "xlmr-static-ext"
        specs = [
            dict(name="xlmr-tiny-dynamic", source="xlmr-tiny", dtype="float32", static=None,
                 how="optimum main_export(task='text-classification', monolith=True) (optimum-cli export "
                     "onnx --task text-classification --monolith)",
                 graph={"model.onnx": xd / "model.onnx"}, extra={"config.json": xd / "config.json"}),
            dict(name="xlmr-tiny-static-b2-s512", source="xlmr-tiny", dtype="float32",
                 static=[STATIC_BATCH, STATIC_SEQ],
                 how="optimum main_export(task='text-classification', monolith=True, no_dynamic_axes=True, "
                     "batch_size=2, sequence_length=512, optimize='O1'), re-saved by onnx.save_model("
                     "save_as_external_data=True, all_tensors_to_one_file=True, location='model.onnx_data', "
                     "size_threshold=1024) under onnx/",
                 graph={"onnx/model.onnx": ext / "model.onnx", "onnx/model.onnx_data": ext / "model.onnx_data"},
                 extra={"config.json": xs / "config.json", "ort_config.json": xs / "ort_config.json"}),
            dict(name="bert-tiny-dynamic", source="bert-tiny", dtype="float32", static=None,
                 how="optimum main_export(task='text-classification', monolith=True)",
                 graph={"model.onnx": bd / "model.onnx"}, extra={"config.json": bd / "config.json"}),
            dict(name="bert-tiny-int8", source="bert-tiny", dtype="int8 (dynamic quantization)", static=None,
                 how="onnxruntime.quantization.quantize_dynamic(bert-tiny-dynamic, weight_type=QInt8, "
                     "per_channel=False): MatMul -> DynamicQuantizeLinear + MatMulInteger, embedding tables int8 "
                     "+ DequantizeLinear",
                 graph={"model.onnx": tmp / "bert-int8.onnx"}, extra={"config.json": bd / "config.json"}),
            dict(name="bert-tiny-fp16", source="bert-tiny", dtype="float16", static=None,
                 how="optimum main_export(task='text-classification', monolith=True, dtype='fp16') "
                     "(optimum-cli export onnx --dtype fp16, run on CPU): f16 weights, f16 logits output",
                 graph={"model.onnx": bh / "model.onnx"}, extra={"config.json": bh / "config.json"}),
        ]

        for s in specs:
            d = write_folder(s["name"], s["source"], s["graph"], s["extra"])
            # score from a gunzipped copy, as the Rust tests will
            run_dir = tmp / "run" / s["name"]
            shutil.copytree(d, run_dir)
            for gz in sorted(run_dir.rglob("*.gz")):
                gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
                gz.unlink()
            model_rel = "onnx/model.onnx" if s["static"] else "model.onnx"
            ok, err = loads_with_defaults(run_dir / model_rel)
            config = {} if ok else {"optimization.disable_specified_optimizers": "MatMulAddFusion"}
            sess = ort_session(run_dir / model_rel, config)
            io = graph_io(sess)

            case = cases[s["source"]]
            ids, tts = case["input_ids"], case["token_type_ids"]
            pad = PAD_ID[s["source"]]
            entry = {
                "name": s["name"],
                "source_model": s["source"],  # ids fed: inputs[source_model]
                "model_file": model_rel,
                "external_data": "onnx/model.onnx_data" if s["static"] else None,
                "dtype": s["dtype"],
                "how": s["how"],
                **io,
                "static_shape": s["static"],
                "pad_id": pad,
                "loads_with_default_session_options": ok,
                "default_load_error": err,
                "session_config_entries": config,
            }
            tm = torch_models[s["source"]]
            if s["static"]:
                bs, L = s["static"]
                feeds = list(batches(ids, tts, bs, pad, pad_to=L))
                entry["feed"] = (f"batches of {bs} in pair order (pairs 2k, 2k+1), each row right-padded to "
                                 f"{L} with pad_id, attention_mask 0 on padding")
                logits = run_ort(sess, feeds)
                torch_logits = run_torch(tm, feeds)
            else:
                feeds = list(batches(ids, tts, 1, pad))
                entry["feed"] = "one pair per run, unpadded (batch 1, sequence = the pair's length)"
                logits = run_ort(sess, feeds)
                torch_logits = run_torch(tm, feeds)
                bfeeds = list(batches(ids, tts, CHECK_BATCH, pad))
                batched = run_ort(sess, bfeeds)
                entry["batched"] = {
                    "feed": f"batches of {CHECK_BATCH} in pair order, right-padded with pad_id to the "
                            "batch's longest, attention_mask 0 on padding (token_type_ids 0)",
                    "logits": batched,
                    "max_abs_diff_vs_logits": max_diff(batched, logits),
                    "max_abs_diff_torch": max_diff(batched, run_torch(tm, bfeeds)),
                }
            entry["uses_token_type_ids"] = "token_type_ids" in {i["name"] for i in io["inputs"]}
            assert entry["uses_token_type_ids"] == (tts is not None)
            entry["logits"] = logits
            entry["max_abs_diff_torch"] = max_diff(logits, torch_logits)
            entry["max_abs_diff_flag_reference"] = max_diff(logits, case["scores"])
            exports.append(entry)
            print(f"{s['name']}: torch {entry['max_abs_diff_torch']:.3g}, "
                  f"FlagEmbedding {entry['max_abs_diff_flag_reference']:.3g}"
                  + (f", batched {entry['batched']['max_abs_diff_vs_logits']:.3g}" if "batched" in entry else ""))

    write_json(OUT / "reference.json", {
        "generator": GENERATOR,
        "versions": versions(),
        "source_case": f"'{CASE}' of tests/fixtures/{{xlmr-tiny,bert-tiny}}.reference.json "
                       "(its input_ids / token_type_ids are fed; its scores are the FlagEmbedding reference)",
        "runtime": "onnxruntime InferenceSession, CPUExecutionProvider, intra_op_num_threads=1, "
                   "inter_op_num_threads=1, sequential, default graph optimization level (ORT_ENABLE_ALL), "
                   "plus each export's session_config_entries",
        "pairs": pairs,
        "inputs": {m: {"input_ids": c["input_ids"], "token_type_ids": c["token_type_ids"]}
                   for m, c in cases.items()},
        "exports": exports,
    })


if __name__ == "__main__":
    main()
