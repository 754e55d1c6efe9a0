"""Case by case against a peer: GrowthBook's gbstats 0.8.0, in a venv of its own (ENVIRONMENT.md).

The venv lives in `.venv-peers/gbstats` (git-ignored) and is made on first use from PyPI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ab_pipelines.settings import REPO_ROOT
from ab_pipelines.stats import Moments, RatioMoments, compare

pytestmark = pytest.mark.slow

PEER = REPO_ROOT / ".venv-peers" / "gbstats"


def peer_python() -> Path:
    """The peer venv's python, made on first use. Several test processes (xdist workers) ask at
    once on a fresh clone: one makes it under an exclusive lock while the others wait, so no two
    `venv --clear` the same folder."""
    import fcntl

    py = PEER / "bin" / "python"

    def ready() -> bool:
        return (
            py.exists()
            and subprocess.run([py, "-c", "import gbstats"], capture_output=True).returncode == 0
        )

    if ready():
        return py
    PEER.parent.mkdir(parents=True, exist_ok=True)
    with open(PEER.parent / ".gbstats.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not ready():  # another process may have made it while we waited
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER)], check=True)
            subprocess.run(
                [py, "-m", "pip", "install", "-q", "gbstats==0.8.0"], check=True, timeout=900
            )
    return py


def cases(rng):
    out = []
    for _ in range(40):
        n_a, n_b = rng.integers(200, 5000, size=2)
        x_a, x_b = rng.gamma(2.0, 3.0, n_a), rng.gamma(2.0, 3.0, n_b)
        y_a = 0.6 * x_a + rng.gamma(2.0, 2.0, n_a)
        y_b = 0.6 * x_b + rng.gamma(2.0, 2.0, n_b) * rng.uniform(0.95, 1.1)
        d_a, d_b = rng.poisson(3, n_a) + 1, rng.poisson(3, n_b) + 1
        for relative in (True, False):
            for sequential in (None, 5000):
                out.append(
                    (
                        "mean",
                        relative,
                        sequential,
                        Moments.from_values(y_a),
                        Moments.from_values(y_b),
                    )
                )
                out.append(
                    (
                        "cuped",
                        relative,
                        sequential,
                        Moments.from_values(y_a, x_a),
                        Moments.from_values(y_b, x_b),
                    )
                )
                out.append(
                    (
                        "ratio",
                        relative,
                        sequential,
                        RatioMoments.from_values(y_a, d_a),
                        RatioMoments.from_values(y_b, d_b),
                    )
                )
    return out


def as_json(kind, m) -> dict:
    if kind == "ratio":
        names = ("n", "num_sum", "num_sum_sq", "den_sum", "den_sum_sq", "num_den_sum")
    else:
        names = ("n", "sum", "sum_sq") + (
            ("pre_sum", "pre_sum_sq", "sum_cross") if kind == "cuped" else ()
        )
    return {k: float(getattr(m, k)) for k in names}


def test_compare_agrees_with_gbstats_case_by_case():
    rng = np.random.default_rng(20261124)
    todo = cases(rng)
    payload = [
        {"kind": k, "relative": r, "sequential": s, "a": as_json(k, a), "b": as_json(k, b)}
        for k, r, s, a, b in todo
    ]
    script = Path(__file__).with_name("gbstats_peer.py")
    proc = subprocess.run(
        [peer_python(), script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    worst = 0.0
    for (kind, relative, sequential, a, b), peer in zip(todo, theirs, strict=True):
        ours = compare(a, b, relative=relative, cuped=kind == "cuped", sequential_tuning=sequential)
        for field in ("effect", "ci_low", "ci_high", "p_value"):
            mine, other = float(getattr(ours, field)), float(peer[field])
            scale = max(abs(other), 1e-3)
            worst = max(worst, abs(mine - other) / scale)
            # gbstats uses the treatment's raw mean in one term of the relative CUPED variance
            tol = 2e-3 if kind == "cuped" and relative else 1e-6
            assert abs(mine - other) <= tol * scale, (
                kind,
                relative,
                sequential,
                field,
                mine,
                other,
            )
    print(f"\nworst relative difference to gbstats over {len(todo)} cases: {worst:.2e}")
