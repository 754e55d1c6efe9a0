"""Issue 9, part 3: `abp validate` on generated registries never crashes and names the file.

Hypothesis mutates a valid experiment (a field replaced by any YAML value, or removed) or writes
arbitrary text as the file; validation must return problems (each naming the file, and the field
when one is at fault), never raise, and a registry with problems must not load.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ab_pipelines.config import RegistryError, load_registry, validate_registry
from tests.config.test_validate import BASE, METRICS, write

yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.dates(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated(draw):
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for k in path[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(yaml_values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return data


def _registry(root: Path, experiment_text: str) -> None:
    for m in METRICS.values():
        write(root, "metrics", m)
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "experiments" / "exp.yaml").write_text(experiment_text, encoding="utf-8")


def _check(experiment_text: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="abp-validate-"))
    try:
        _registry(root, experiment_text)
        problems = validate_registry(root)  # must not raise
        for p in problems:
            assert p.file == "experiments/exp.yaml", p
            assert str(p).startswith("experiments/exp.yaml: ") and p.reason
        if problems:
            with pytest.raises(RegistryError):
                load_registry(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(mutated())
def test_a_mutated_experiment_gets_problems_never_a_crash(data):
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return
    _check(text)


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_as_an_experiment_file_gets_problems_never_a_crash(text):
    _check(text)


def test_the_unmutated_base_is_valid():
    root = Path(tempfile.mkdtemp(prefix="abp-validate-"))
    try:
        _registry(root, yaml.safe_dump(BASE, sort_keys=False))
        assert validate_registry(root) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
