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

__all__ = [
    "NODE_PEER",
    "PEERS",
    "PeerUnavailable",
    "node_peer_dir",
    "peer_python",
    "peer_versions",
    "run_peer",
]

PEER_ROOT = REPO_ROOT / ".venv-peers"
HERE = Path(__file__).resolve().parent

# name -> (pip requirement, module that proves the install, distributions to report)
PEERS = {
    "gbstats": ("gbstats==0.8.0", "gbstats", ("gbstats", "numpy", "scipy", "pandas")),
    "growthbook": ("growthbook==4.0.0", "growthbook", ("growthbook",)),
    "duckdb": ("duckdb==1.5.6", "duckdb", ("duckdb",)),
}


# The Node peer of the edge benchmark: the GrowthBook JavaScript SDK in a folder of its own,
# installed from the npm registry on first use (exact version, no audit, no fund).
NODE_PEER = "growthbook-node"
NODE_PACKAGE = "@growthbook/growthbook"
NODE_PACKAGE_VERSION = "1.8.0"


class PeerUnavailable(RuntimeError):
    """A peer that cannot run on this machine; the message says why (printed in the report)."""


def node_peer_dir() -> Path:
    """``.venv-peers/node-growthbook`` with ``@growthbook/growthbook`` installed, installing it
    with npm when missing. Raises PeerUnavailable (why) without node or npm, or if the install
    fails."""
    import shutil

    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(x for x, p in (("node", node), ("npm", npm)) if not p)
        raise PeerUnavailable(f"{missing} not found on PATH, so the Node peer cannot run here")
    folder = PEER_ROOT / "node-growthbook"
    installed = folder / "node_modules" / NODE_PACKAGE / "package.json"
    if installed.exists():
        if json.loads(installed.read_text()).get("version") == NODE_PACKAGE_VERSION:
            return folder
    print(f"installing {NODE_PACKAGE}@{NODE_PACKAGE_VERSION} into {folder}", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "abp-peer-node-growthbook",
        "private": True,
        "dependencies": {NODE_PACKAGE: NODE_PACKAGE_VERSION},
    }
    (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--save-exact"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode or not installed.exists():
        raise PeerUnavailable(f"npm install {NODE_PACKAGE} failed: {proc.stderr.strip()[-300:]}")
    return folder


def _node_versions() -> dict[str, str]:
    try:
        folder = node_peer_dir()
    except PeerUnavailable as exc:
        return {"skipped": str(exc)}
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    package = json.loads((folder / "node_modules" / NODE_PACKAGE / "package.json").read_text())
    return {"node": node.stdout.strip().lstrip("v"), NODE_PACKAGE: package["version"]}


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
    """Python and package versions inside peer ``name``'s venv (Node and the SDK for the Node
    peer, or why it is skipped)."""
    if name == NODE_PEER:
        return _node_versions()
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
