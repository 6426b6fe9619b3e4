"""Shared fixtures: the committed tiny models (unpacked once per session), their FlagEmbedding
references, and the `rerank` CLI (RERANK_BIN) as the Rust library's scores."""

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

FIXTURES = Path(os.environ.get("RERANK_FIXTURES", Path(__file__).resolve().parents[3] / "tests" / "fixtures"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """`model_dir("xlmr-tiny")`: the fixture folder with its *.gz files unpacked."""
    made = {}

    def unpack(name: str) -> str:
        if name not in made:
            out = tmp_path_factory.mktemp(name)
            for src in (FIXTURES / name).iterdir():
                if src.suffix == ".gz":
                    (out / src.stem).write_bytes(gzip.decompress(src.read_bytes()))
                elif src.is_file():
                    shutil.copy(src, out / src.name)
            made[name] = str(out)
        return made[name]

    return unpack


@pytest.fixture(scope="session")
def reference():
    def load(name: str) -> dict:
        return json.loads((FIXTURES / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture(scope="session")
def cli():
    """Runs the `rerank` binary (the Rust library's answers): cli(args, stdin) -> parsed JSON."""
    binary = os.environ.get("RERANK_BIN")
    assert binary and os.access(binary, os.X_OK), "set RERANK_BIN to the rerank binary (scripts/test-python.sh does)"

    def run(args, stdin):
        out = subprocess.run([binary, *args], input=json.dumps(stdin), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    return run
