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


def _section(name: str, b: Benchmark, stamp: str) -> str:
    lines = [f"{_MARK}{name} -->", f"## {b.title}", "", f"_measured {stamp}_", ""]
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
    return "\n".join(lines)


_MARK = "<!-- benchmark: "


def _sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A report's header and its sections in order, each keyed by its benchmark's name (the
    marker before its title) or, in a report written before the markers, by its title line."""
    lines = text.rstrip("\n").split("\n")
    starts = []
    for i, line in enumerate(lines):
        if line.startswith(_MARK) or (
            line.startswith("## ") and not lines[i - 1].startswith(_MARK)
        ):
            starts.append(i)
    header = "\n".join(lines[: starts[0]] if starts else lines).rstrip("\n")
    out = []
    for i, j in zip(starts, [*starts[1:], len(lines)], strict=True):
        first = lines[i]
        key = first[len(_MARK) :].split(" ", 1)[0] if first.startswith(_MARK) else first
        out.append((key, "\n".join(lines[i:j]).strip("\n")))
    return header, out


def render(
    benchmarks: list[tuple[str, Benchmark]],
    peers: dict[str, dict[str, str]],
    seconds: float,
    not_measured: list[str],
    previous: str | None = None,
) -> str:
    """The markdown document: ``benchmarks`` as (name, result).

    ``previous``: the report of an earlier run (a run of some benchmarks only): its header and its
    other benchmarks' sections are kept, each with the date and commit it was measured at; the
    sections of ``benchmarks`` replace theirs in place (or come last).
    """
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    stamp = f"{now}, commit {_commit()}"
    new = [(name, _section(name, b, stamp)) for name, b in benchmarks]
    if previous is not None:
        header, sections = _sections(previous)
        titles = {f"## {b.title}": name for name, b in benchmarks}
        by_name = dict(new)
        merged, done = [], set()
        for key, text in sections:
            name = titles.get(key, key)  # an unmarked section of the same title is replaced
            if name in by_name:
                if name not in done:
                    merged.append(by_name[name])
                    done.add(name)
            else:
                merged.append(text)
        merged += [text for name, text in new if name not in done]
        return "\n\n".join([header, *merged]) + "\n"
    m = machine()
    lines = [
        "# Benchmarks against peers",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Each benchmark runs "
        "the project and its peer in the same run on the same data, alternating repetitions, and "
        "reports medians. The machine is shared and noisy: the ratios are what count. A run of "
        "some benchmarks (`--only`) replaces their sections and keeps the others, each with the "
        "date and commit it was measured at.",
        "",
        f"- date: {now}, commit {_commit()}, {seconds:.0f} s for the whole run",
        f"- machine: {m['cores']} cores, {m['memory']}, CPU {m['cpu']}, {m['os']}",
        f"- project: {_fmt_versions(project_versions())}",
    ]
    lines += [f"- peer {name}: {_fmt_versions(v)}" for name, v in peers.items()]
    for _, text in new:
        lines += ["", text]
    if not_measured:
        lines += ["", "## Not yet measured", ""]
        lines += [f"- {x}" for x in not_measured]
    return "\n".join(lines) + "\n"
