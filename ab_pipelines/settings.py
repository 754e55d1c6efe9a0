"""Where things live: ABP_HOME, the registry, the platform's settings and clock, and the checks
that a user's machine can run us.

Every path the platform writes is derived here from ``ABP_HOME`` (default ``.abp/`` in the repo
root), so no other module invents a location. The platform's settings are read from the
environment into one :class:`Settings` object when first needed (:func:`settings`), never when a
module is imported; the parts with settings of their own read them the same way, in one
``from_env`` each (the engine, Kafka, the connector, the edge).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "Paths",
    "SetupError",
    "Settings",
    "check_java",
    "ensure_writable_home",
    "env_number",
    "now",
    "paths",
    "registry_root",
    "settings",
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
    chosen = home if home is not None else settings().home or REPO_ROOT / ".abp"
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
    return Path(settings().registry or REPO_ROOT).expanduser().resolve()


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
    java_home = settings().java_home
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


@dataclass(frozen=True)
class Settings:
    """The platform's settings, as the environment gives them: its text, or the default when the
    variable is unset. Each is checked where it is used, so a bad value fails the command that
    needs it, in one sentence naming it.

    Read once by :func:`settings`; ``Settings.from_env(env)`` reads another mapping (tests).
    """

    home: str = ""
    """ABP_HOME: where the platform writes (blank: ``.abp/`` in the repo root)."""
    registry: str = ""
    """ABP_REGISTRY: the folder holding ``experiments/`` and ``metrics/`` (blank: the repo root)."""
    now: str = ""
    """ABP_NOW: the platform's clock for a replay, ISO-8601 (blank: the wall clock)."""
    time_travel_days: str = "30"
    """ABP_TIME_TRAVEL_DAYS: how long every table version stays readable."""
    alert_webhook: str = ""
    """ABP_ALERT_WEBHOOK: the URL alerts are posted to (blank: no webhook)."""
    crash_before_commit: str = ""
    """ABP_CRASH_BEFORE_COMMIT: fault injection for the crash tests (a table, e.g. bronze.x)."""
    demo_days: str = "7"
    """ABP_DEMO_DAYS: the days ``abp demo`` plays without ``--days``."""
    log_level: str = "WARNING"
    """ABP_LOG_LEVEL: the console log level of the Dagster runs ``abp`` starts."""
    java_home: str = ""
    """JAVA_HOME: the Java of the JVM Spark server (blank: ``java`` on the PATH)."""
    user: str = "abp"
    """USER: who ``abp publish`` records as the actor."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        given = {f.name: env.get(_ENV_NAMES[f.name]) for f in fields(cls)}
        return cls(**{name: value for name, value in given.items() if value is not None})

    def clock(self) -> dt.datetime | None:
        """ABP_NOW as an aware UTC time; None when it is not set."""
        raw = self.now.strip()
        if not raw:
            return None
        try:
            t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise SetupError(
                f"{NOW_ENV} '{raw}' is not an ISO-8601 time; use e.g. 2026-11-05T01:00:00Z."
            ) from None
        return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)

    @property
    def retention_days(self) -> int:
        """ABP_TIME_TRAVEL_DAYS as a whole number of days (default 30)."""
        env = {"ABP_TIME_TRAVEL_DAYS": self.time_travel_days}
        return env_number(env, "ABP_TIME_TRAVEL_DAYS", 30, int, least=0)


_ENV_NAMES = {
    "home": "ABP_HOME",
    "registry": "ABP_REGISTRY",
    "now": NOW_ENV,
    "time_travel_days": "ABP_TIME_TRAVEL_DAYS",
    "alert_webhook": "ABP_ALERT_WEBHOOK",
    "crash_before_commit": "ABP_CRASH_BEFORE_COMMIT",
    "demo_days": "ABP_DEMO_DAYS",
    "log_level": "ABP_LOG_LEVEL",
    "java_home": "JAVA_HOME",
    "user": "USER",
}


def settings() -> Settings:
    """This process's settings, read from the environment when first needed.

    Read again only when one of its variables changed since (a test's ``monkeypatch.setenv``, or
    a command exporting a setting for its worker processes), so every caller sees one object.
    """
    return _settings_for(tuple(os.environ.get(var) for var in _ENV_NAMES.values()))


@functools.lru_cache(maxsize=8)
def _settings_for(values: tuple[str | None, ...]) -> Settings:
    env = {var: v for var, v in zip(_ENV_NAMES.values(), values, strict=True) if v is not None}
    return Settings.from_env(env)


def now() -> dt.datetime:
    """The platform's clock (UTC): the wall clock, or ``ABP_NOW`` (ISO-8601) when set.

    ``ABP_NOW`` is for replays of past days by hand. The demo passes its simulated time
    explicitly instead (``publish(now=...)``, the ``abp/now`` tag of its Dagster runs): a kill made
    while analysing a simulated day is then stamped with the simulated time, so "the traffic
    after the kill" means the simulated days after it. Kills, publishes and alerts read this
    clock when they are given none.
    """
    return settings().clock() or dt.datetime.now(dt.UTC)
