"""Tests of ab_pipelines.assignment, and small builders of edge payloads they share."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ab_pipelines.assignment.signing import sign_payload
from ab_pipelines.contracts.payload import build_payload, experiment_entry

CORPUS_PATH = Path(__file__).parents[1] / "data" / "assignment_cases.json"


@cache
def _corpus_text() -> str:
    return CORPUS_PATH.read_text(encoding="utf-8")


def corpus() -> dict:
    """A fresh copy of the shared corpus (tests may mutate it)."""
    return json.loads(_corpus_text())


def experiment(
    salt: str,
    variants=("control", "treatment"),
    weights=(0.5, 0.5),
    allocation: float = 1.0,
    status: str = "running",
    **fields,
) -> dict:
    """One payload entry as the publisher compiles it (outside a layer unless fields say)."""
    entry = experiment_entry(
        status=status,
        salt=salt,
        unit="user_id",
        variants=list(variants),
        weights=list(weights),
        allocation=allocation,
    )
    entry.update(fields)
    return entry


def payload(experiments: dict, version: int = 1) -> dict:
    return build_payload(experiments, version, "2026-11-24T06:00:00Z")


def write_signed(path: Path, p: dict) -> Path:
    path.write_text(json.dumps(sign_payload(p)), encoding="utf-8")
    return path
