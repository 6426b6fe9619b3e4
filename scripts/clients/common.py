"""What check_clients.py and loadtest.py share: the server's address and credentials on the
command line, and the reference scores from `rerank score`."""

import argparse
import json
import math
import subprocess


def server_args(doc, api_key_required):
    """An argument parser with the options every script here takes."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--rerank-bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--served-model-name", required=True)
    ap.add_argument("--api-key", required=api_key_required)
    return ap


def rerank_scores(rerank_bin, model, pairs):
    """Raw logits of `[query, passage]` pairs from `rerank score`: the reference for every API."""
    out = subprocess.run([rerank_bin, "score", "--model", model], input=json.dumps(pairs),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))
