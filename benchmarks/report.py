"""The results as docs/benchmarks.md: one table per benchmark, the machine, the versions, the date."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ab_pipelines.settings import REPO_ROOT

__all__ = ["Benchmark", "Row", "machine", "render", "project_versions"]

PROJECT_DISTRIBUTIONS = (
    "ab-pipelines",
    "pyspark-client",
    "pysail",
    "deltalake",
    "pyarrow",
    "numpy",
    "scipy",
    "mmh3",
    "orjson",
    "cryptography",
)


@dataclass(frozen=True)
class Row:
    """One measure: the project's value, the peer's, their ratio, the target and whether it is met."""

    measure: str
    project: str
    peer: str
    ratio: str
    target: str
    met: bool | None  # None: no target for this row
    jvm: str | None = None  # the same measure on JVM Spark (Connect, local[2]), where measured


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's table and the notes printed under it."""

    title: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)  # one bullet each
    blocks: list[str] = field(default_factory=list)  # markdown paragraphs, as they are


def _proc_field(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, str]:
    """Cores, memory and CPU model of this machine."""
    mem_kb = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(mem_kb) / 2**20:.1f} GiB" if mem_kb.isdigit() else "unknown"
    return {
        "cores": str(os.cpu_count()),
        "memory": memory,
        "cpu": _proc_field("/proc/cpuinfo", "model name"),
        "os": f"{platform.system()} {platform.release()}",
    }


def project_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for d in PROJECT_DISTRIBUTIONS:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            out[d] = "not installed"
    return out


def _commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def _fmt_versions(v: dict[str, str]) -> str:
    return ", ".join(f"{k} {x}" for k, x in v.items())


def render(
    benchmarks: list[Benchmark],
    peers: dict[str, dict[str, str]],
    seconds: float,
    not_measured: list[str],
) -> str:
    """The whole markdown document."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    lines = [
        "# Benchmarks against peers",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Each benchmark runs "
        "the project and its peer in the same run on the same data, alternating repetitions, and "
        "reports medians. The machine is shared and noisy: the ratios are what count.",
        "",
        f"- date: {now}, commit {_commit()}, {seconds:.0f} s for the whole run",
        f"- machine: {m['cores']} cores, {m['memory']}, CPU {m['cpu']}, {m['os']}",
        f"- project: {_fmt_versions(project_versions())}",
    ]
    lines += [f"- peer {name}: {_fmt_versions(v)}" for name, v in peers.items()]
    for b in benchmarks:
        lines += ["", f"## {b.title}", ""]
        jvm = any(r.jvm is not None for r in b.rows)
        head = ["measure", "project", "peer", *(["JVM Spark (Connect)"] if jvm else [])]
        head += ["ratio", "target", "met?"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in b.rows:
            met = "—" if r.met is None else ("yes" if r.met else "**no**")
            cells = [r.measure, r.project, r.peer, *([r.jvm or ""] if jvm else [])]
            cells += [r.ratio, r.target, met]
            lines.append("| " + " | ".join(cells) + " |")
        if b.notes:
            lines.append("")
            lines += [f"- {note}" for note in b.notes]
        for block in b.blocks:
            lines += ["", block]
    if not_measured:
        lines += ["", "## Not yet measured", ""]
        lines += [f"- {x}" for x in not_measured]
    return "\n".join(lines) + "\n"
