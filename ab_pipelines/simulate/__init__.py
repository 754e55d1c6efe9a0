"""Synthetic traffic with planted truths: ``simulate_days`` writes raw Kafka dumps day by day.

State lives beside the dumps: ``raw/_sim_state.json`` (population size, seed, first day),
``raw/_truth.json`` (the planted effects and the lifts the analysis must find),
``raw/_malformed/date=D.json`` (every malformed line planted, with its reason code) and
``raw/_sim_bandits.json`` (each bandit's arm per user, as the users' SDKs keep it in their sticky
store: a user is assigned at the first visit with the weights then served, and keeps that arm).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import numpy as np
import orjson

from ab_pipelines.config.models import Experiment
from ab_pipelines.config.registry import Registry, load_registry
from ab_pipelines.settings import Paths
from ab_pipelines.simulate.population import (
    Assigner,
    Population,
    assign_population,
    make_population,
    registry_assigner,
    sdk_assigner,
)
from ab_pipelines.simulate.traffic import (
    ExposurePlan,
    RecordSink,
    day_events,
    deliver_day,
    visitors,
)
from ab_pipelines.simulate.truth import (
    EFFECTS,
    EXPOSURE_DROP,
    experiment_truth,
    exposure_dropped,
    interaction_truth,
    merge_truth,
    user_multipliers,
)

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_USERS",
    "EFFECTS",
    "EXPOSURE_DROP",
    "HISTORY_DAYS",
    "SimulationReport",
    "is_running",
    "make_population",
    "registry_assigner",
    "sdk_assigner",
    "simulate_days",
    "state_path",
]

HISTORY_DAYS = 14  # pre-period days before the first experiment, for CUPED
DEFAULT_USERS = 20_000
DEFAULT_SEED = 7


@dataclass(frozen=True)
class SimulationReport:
    """What one ``simulate_days`` call wrote.

    Attributes:
        days: every day simulated, history first.
        history_days: the pre-period days simulated on first use (a prefix of ``days``).
        files: dump files written, relative to raw/ (a replay or late file of day D lives in D + 1).
        lines: lines written per topic (records, duplicates, late and malformed lines).
        malformed: malformed lines planted (truncated gzip files count once).
        duplicates: records written twice (consumer replays plus producer retries).
        late: records delivered the day after their event time.
    """

    days: tuple[dt.date, ...]
    history_days: tuple[dt.date, ...] = ()
    files: tuple[str, ...] = ()
    lines: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    duplicates: int = 0
    late: int = 0

    def summary(self) -> str:
        """A few lines for the command line."""
        span = f"{self.days[0]}..{self.days[-1]}" if self.days else "no days"
        hist = f" (including {len(self.history_days)} days of history)" if self.history_days else ""
        per_topic = ", ".join(f"{t}: {n}" for t, n in sorted(self.lines.items()))
        return (
            f"simulated {len(self.days)} days {span}{hist}: {len(self.files)} files, "
            f"lines {per_topic}\nplanted {self.malformed} malformed lines, "
            f"{self.duplicates} duplicates and {self.late} late records"
        )


def state_path(home: Paths):
    """``raw/_sim_state.json``: the population size, seed and first day of this simulation."""
    return home.raw / "_sim_state.json"


def is_running(experiment: Experiment, day: dt.date) -> bool:
    """Whether the experiment runs on ``day`` by the registry (status and dates)."""
    return (
        experiment.status == "running"
        and experiment.start_date <= day
        and (experiment.end_date is None or day <= experiment.end_date)
    )


def _resolve_state(
    home: Paths, users: int | None, seed: int | None
) -> tuple[int, int, dict | None]:
    path = state_path(home)
    if not path.exists():
        return users or DEFAULT_USERS, DEFAULT_SEED if seed is None else seed, None
    state = orjson.loads(path.read_bytes())
    if (users is not None and users != state["users"]) or (
        seed is not None and seed != state["seed"]
    ):
        raise ValueError(
            f"{home.raw} already holds a simulation of {state['users']} users with seed "
            f"{state['seed']}, not {users or state['users']} users with seed "
            f"{state['seed'] if seed is None else seed}; remove {home.raw} to start over."
        )
    return state["users"], state["seed"], state


def _bandits_path(home: Paths):
    return home.raw / "_sim_bandits.json"


def _load_bandit_arms(home: Paths) -> dict[str, dict[int, tuple[int, int]]]:
    """experiment id -> user index -> (arm index, ordinal of the first day), as stored."""
    path = _bandits_path(home)
    if not path.exists():
        return {}
    stored = orjson.loads(path.read_bytes())
    return {
        e: {int(u): (int(a), int(d)) for u, (a, d) in arms.items()} for e, arms in stored.items()
    }


def _save_bandit_arms(home: Paths, arms: dict[str, dict[int, tuple[int, int]]]) -> None:
    path = _bandits_path(home)
    tmp = path.with_name(".sim_bandits.tmp")
    data = {e: {str(u): list(a) for u, a in sorted(m.items())} for e, m in sorted(arms.items())}
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


def _assign_bandit(
    pop: Population,
    exp: Experiment,
    assigner: Assigner,
    day: dt.date,
    active: np.ndarray,
    arms: dict[int, tuple[int, int]],
) -> np.ndarray:
    """A bandit's arm per user on ``day`` (-1: out), as SDKs with a sticky store serve it: a
    visitor not yet assigned gets the arm the assigner gives now (the weights served that day)
    and keeps it (``arms``: user -> (arm, first day), updated in place); a user assigned before
    keeps the stored arm while the assigner still serves the experiment (not killed or stopped,
    targeting matching). Users first assigned after ``day`` do not count (a day simulated again
    gives the same arms)."""
    index = {v: i for i, v in enumerate(exp.variant_ids)}
    out = np.full(pop.size, -1, dtype=np.int64)
    today = day.toordinal()
    visiting = set(active.tolist())
    for u in sorted(visiting | {u for u, (_, d) in arms.items() if d <= today}):
        uid, attrs = pop.user_ids[u], pop.attributes[u]
        unit = uid if exp.unit == "user_id" else attrs.get(exp.unit, uid)
        v = assigner(exp, unit, attrs)
        if v is None or v not in index:
            continue
        if u not in arms:
            arms[u] = (index[v], today)
        elif arms[u][1] > today:
            continue  # first assigned on a later day (this day is simulated again)
        out[u] = arms[u][0]
    return out


def _history(registry: Registry, start: dt.date, n: int) -> list[dt.date]:
    # The pre-period: n days before the earliest experiment start, only days before `start`.
    starts = [e.start_date for e in registry.experiments.values()]
    first = min(starts) if starts else start
    days = [first - dt.timedelta(days=n - i) for i in range(n)]
    return [d for d in days if d < start]


def _exposure_plans(
    pop: Population,
    running: list[Experiment],
    assignments: dict[str, np.ndarray],
    assigner: Assigner,
) -> list[ExposurePlan]:
    sdk_logged = getattr(assigner, "logged", None)  # the SDK decides who logs (sdk_assigner)
    plans = []
    for exp in running:
        variants = assignments[exp.id]
        if sdk_logged is not None:
            units = sdk_logged(exp.id)
            eligible = np.array([u in units for u in pop.user_ids], dtype=bool)
        else:
            overridden = (
                np.array([u in exp.overrides for u in pop.user_ids]) if exp.overrides else False
            )
            eligible = (variants >= 0) & ~overridden
        logged = eligible & ~exposure_dropped(pop.user_ids, exp, variants)
        plans.append(ExposurePlan(exp, variants, logged))
    return plans


def _holdout_plans(
    pop: Population,
    registry: Registry,
    running: list[Experiment],
    day: dt.date,
    assigner: Assigner,
    groups_cache: dict[str, np.ndarray],
) -> list[ExposurePlan]:
    """The exposures of the running holdouts (rule 8b): a user reaching the holdout rule in a
    held layer (every user, once an experiment of the layer runs: each visit is evaluated for
    every running experiment) logs its group, ``holdout`` or ``general``, under the holdout's id;
    as the SDK logged them when the SDK assigns (``sdk_assigner``)."""
    from ab_pipelines.contracts.hashing import BUCKETS
    from ab_pipelines.contracts.payload import LayerHoldout, holdout_group

    sdk_logged = getattr(assigner, "logged", None)
    plans = []
    for h in sorted(registry.holdouts.values(), key=lambda h: h.id):
        live = h.status == "running" and h.start_date <= day
        if not live or (h.end_date is not None and day > h.end_date):
            continue
        if not any(e.layer in h.layers for e in running):
            continue  # no experiment of its layers runs: nobody reaches the rule
        exp = h.as_experiment()
        if h.id not in groups_cache:
            held = LayerHoldout(h.id, h.hash_salt, 0, round(BUCKETS * h.share))
            index = {v: i for i, v in enumerate(exp.variant_ids)}
            groups_cache[h.id] = np.array(
                [index.get(holdout_group(held, u), -1) for u in pop.user_ids], dtype=np.int64
            )
        variants = groups_cache[h.id]
        if sdk_logged is not None:
            units = sdk_logged(h.id)
            logged = np.array([u in units for u in pop.user_ids], dtype=bool)
        else:
            logged = variants >= 0
        plans.append(ExposurePlan(exp, variants, logged))
    return plans


def simulate_days(
    home: Paths,
    start: dt.date,
    days: int,
    users: int | None = None,
    seed: int | None = None,
    registry: Registry | None = None,
    assigner: Assigner | None = None,
    history_days: int = HISTORY_DAYS,
    sink: RecordSink | None = None,
) -> SimulationReport:
    """Write realistic raw Kafka dumps for ``start`` .. ``start + days − 1``.

    On first use (no ``raw/_sim_state.json``) the state is stored and the history before the
    earliest experiment start is simulated too, with no experiments running. Later calls reuse the
    stored population size and seed. Each day is deterministic from the seed, the day and the
    assignments, so re-simulating a day rewrites the same files byte for byte.

    Args:
        home: the platform's folders (``ab_pipelines.settings.paths()``).
        start: the first day to simulate.
        days: how many days, at least 1.
        users: population size (default 20000, or the stored one).
        seed: random seed (default 7, or the stored one).
        registry: the experiments and metrics (default: ``load_registry()``).
        assigner: ``assigner(experiment, unit, attributes) -> variant | None``; default
            :func:`registry_assigner` on ``registry``.
        history_days: pre-period days simulated on first use (0: none, e.g. in tests).
        sink: produce the records to Kafka instead of writing dump files
            (``ab_pipelines.simulate.to_kafka.KafkaDelivery``; the sink connector writes them).

    Raises:
        ValueError: ``users``/``seed`` differ from the stored simulation, or bad arguments.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}.")
    if users is not None and users < 1:
        raise ValueError(f"users must be at least 1, got {users}.")
    registry = registry if registry is not None else load_registry()
    assigner = assigner if assigner is not None else registry_assigner(registry)
    n_users, n_seed, state = _resolve_state(home, users, seed)
    history = _history(registry, start, history_days) if state is None else []
    plan = [(d, False) for d in history]
    plan += [(start + dt.timedelta(days=i), True) for i in range(days)]
    # The state is stored once the history is written (below): a run killed before that
    # simulates the history again (the same bytes), rather than never.
    new_state = None
    if state is None:
        home.raw.mkdir(parents=True, exist_ok=True)
        new_state = {"users": n_users, "seed": n_seed, "first_day": plan[0][0].isoformat()}

    pop = make_population(n_users, n_seed)
    bandit_arms = _load_bandit_arms(home)
    assignments_cache: dict[str, np.ndarray] = {}
    holdout_groups: dict[str, np.ndarray] = {}
    files: list[str] = []
    lines: dict[str, int] = {}
    malformed = duplicates = late = 0
    for day, with_experiments in plan:
        running = [
            e for e in registry.experiments.values() if with_experiments and is_running(e, day)
        ]
        assignments = {}
        for exp in running:
            if exp.is_bandit:  # assigned at the first visit, with the weights served that day
                active = visitors(pop, day, n_seed)
                arms = bandit_arms.setdefault(exp.id, {})
                assignments[exp.id] = _assign_bandit(pop, exp, assigner, day, active, arms)
                continue
            if exp.id not in assignments_cache:
                assignments_cache[exp.id] = assign_population(pop, exp, assigner)
            assignments[exp.id] = assignments_cache[exp.id]
        segments = {"platform": pop.platform_names, "country": pop.country_names}
        mults = user_multipliers(pop.size, assignments, registry.experiments, segments)
        plans = _exposure_plans(pop, running, assignments, assigner)
        plans += _holdout_plans(pop, registry, running, day, assigner, holdout_groups)
        events = day_events(pop, day, n_seed, mults, plans)
        delivered = deliver_day(home.raw, day, n_seed, events, sink)
        files += delivered.files
        for topic, n in delivered.lines.items():
            lines[topic] = lines.get(topic, 0) + n
        malformed += len(delivered.malformed)
        duplicates += delivered.replayed + delivered.retried
        late += delivered.late
        if running:
            entries = {}
            for exp in running:
                variants = assignments[exp.id]
                eligible = variants >= 0
                if exp.overrides:
                    eligible &= np.array([u not in exp.overrides for u in pop.user_ids])
                own = user_multipliers(pop.size, {exp.id: variants}, registry.experiments)
                other_q = mults["purchase_prob"] / own["purchase_prob"]
                entries[exp.id] = experiment_truth(
                    exp, registry.metrics, day, eligible, pop.visit_prob, pop.purchase_prob, other_q
                )
            merge_truth(
                home.truth_file,
                entries,
                {"users": n_users, "seed": n_seed},
                interaction_truth(registry.experiments),
            )
    if bandit_arms:
        _save_bandit_arms(home, bandit_arms)
    if new_state is not None:
        tmp = state_path(home).with_name(".sim_state.tmp")
        tmp.write_bytes(orjson.dumps(new_state, option=orjson.OPT_INDENT_2) + b"\n")
        os.replace(tmp, state_path(home))
    return SimulationReport(
        days=tuple(d for d, _ in plan),
        history_days=tuple(history),
        files=tuple(files),
        lines=lines,
        malformed=malformed,
        duplicates=duplicates,
        late=late,
    )
