"""The simulated users and how they are assigned to experiments.

Each user carries latent traits drawn once from the seed (visit probability, purchase probability,
order value, page speed), so behaviour before an experiment predicts behaviour during it: this is
what gives CUPED its variance reduction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ab_pipelines.config.models import Experiment
from ab_pipelines.config.registry import Registry

__all__ = [
    "COUNTRIES",
    "PLATFORMS",
    "Assigner",
    "Population",
    "assign_population",
    "make_population",
    "registry_assigner",
    "sdk_assigner",
]

COUNTRIES = ("US", "CA", "GB", "DE", "BR")
COUNTRY_SHARES = (0.45, 0.10, 0.15, 0.15, 0.15)
PLATFORMS = ("ios", "android", "web")
PLATFORM_SHARES = (0.35, 0.35, 0.30)
# Phones load pages more slowly than desktops in this world: a search_speed-style test has room.
PLATFORM_SPEED_MS = (1400.0, 1600.0, 1100.0)

# (experiment, unit value, attributes) -> variant id, or None when the unit is not in the experiment.
Assigner = Callable[[Experiment, str, Mapping[str, str]], "str | None"]


@dataclass(frozen=True)
class Population:
    """N users as parallel arrays; ``user_ids[i]`` is ``"user-<i+1>"``.

    Attributes:
        user_ids: the user ids (the Kafka key and the ``user_id`` field).
        country: index into COUNTRIES per user.
        platform: index into PLATFORMS per user.
        visit_prob: latent daily visit probability v_u (one visit per active day).
        purchase_prob: latent per-visit purchase probability q_u.
        order_value: the user's mean order value (currency units).
        speed_ms: the user's mean page load time in milliseconds.
    """

    user_ids: list[str]
    country: np.ndarray
    platform: np.ndarray
    visit_prob: np.ndarray
    purchase_prob: np.ndarray
    order_value: np.ndarray
    speed_ms: np.ndarray

    @property
    def size(self) -> int:
        return len(self.user_ids)

    @cached_property
    def platform_names(self) -> np.ndarray:
        """Each user's platform name (the ``platform`` attribute)."""
        return np.asarray(PLATFORMS)[self.platform]

    @cached_property
    def country_names(self) -> np.ndarray:
        """Each user's country code (the ``country`` attribute)."""
        return np.asarray(COUNTRIES)[self.country]

    @cached_property
    def attributes(self) -> list[dict[str, str]]:
        """The targeting attributes of every user (what an exposure's ``attributes`` holds)."""
        return [
            {"country": COUNTRIES[c], "platform": PLATFORMS[p]}
            for c, p in zip(self.country.tolist(), self.platform.tolist(), strict=True)
        ]


def make_population(users: int, seed: int) -> Population:
    """Draw ``users`` users deterministically from ``seed`` (vectorized).

    >>> p = make_population(3, 7)
    >>> p.user_ids, p.size
    (['user-1', 'user-2', 'user-3'], 3)
    """
    rng = np.random.default_rng([seed, 0])
    country = rng.choice(len(COUNTRIES), size=users, p=COUNTRY_SHARES)
    platform = rng.choice(len(PLATFORMS), size=users, p=PLATFORM_SHARES)
    visit_prob = rng.beta(2.0, 5.0, users)
    purchase_prob = rng.beta(1.5, 25.0, users)
    order_value = np.exp(rng.normal(np.log(40.0), 0.5, users))
    speed_ms = np.asarray(PLATFORM_SPEED_MS)[platform] * np.exp(rng.normal(0.0, 0.25, users))
    return Population(
        user_ids=[f"user-{i + 1}" for i in range(users)],
        country=country,
        platform=platform,
        visit_prob=visit_prob,
        purchase_prob=purchase_prob,
        order_value=order_value,
        speed_ms=speed_ms,
    )


def registry_assigner(registry: Registry | None = None) -> Assigner:
    """An assigner that asks the SDK (CONTRACTS section 6), on the registry, without kills or a
    sticky store: the rules live once, in :class:`~ab_pipelines.assignment.Client`.

    Each experiment is compiled as the publisher compiles it (``compile_experiment``, with the
    registry's running holdouts) into an unsigned payload that a trusted SDK client evaluates: a
    forced override wins; a held-out user gets None; a stopped
    experiment returns its ``shipped_variant`` (else the baseline); an experiment that is not
    running or stopped, or whose targeting does not match, returns None; then the hash. When
    ``registry`` is given, its definition of the experiment wins over the one passed in (as the
    SDK reads the published config, not the caller's copy).
    """
    from ab_pipelines.assignment.client import Client
    from ab_pipelines.config.publish import compile_experiment, compile_holdouts
    from ab_pipelines.contracts.payload import build_payload

    # the running holdouts, as the publisher compiles them: held-out users get no variant
    holdouts = compile_holdouts(registry) if registry is not None else {}

    # id(experiment) -> (experiment, its one-experiment client), built once per definition.
    clients: dict[int, tuple[Experiment, Client]] = {}

    def client_of(exp: Experiment) -> Client:
        hit = clients.get(id(exp))
        if hit is None or hit[0] is not exp:
            entries = {exp.id: compile_experiment(exp, killed=False)}
            payload = build_payload(entries, version=1, published_at=None, holdouts=holdouts)
            hit = (exp, Client.from_payload(payload, trusted=True))
            clients[id(exp)] = hit
        return hit[1]

    def assign(experiment: Experiment, unit: str, attributes: Mapping[str, str]) -> str | None:
        exp = registry.experiments.get(experiment.id, experiment) if registry else experiment
        if exp.status not in ("running", "stopped"):
            return None  # not in a published config: the SDK never sees it
        if exp.unit != "user_id":
            attributes = {**attributes, exp.unit: unit}
        return client_of(exp).assign(unit, exp.id, attributes)

    return assign


def assign_population(pop: Population, experiment: Experiment, assigner: Assigner) -> np.ndarray:
    """Variant index of every user in ``experiment`` (position in ``experiment.variants``), -1 if out.

    A variant id the experiment does not define (an assigner bug) counts as out.
    """
    index = {v: i for i, v in enumerate(experiment.variant_ids)}
    out = np.full(pop.size, -1, dtype=np.int64)
    for i, (uid, attrs) in enumerate(zip(pop.user_ids, pop.attributes, strict=True)):
        unit = uid if experiment.unit == "user_id" else attrs.get(experiment.unit, uid)
        v = assigner(experiment, unit, attrs)
        if v is not None:
            out[i] = index.get(v, -1)
    return out


def sdk_assigner(client) -> Assigner:
    """An assigner that asks the SDK ``client`` (the config published so far), as real traffic would.

    Each simulated day is one client session: the SDK's own exposure logging (once per unit and
    running experiment, never for overrides, killed or stopped experiments) decides which users
    log exposures that day; the simulator writes those exposures, with its delivery quirks (late,
    duplicate, malformed), in the SDK sink's dump format. Killed and stopped experiments return
    None here: their users are served the baseline, log nothing and carry no planted effect.
    ``assign.logged(experiment_id)`` gives the units the SDK logged.
    """
    from ab_pipelines.assignment import ListExposureSink

    if client.exposure_sink is None:
        client.exposure_sink = ListExposureSink()
    sink = client.exposure_sink

    def assign(experiment: Experiment, unit: str, attributes: Mapping[str, str]) -> str | None:
        config = client.config
        compiled = config.experiments.get(experiment.id) if config is not None else None
        if compiled is None or compiled.status != "running":
            return None
        return client.assign(unit, experiment.id, attributes)

    def logged(experiment_id: str) -> set[str]:
        return {e["unit"] for e in sink.events if e["experiment_id"] == experiment_id}

    assign.logged = logged
    return assign
