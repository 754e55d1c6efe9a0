"""The SDK installs alone: ``pip install <repo>`` without extras in a fresh venv gives mmh3 and
cryptography and nothing of the platform, and the assignment corpus passes there (issue 24).

The venv is cached in ``.venv-peers/sdk-only`` (git-ignored, as benchmarks/peers.py does); the
project itself is reinstalled from a copy of the working tree on every run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.assignment import CORPUS_PATH
from tests.contracts.sdk_imports import REPO_ROOT

pytestmark = [pytest.mark.slow]

VENV = REPO_ROOT / ".venv-peers" / "sdk-only"
PLATFORM = ("pyspark", "dagster", "pandas", "pyarrow", "streamlit", "orjson", "numpy", "yaml")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ab_pipelines.assignment as sdk
    from ab_pipelines.assignment import Client, DumpExposureSink, KafkaExposureSink, bucket

    corpus = json.load(open(sys.argv[1], encoding="utf-8"))
    client = Client.from_payload(corpus["payload"], trusted=True)
    wrong = [c for c in corpus["cases"]
             if client.assign(c["user_id"], c["experiment_id"], c["attributes"]) != c["expected"]]
    buckets = [b for b in corpus["buckets"] if bucket(b["salt"], b["unit"]) != b["bucket"]]
    sink = DumpExposureSink(sys.argv[2], partition=0)
    logged = Client.from_payload(corpus["payload"], trusted=True, exposure_sink=sink)
    logged.assign("user-1", "homepage_hero")
    sink.flush()
    try:
        KafkaExposureSink()
        kafka = "made"
    except ImportError as exc:
        kafka = str(exc)
    print(json.dumps({
        "file": sdk.__file__,
        "cases": len(corpus["cases"]), "wrong": wrong, "bad_buckets": buckets,
        "modules": sorted({m.split(".")[0] for m in sys.modules}),
        "kafka": kafka,
    }))
    """
)


def _run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=900, **kw)


def _source_copy(dest):
    """The installable part of the working tree (uncommitted changes included)."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("ab_pipelines", "assets", "jobs", "streamlit_app"):
        shutil.copytree(REPO_ROOT / package, dest / package, ignore=ignore)
    return dest


def test_the_sdk_installs_alone_and_passes_the_corpus(tmp_path):
    py = VENV / "bin" / "python"
    src = _source_copy(tmp_path / "src")
    src_dir = str(src)
    if not py.exists():
        made = _run(sys.executable, "-m", "venv", "--clear", str(VENV))
        assert made.returncode == 0, made.stderr
        # first install: the dependencies come from the package registry
        out = _run(str(py), "-m", "pip", "install", "--quiet", src_dir)
    else:
        out = _run(
            str(py), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", src_dir
        )
        if out.returncode == 0:  # the dependencies may have changed since the venv was made
            out = _run(str(py), "-m", "pip", "install", "--quiet", src_dir)
    if out.returncode != 0 and "Could not find a version" in out.stderr + out.stdout:
        pytest.skip(f"the package registry is not reachable: {out.stderr[-500:]}")
    assert out.returncode == 0, out.stderr[-3000:]

    listed = _run(str(py), "-m", "pip", "list", "--format=json")
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"ab-pipelines", "mmh3", "cryptography"} <= installed
    heavy = {"pyspark", "pyspark-client", "dagster", "pandas", "pyarrow", "streamlit", "numpy"}
    assert installed & heavy == set(), installed

    run = _run(str(py), "-I", "-c", SCRIPT, str(CORPUS_PATH), str(tmp_path / "raw"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(VENV)), got["file"]  # not the repo's copy
    assert got["cases"] > 300 and got["wrong"] == [] and got["bad_buckets"] == []
    assert [m for m in got["modules"] if m in PLATFORM] == []
    assert "pip install 'ab-pipelines[kafka]'" in got["kafka"], got["kafka"]
    assert list((tmp_path / "raw" / "exposures").glob("date=*/exposures+0+0.jsonl"))

    # the platform's command on the SDK alone: one sentence naming the extra, no traceback
    abp = _run(str(VENV / "bin" / "abp"), "--help")
    assert abp.returncode == 1, abp
    assert "pip install 'ab-pipelines[platform]'" in abp.stderr and "Traceback" not in abp.stderr
