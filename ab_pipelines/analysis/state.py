"""An experiment's state on an analysis day, answered once: status, window, plan and provenance.

Before this module, the status (running, stopped, killed), the kill cut and the analysis window
were recomputed from ``ops.kills``, the registry and dates by each reader. Now
:func:`experiment_state` (one experiment) and :func:`states_of_day` (every experiment of the
registry started by the day) answer, and the daily analysis writes the answer to
``ops.experiment_days``, one row per experiment and day.

Where each fact comes from:

- **status**: ``killed`` when ``ops.kills`` holds a kill made before the day ended (who, when
  and why are the first kill's: a kill is never undone); otherwise the registry's status
  (``running``, ``stopped``, or a status before running). The registry keeps no stop date, so a
  stopped experiment is stopped on every day.
- **window** (CONTRACTS section 3): units first exposed in [start_date, min(D + 1 day,
  end_date + 1 day, kill time)), all UTC; :func:`analysis_window` is the one place the rule is
  written.
- **registry_sha**: the sha of the experiment's content in the registry the day is analysed
  with (:func:`ab_pipelines.config.approvals.content_sha` of its YAML file, the sha approvals
  sign; lifecycle fields excluded), so a row can tell which plan produced it and whether the plan
  changed since.
- **config version**: the edge config serving at the end of day D, from ``ops.audit_log``: the
  last ``publish`` row (``detail.version``, ``detail.content_sha``) at or before D + 1 day. The
  audit log rather than ``$ABP_HOME/edge/versions/config-v<N>.json``: it lives in the lake beside
  ``ops.kills`` (readers of the lake, the dashboard included, need no edge folder), its ``at`` is
  the publish time (the payload's ``published_at``), and it is one small table read rather than
  one signed file per version. A publish is audited just after its version file is written, so a
  crash between the two leaves that version unnamed here (the previous one is reported).
- **variants and weights**: the registry's, in order (the first is the baseline).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.config.approvals import content_sha
from ab_pipelines.config.models import Experiment
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_AUDIT_LOG, OPS_EXPERIMENT_DAYS, OPS_KILLS, PROVENANCE

__all__ = [
    "ANALYSED_STATUSES",
    "AnalysisWindow",
    "ConfigVersion",
    "ExperimentState",
    "Kill",
    "analysis_window",
    "config_versions",
    "experiment_state",
    "kills",
    "registry_sha",
    "state_rows",
    "states_of_day",
    "with_provenance",
    "write_states",
]

# The registry statuses the daily analysis computes (a kill on top of them is still analysed).
ANALYSED_STATUSES = ("running", "stopped")


def _midnight(d: dt.date) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


def _day_end(d: dt.date) -> dt.datetime:
    return _midnight(d + dt.timedelta(days=1))


def _utc(t: dt.datetime) -> dt.datetime:
    # A naive time is read as the process's local time, as the analysis always has.
    return t.astimezone(dt.UTC)


@dataclass(frozen=True)
class Kill:
    """A kill from ``ops.kills``: when, by whom and why (the first kill's; never undone)."""

    at: dt.datetime
    by: str
    reason: str

    def by_end_of(self, day: dt.date) -> bool:
        """Whether the kill had taken effect when ``day`` ended (UTC)."""
        return _utc(self.at) < _day_end(day)


@dataclass(frozen=True)
class ConfigVersion:
    """A published edge config: its version, its payload's content sha, when it was published."""

    version: int
    content_sha: str
    published_at: dt.datetime


@dataclass(frozen=True)
class AnalysisWindow:
    """First exposures counted on a day: [start, cutoff), all aware UTC datetimes.

    ``end`` is min(D + 1 day, end_date + 1 day); ``kill_cut`` the kill time when it falls before
    ``end`` (else None); ``cutoff`` is the earlier of the two.
    """

    start: dt.datetime
    end: dt.datetime
    kill_cut: dt.datetime | None = None

    @property
    def cutoff(self) -> dt.datetime:
        return self.end if self.kill_cut is None else self.kill_cut


def analysis_window(
    exp: Experiment, day: dt.date, killed_at: dt.datetime | None = None
) -> AnalysisWindow:
    """The window of first exposures ``exp`` analyses on ``day`` (CONTRACTS section 3).

    Example:
        >>> exp = Experiment(id="e", name="e", owner="o", start_date=dt.date(2026, 3, 10),
        ...                  end_date=dt.date(2026, 3, 12),
        ...                  variants=[{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}])
        >>> w = analysis_window(exp, dt.date(2026, 3, 20))
        >>> w.start.isoformat(), w.cutoff.isoformat()
        ('2026-03-10T00:00:00+00:00', '2026-03-13T00:00:00+00:00')
        >>> kill = dt.datetime(2026, 3, 11, 9, 30, tzinfo=dt.UTC)
        >>> analysis_window(exp, dt.date(2026, 3, 20), kill).cutoff.isoformat()
        '2026-03-11T09:30:00+00:00'
    """
    end = _day_end(day)
    if exp.end_date is not None:
        end = min(end, _day_end(exp.end_date))
    cut = None
    if killed_at is not None and _utc(killed_at) < end:
        cut = _utc(killed_at)
    return AnalysisWindow(_midnight(exp.start_date), end, cut)


def has_ended(
    registry_status: str, end_date: dt.date | None, day: dt.date, killed_at: dt.datetime | None
) -> bool:
    """No longer takes new units on ``day``: stopped, killed by the day's end, or the day is on or
    after ``end_date`` (the decision then says ``inconclusive`` rather than waiting)."""
    if registry_status == "stopped":
        return True
    if end_date is not None and day >= end_date:
        return True
    return killed_at is not None and _utc(killed_at) < _day_end(day)


@dataclass(frozen=True)
class ExperimentState:
    """One experiment on analysis day ``day``: what the analysis, safety, CLI and dashboard ask.

    ``status``: ``killed`` (a kill took effect by the end of the day), else the registry's
    (``running``, ``stopped``, ``draft``, ...). ``registry_status``: the registry's, whatever the
    kills. ``kill``: the ``ops.kills`` record whenever it was made, also after ``day`` (``status``
    says whether it had taken effect); None when never killed.
    """

    experiment_id: str
    day: dt.date
    status: str
    registry_status: str
    kill: Kill | None
    window: AnalysisWindow
    registry_sha: str
    config: ConfigVersion | None
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    start_date: dt.date
    end_date: dt.date | None

    @property
    def analysed(self) -> bool:
        """Whether the daily analysis computes it on ``day``: running or stopped, and started."""
        return self.registry_status in ANALYSED_STATUSES and self.start_date <= self.day

    @property
    def killed_at(self) -> dt.datetime | None:
        """The kill time (whenever it was), as the window and decision rules take it."""
        return None if self.kill is None else self.kill.at

    @property
    def ended(self) -> bool:
        """No longer takes new units on ``day`` (:func:`has_ended`)."""
        return has_ended(self.registry_status, self.end_date, self.day, self.killed_at)

    @property
    def running(self) -> bool:
        """Running on ``day``: registry status running, started, not past ``end_date``, not killed
        before the day ended (the experiments that should have exposures that day)."""
        if self.status != "running" or self.start_date > self.day:
            return False
        return self.end_date is None or self.day <= self.end_date

    @property
    def days_running(self) -> int:
        """Days it took units by the end of ``day``: from its start to the earliest of ``day``,
        ``end_date`` and the day of a kill that had taken effect (0 before its start)."""
        last = min(d for d in (self.day, self.end_date) if d is not None)
        if self.kill is not None and self.kill.by_end_of(self.day):
            last = min(last, _utc(self.kill.at).date())
        return max((last - self.start_date).days + 1, 0)

    @property
    def config_version(self) -> int | None:
        return None if self.config is None else self.config.version

    @property
    def baseline(self) -> str:
        return self.variants[0]


def kills(lake: Lake) -> dict[str, Kill]:
    """experiment id -> its kill (``ops.kills``; one row per experiment, the first kill)."""
    rows = lake.read_arrow(OPS_KILLS).to_pylist()
    return {r["experiment_id"]: Kill(r["killed_at"], r["by"], r["reason"]) for r in rows}


def config_versions(lake: Lake) -> list[ConfigVersion]:
    """Every published config version from ``ops.audit_log`` (``publish`` rows), oldest first."""
    audit = lake.read_arrow(
        OPS_AUDIT_LOG, filter=pc.field("action") == "publish", columns=["at", "detail"]
    )
    out = []
    for r in audit.to_pylist():
        detail = json.loads(r["detail"] or "{}")
        if isinstance(detail.get("version"), int):
            out.append(ConfigVersion(detail["version"], detail.get("content_sha", ""), r["at"]))
    return sorted(out, key=lambda c: (c.published_at, c.version))


def _in_force(versions: Iterable[ConfigVersion], day: dt.date) -> ConfigVersion | None:
    """The version serving at the end of ``day``: the last published before D + 1 day."""
    end = _day_end(day)
    before = [c for c in versions if _utc(c.published_at) < end]
    return max(before, key=lambda c: (c.published_at, c.version), default=None)


def registry_sha(registry: Registry, exp: Experiment) -> str:
    """The sha of ``exp``'s content as the registry holds it: the sha approvals sign.

    From its YAML file when the registry was read from files; from the model otherwise (a
    registry built in memory, as tests do).
    """
    path = registry.files.get(f"experiments/{exp.id}") or registry.files.get(f"holdouts/{exp.id}")
    if path is not None and path.exists():
        return content_sha(path)
    return content_sha(exp.model_dump(mode="json", exclude_unset=True))


def _state(
    registry: Registry,
    exp: Experiment,
    day: dt.date,
    kill: Kill | None,
    config: ConfigVersion | None,
) -> ExperimentState:
    status = "killed" if kill is not None and kill.by_end_of(day) else exp.status
    return ExperimentState(
        experiment_id=exp.id,
        day=day,
        status=status,
        registry_status=exp.status,
        kill=kill,
        window=analysis_window(exp, day, None if kill is None else kill.at),
        registry_sha=registry_sha(registry, exp),
        config=config,
        variants=tuple(exp.variant_ids),
        weights=tuple(v.weight for v in exp.variants),
        start_date=exp.start_date,
        end_date=exp.end_date,
    )


def states_of_day(
    lake: Lake, registry: Registry, day: dt.date, holdouts: bool = False
) -> dict[str, ExperimentState]:
    """The state on ``day`` of every registry experiment started by then, by id (sorted); with
    ``holdouts``, of the holdouts too (as :attr:`Registry.analysed_experiments` has them: the
    daily analysis analyses them, the safety pass and the publisher never touch them).

    Reads ``ops.kills`` and ``ops.audit_log`` once for all of them.
    """
    killed = kills(lake)
    config = _in_force(config_versions(lake), day)
    subjects = registry.analysed_experiments if holdouts else registry.experiments
    return {
        e.id: _state(registry, e, day, killed.get(e.id), config)
        for e in sorted(subjects.values(), key=lambda e: e.id)
        if e.start_date <= day
    }


def experiment_state(
    lake: Lake, registry: Registry, experiment_id: str, day: dt.date
) -> ExperimentState:
    """The state of one experiment on ``day`` (also before its start: then not ``analysed``).

    Raises KeyError naming the known experiments when ``experiment_id`` is not in the registry.
    """
    exp = registry.analysed_experiments.get(experiment_id)
    if exp is None:
        known = ", ".join(sorted(registry.analysed_experiments)) or "none"
        raise KeyError(f"unknown experiment '{experiment_id}'; known: {known}")
    kill = kills(lake).get(experiment_id)
    return _state(registry, exp, day, kill, _in_force(config_versions(lake), day))


def with_provenance(table: pa.Table, state: ExperimentState | None) -> pa.Table:
    """``table`` with its provenance columns (``registry_sha``, ``config_version``) set from
    ``state`` on every row (null without a state), added when missing, others untouched."""
    values = {
        "registry_sha": None if state is None else state.registry_sha,
        "config_version": None if state is None else state.config_version,
    }
    for name, type_ in PROVENANCE:
        column = pa.array([values[name]] * table.num_rows, type_)
        i = table.schema.get_field_index(name)
        if i < 0:
            table = table.append_column(pa.field(name, type_), column)
        else:
            table = table.set_column(i, pa.field(name, type_), column)
    return table


def state_rows(states: Iterable[ExperimentState]) -> pa.Table:
    """``ops.experiment_days`` rows of some states.

    The kill's who/when/why are written only when it had taken effect by the day's end, so a
    re-run of a day writes the row it wrote then.
    """
    rows = []
    for s in states:
        kill = s.kill if s.status == "killed" else None
        rows.append(
            {
                "experiment_id": s.experiment_id,
                "status": s.status,
                "registry_status": s.registry_status,
                "analysed": s.analysed,
                "ended": s.ended,
                "start_date": s.start_date,
                "end_date": s.end_date,
                "window_start": s.window.start,
                "window_end": s.window.end,
                "kill_cut": s.window.kill_cut,
                "killed_at": None if kill is None else kill.at,
                "killed_by": None if kill is None else kill.by,
                "kill_reason": None if kill is None else kill.reason,
                "registry_sha": s.registry_sha,
                "config_version": s.config_version,
                "config_sha": None if s.config is None else s.config.content_sha,
                "variants": list(s.variants),
                "weights": list(s.weights),
                "day": s.day,
            }
        )
    return pa.Table.from_pylist(rows, schema=OPS_EXPERIMENT_DAYS.schema)


def write_states(lake: Lake, day: dt.date, states: Mapping[str, ExperimentState]) -> int:
    """Replace partition ``day`` of ``ops.experiment_days`` with ``states``; returns the rows."""
    table = state_rows(states.values())
    lake.write_arrow(OPS_EXPERIMENT_DAYS, table, replace=[{"day": day.isoformat()}])
    return table.num_rows
