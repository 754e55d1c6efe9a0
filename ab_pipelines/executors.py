"""What a remote engine's executors need of this project, and nothing else.

The Python that runs on executors (the landing's parse task in ``ab_pipelines.events``, the
analysis's assignment UDF in ``ab_pipelines.analysis.assigner``, and :func:`probe`) imports only
:data:`EXECUTOR_REQUIREMENTS`: never deltalake, Dagster or Spark's Python package (the executors
get ``pyspark.zip`` from their Spark installation). With a remote engine the project's code goes
to the executors with the session, as :func:`project_zip` (a Spark Connect artifact); this module
itself imports only the standard library, so the probe runs on any worker Python and reports what
is missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path

__all__ = [
    "EXECUTOR_REQUIREMENTS",
    "executor_requirements",
    "probe",
    "project_zip",
    "python_version",
]

# Everything the executors import besides the standard library and this project.
EXECUTOR_REQUIREMENTS = ("pyarrow", "orjson", "pandas", "numpy", "mmh3")


def executor_requirements() -> list[str]:
    """EXECUTOR_REQUIREMENTS pinned to the versions the driver runs (pip requirement lines)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in EXECUTOR_REQUIREMENTS]


def python_version() -> str:
    """This interpreter's major.minor: PySpark needs the same on the driver and the executors."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def project_zip(folder: Path) -> Path:
    """The ``ab_pipelines`` package as a zip in ``folder``, named by its content's hash.

    Only the Python sources: the executors import the modules whose functions they run.
    """
    root = Path(__file__).resolve().parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(root.rglob("*.py")):
            if "__pycache__" in file.parts:
                continue
            info = zipfile.ZipInfo(
                str(file.relative_to(root.parent)), date_time=(1980, 1, 1, 0, 0, 0)
            )
            zf.writestr(info, file.read_bytes(), zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"ab_pipelines-{hashlib.sha256(data).hexdigest()[:12]}.zip"
    if not target.exists():
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        # Older versions of the code: a live session serves its zip from this folder, so only
        # those untouched for a week go.
        week_ago = time.time() - 7 * 86400
        for old in folder.glob("ab_pipelines-*.zip"):
            if old != target and old.stat().st_mtime < week_ago:
                old.unlink(missing_ok=True)
    return target


def probe(home: str) -> dict:
    """Runs on an executor: its host, missing requirements, and whether it can write the lake's
    folder (this module needs only the standard library, so it always imports)."""
    import importlib.util
    import platform

    return {
        "host": platform.node(),
        "missing": [m for m in EXECUTOR_REQUIREMENTS if importlib.util.find_spec(m) is None],
        "sees_home": os.path.isdir(home) and os.access(home, os.W_OK),
    }
