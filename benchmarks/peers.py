"""Peers in venvs of their own under ``.venv-peers/<name>`` (git-ignored), made on first use.

gbstats pins numpy < 2 and pandas < 2 (ENVIRONMENT.md), so no peer shares the project's venv. The
gbstats venv is the one the peer test builds (``tests/stats/test_peer_gbstats.py``): its builder is
used as it is, so tests and benchmarks never disagree about it. Other peers get the same layout.
A peer script runs as ``<peer python> benchmarks/<script>``, reading JSON on stdin and writing JSON
on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ab_pipelines.settings import REPO_ROOT

__all__ = ["PEERS", "peer_python", "peer_versions", "run_peer"]

PEER_ROOT = REPO_ROOT / ".venv-peers"
HERE = Path(__file__).resolve().parent

# name -> (pip requirement, module that proves the install, distributions to report)
PEERS = {
    "gbstats": ("gbstats==0.8.0", "gbstats", ("gbstats", "numpy", "scipy", "pandas")),
    "growthbook": ("growthbook==4.0.0", "growthbook", ("growthbook",)),
    "duckdb": ("duckdb==1.5.6", "duckdb", ("duckdb",)),
}


def peer_python(name: str) -> Path:
    """The python of peer ``name``'s venv, building the venv from PyPI when it is missing."""
    if name == "gbstats":
        from tests.stats.test_peer_gbstats import peer_python as gbstats_python

        return Path(gbstats_python())
    requirement, module, _ = PEERS[name]
    venv = PEER_ROOT / name
    py = venv / "bin" / "python"
    if (
        not py.exists()
        or subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode
    ):
        print(f"building the {name} peer venv in {venv} ({requirement})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", requirement], check=True, timeout=900)
    return py


def peer_versions(name: str) -> dict[str, str]:
    """Python and package versions inside peer ``name``'s venv."""
    dists = PEERS[name][2]
    code = (
        "import json, platform, importlib.metadata as m; "
        f"print(json.dumps({{'python': platform.python_version(), "
        f"**{{d: m.version(d) for d in {list(dists)!r}}}}}))"
    )
    out = subprocess.run(
        [peer_python(name), "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def run_peer(name: str, script: str, payload: object, timeout: float = 900) -> object:
    """Run ``benchmarks/<script>`` in peer ``name``'s venv with ``payload`` as JSON on stdin."""
    proc = subprocess.run(
        [peer_python(name), str(HERE / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        raise RuntimeError(f"peer {name} ({script}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)
