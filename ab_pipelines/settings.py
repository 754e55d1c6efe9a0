"""Where things live: ABP_HOME, the registry, and the checks that a user's machine can run us.

Every path the platform writes is derived here from ``ABP_HOME`` (default ``.abp/`` in the repo
root), so no other module invents a location.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "Paths",
    "SetupError",
    "check_java",
    "ensure_writable_home",
    "env_number",
    "paths",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
TIERS = ("bronze", "silver", "gold", "ops")


class SetupError(RuntimeError):
    """A problem with the user's machine or settings, told in one sentence with its fix."""


@dataclass(frozen=True)
class Paths:
    """The folders under one ABP_HOME."""

    home: Path

    @property
    def raw(self) -> Path:
        return self.home / "raw"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def edge(self) -> Path:
        return self.home / "edge"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def truth_file(self) -> Path:
        return self.raw / "_truth.json"

    def table(self, tier: str, name: str) -> Path:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; expected one of {TIERS}")
        return self.lake / tier / name


def paths(home: str | os.PathLike | None = None) -> Paths:
    """The platform's folders, from ``home`` or ``$ABP_HOME`` or the repo's ``.abp/``."""
    chosen = home if home is not None else os.environ.get("ABP_HOME") or REPO_ROOT / ".abp"
    return Paths(Path(chosen).expanduser().resolve())


def env_number(
    env: Mapping[str, str],
    var: str,
    default,
    kind: type = int,
    least: float = 1,
    error: type[Exception] = SetupError,
):
    """A numeric setting: ``default`` when ``var`` is unset or blank, else a ``kind`` of at
    least ``least``; ``error`` naming the variable otherwise (a NaN is not a number here)."""
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value != value or value < least:  # value != value: NaN
        what = "a whole number" if kind is int else "a number"
        raise error(f"{var}={raw!r} is not {what} of at least {least:g}.")
    return value


def registry_root() -> Path:
    """The folder holding ``experiments/`` and ``metrics/`` (``$ABP_REGISTRY``, default repo root)."""
    return Path(os.environ.get("ABP_REGISTRY") or REPO_ROOT).expanduser().resolve()


def ensure_writable_home(p: Paths) -> Paths:
    """Create ABP_HOME if needed and prove it is writable, or raise one clear SetupError."""
    try:
        p.home.mkdir(parents=True, exist_ok=True)
        probe = p.home / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SetupError(
            f"ABP_HOME {p.home} is not writable ({exc.strerror or exc}); "
            "set ABP_HOME to a folder you can write, e.g. 'export ABP_HOME=$HOME/.abp'."
        ) from exc
    return p


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def check_java() -> int:
    """Return the Java major version, or raise SetupError saying how to install Java 17."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    fix = "install OpenJDK 17 (Debian/Ubuntu: 'apt-get install -y openjdk-17-jre-headless')"
    if not java or not Path(java).exists():
        raise SetupError(f"Spark needs Java 17 and no 'java' was found; {fix}.")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"{java} cannot be run ({exc}); {fix}.") from None
    m = _JAVA_VERSION.search(out)
    major = int(m.group(1)) if m else 0
    if major == 1 and m and m.group(2):  # "1.8.0" style
        major = int(m.group(2))
    if major < 17:
        raise SetupError(
            f"Spark 4 needs Java 17 or newer but {java} is Java {major or '?'}; {fix}."
        )
    return major


NOW_ENV = "ABP_NOW"


def now() -> dt.datetime:
    """The platform's clock (UTC): the wall clock, or ``ABP_NOW`` (ISO-8601) when set.

    ``ABP_NOW`` is for replays and the demo, which play past days: a kill made while analysing a
    simulated day is then stamped with the simulated time, so "the traffic after the kill" means
    the simulated days after it. Kills, publishes and alerts read this clock.
    """
    raw = os.environ.get(NOW_ENV, "").strip()
    if not raw:
        return dt.datetime.now(dt.UTC)
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SetupError(
            f"{NOW_ENV} '{raw}' is not an ISO-8601 time; use e.g. 2026-11-05T01:00:00Z."
        ) from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
