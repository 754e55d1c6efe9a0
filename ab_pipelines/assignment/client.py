"""The assignment client: reads the signed edge config and answers "which variant?" locally.

    from ab_pipelines.assignment import Client
    client = Client.from_file("$ABP_HOME/edge/config.json", refresh_seconds=30)
    client.assign("user-42", "checkout_cta", attributes={"country": "US"})   # variant id or None

The rules, in order (CONTRACTS section 6, docs/edge-config.md):

1. the experiment is not in the payload: None;
2. the unit value is the user id when ``unit`` is ``user_id``, else ``attributes[unit]``; a
   missing (None or empty) unit: None. Non-string values are compared and hashed as ``str(v)``;
3. a forced override for the unit wins;
3b. a holdout: in a layer held by a running holdout, a unit with ``bucket(holdout salt, unit)`` in
   the holdout's ``range`` gets None (reason "holdout <id>"), before the status, the targeting,
   the sticky store, the layer range and the hash: a stopped experiment's shipped variant never
   reaches the holdout; an override (3) still wins, so QA can see a variant;
4. ``killed`` returns the baseline, ``stopped`` its ``serve_variant`` (else the baseline);
5. targeting: every targeted attribute must be given and ``str(value)`` be one of its values;
6. a sticky store, when given, returns the unit's first variant (if still a variant);
7. the hash: in a layer ``bucket(layer, unit)`` must be in ``layer_buckets``; then the variant whose
   ``variant_buckets`` range holds ``bucket(salt, unit)``, or None;
8. an exposure is logged once per (unit, experiment) per client, only on steps 6 and 7;
8b. a unit that reaches rule 3b in a held layer is logged once per (unit, holdout) under the
   holdout's id, variant "holdout" (held out) or "general" (the equally wide bucket range above
   the held one: it sees the experiments), so the holdout is analysed like an experiment.

Speed: at load, every running experiment hashed on ``user_id`` without targeting gets a compiled
closure (``_fast_assigner``): salt prefix, overrides and a 10,000-entry bucket-to-variant table
bound in, so that ``assign`` is one dict lookup, one encode, one mmh3 call and one tuple index
(about 0.3 µs). With an exposure sink the client builds its own closures from the same tables,
which also hand a variant from the hash to the client's reporter of that experiment (rule 8:
dedupe, then the guarded ``sink.log``), the one function the full path reports through too
(``_first_exposure``). The memory of rule 8 is a set of unit strings per experiment, so a first
exposure allocates nothing the garbage collector tracks (with the Kafka sink's flat queue, no
collection pauses a caller). The closures are not used while the client has a sticky store;
every other case goes through ``_evaluate``, the readable statement of the rules above, and the
tests check both paths agree (variants, and the exact sequence of exposures) on the contract
corpus and on random users.

A payload is refused (one error line on the ``ab_pipelines.sdk`` logger, last good config kept)
when its signature, schema or version is wrong; the first load of ``from_*`` raises ConfigError.
Importing this module pulls in no Spark, Dagster, pandas or pyarrow.

Following the edge (docs/edge.md, "The SDK: streaming and polling"):

    with Client.from_url("http://127.0.0.1:8088/config", stream=True) as client:
        client.assign("user-42", "checkout_cta")   # a pushed version is served within a second

A URL is always fetched conditionally (``If-None-Match``: a 304 costs nothing). With
``stream=True`` a daemon thread (stream.py) holds ``<url>/stream`` and installs each pushed
version through the same decode, verify and install path, polling /config while the stream is
down; ``assign`` never waits on the network.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mmh3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ab_pipelines.assignment import signing
from ab_pipelines.assignment.exposures import ExposureSink
from ab_pipelines.assignment.sticky import StickyStore
from ab_pipelines.assignment.stream import (
    ConfigFetcher,
    EdgeFollower,
    StreamStats,
    stream_url_for,
)
from ab_pipelines.contracts.hashing import BUCKETS, bucket, pick_variant
from ab_pipelines.contracts.payload import (
    CompiledExperiment,
    PayloadError,
    ReadPayload,
    holdout_group,
    read_payload,
)

__all__ = [
    "Client",
    "CompiledExperiment",
    "ConfigError",
    "EdgeConfig",
    "held_out_by",
    "parse_payload",
]

log = logging.getLogger("ab_pipelines.sdk")

# How a variant was decided; exposures are logged only for STICKY and HASH.
OVERRIDE, KILLED, STOPPED, STICKY, HASH = "override", "killed", "stopped", "sticky", "hash"
_EXPOSED_PATHS = (STICKY, HASH)


def held_out_by(exp: CompiledExperiment, unit: str) -> str | None:
    """Rule 3b: the id of the first holdout (by id) of the experiment's layer whose range holds
    ``bucket(holdout salt, unit)``, or None."""
    for x in exp.holdouts:
        if x.lo <= bucket(x.salt, unit) < x.hi:
            return x.id
    return None


class ConfigError(PayloadError):
    """An edge config that cannot be used: unreadable, not JSON, unsigned, bad schema or version."""


@dataclass(frozen=True)
class EdgeConfig(ReadPayload):
    """A validated payload (version, content_sha, published_at, experiments); ``fast`` holds the
    compiled closures of the experiments that have one."""

    fast: Mapping[str, Callable[..., str | None]] = field(default_factory=dict)
    # the bucket-to-variant table of each experiment in ``fast``, to build logging closures from
    fast_tables: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)


def _bucket_table(
    exp: CompiledExperiment, tables: dict[tuple, tuple[str | None, ...]]
) -> tuple[str | None, ...]:
    """The variant of each of the 10,000 buckets (None outside every range); equal tables of
    different experiments (say, every 50/50 experiment) are one object."""
    key = (exp.variants, exp.ranges)
    table = tables.get(key)
    if table is None:
        cells: list[str | None] = [None] * BUCKETS
        for b in range(BUCKETS):
            i = pick_variant(exp.ranges, b)
            if i is not None:
                cells[b] = exp.variants[i]
        table = tables[key] = tuple(cells)
    return table


# A client's first_exposure(experiment_id, unit, user_id, variant, attributes): rule 8.
ExposureReporter = Callable[[str, str, str, str, Mapping[str, Any] | None], None]
# The same for one experiment: report(unit, user_id, variant, attributes).
ExperimentReporter = Callable[[str, str, str, Mapping[str, Any] | None], None]


def _fast_assigner(
    exp: CompiledExperiment,
    table: tuple[str | None, ...],
    report: ExperimentReporter | None = None,
) -> Callable[..., str | None] | None:
    """``f(user_id, attributes=None)`` giving what ``_evaluate`` gives for a running experiment
    hashed on user_id without targeting, or None for the experiments it does not cover. With
    ``report`` (the client's reporter of this experiment), a variant from the hash (not an
    override) is also reported there, as ``Client._assign`` reports it."""
    if exp.fixed is not None or not exp.by_user or exp.targeting:
        return None
    # bucket()'s bytes, f"{salt}:{unit}" encoded with surrogatepass, built from two halves.
    prefix = f"{exp.salt}:".encode("utf-8", "surrogatepass")
    overrides = exp.overrides or None
    layer, lo, hi = exp.layer, exp.layer_lo, exp.layer_hi
    layer_prefix = f"{layer}:".encode("utf-8", "surrogatepass") if layer is not None else b""
    # rule 3b; holdouts exist only in layers, so an experiment outside one never looks at them
    held = (
        tuple((f"{x.salt}:".encode("utf-8", "surrogatepass"), x.lo, x.hi) for x in exp.holdouts)
        or None
    )
    h = mmh3.hash

    def assign(unit, attributes=None):
        if type(unit) is not str:
            if unit is None or unit == "":
                return None
            unit = str(unit)
        elif not unit:
            return None
        if overrides is not None:
            v = overrides.get(unit)
            if v is not None:
                return v
        try:
            key = unit.encode()  # strict utf-8 is 3x faster, and the same bytes when it succeeds
        except UnicodeEncodeError:
            key = unit.encode("utf-8", "surrogatepass")  # a lone surrogate, as bucket() does
        if layer is not None:
            if held is not None:
                for held_prefix, held_lo, held_hi in held:
                    if held_lo <= h(held_prefix + key, 0, False) % BUCKETS < held_hi:
                        return None
            if not lo <= h(layer_prefix + key, 0, False) % BUCKETS < hi:
                return None
        v = table[h(prefix + key, 0, False) % BUCKETS]
        if report is not None and v is not None:
            report(unit, unit, v, attributes)  # the unit is the user id here
        return v

    return assign


def _compile_fast(
    experiments: Mapping[str, CompiledExperiment],
) -> tuple[dict[str, Callable[..., str | None]], dict[str, tuple[str | None, ...]]]:
    """The closures without exposure logging, and the table each one is built on."""
    shared: dict[tuple, tuple[str | None, ...]] = {}
    closures, tables = {}, {}
    for exp_id, exp in experiments.items():
        table = _bucket_table(exp, shared)
        f = _fast_assigner(exp, table)
        if f is not None:
            closures[exp_id], tables[exp_id] = f, table
    return closures, tables


def parse_payload(payload: object) -> EdgeConfig:
    """Schema-check a payload (docs/edge-config.md, schema 1) and precompute it, or ConfigError."""
    try:
        read = read_payload(payload)
    except PayloadError as exc:
        raise ConfigError(str(exc)) from None
    fast, tables = _compile_fast(read.experiments)
    return EdgeConfig(
        read.version,
        read.content_sha,
        read.published_at,
        read.experiments,
        read.holdouts,
        fast=fast,
        fast_tables=tables,
    )


class Client:
    """Local, deterministic assignment from the edge config. Build it with ``from_file``,
    ``from_url`` or ``from_payload``.

    Args (of every constructor):
        refresh_seconds: reload the source lazily, on an ``assign`` after this many seconds.
        public_key: base64 raw Ed25519 key, a path to one, or a key object; default
            ``ABP_PUBLIC_KEY`` or (outside prod) the development key.
        sticky: a StickyStore; a unit then keeps its first variant across config changes.
        exposure_sink: an ExposureSink; the first exposure per (unit, experiment) goes there.
        exposure_memory: how many (unit, experiment) pairs the client remembers as exposed;
            default all. A server that sees millions of units sets a bound: the memory is
            emptied when full, so a unit may be logged again (harmless: the analysis keeps
            each unit's first exposure).
    """

    def __init__(
        self,
        *,
        refresh_seconds: float | None = None,
        public_key: str | Ed25519PublicKey | None = None,
        sticky: StickyStore | None = None,
        exposure_sink: ExposureSink | None = None,
        exposure_memory: int | None = None,
    ) -> None:
        if exposure_memory is not None and exposure_memory < 1:
            raise ValueError(f"exposure_memory must be >= 1, not {exposure_memory}")
        self._exposure_memory = exposure_memory
        self._config: EdgeConfig | None = None
        self._public_key = public_key
        self._resolved_key: Ed25519PublicKey | None = (
            public_key if isinstance(public_key, Ed25519PublicKey) else None
        )
        self._fast: Mapping[str, Callable[..., str | None]] = {}
        self._first_exposure: ExposureReporter | None = None
        self._sticky = sticky
        self._exposure_sink = exposure_sink
        # Rule 8's memory: the units exposed so far, per experiment id (kept across configs),
        # and (with exposure_memory) how many (unit, experiment) pairs that is in all.
        self._exposed_units: dict[str, set[str]] = {}
        self._exposed_count = [0]
        self._swap_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._source: str | None = None
        self._source_kind: str | None = None
        self._last_raw: bytes | None = None
        self._fetcher: ConfigFetcher | None = None
        self._follower: EdgeFollower | None = None
        self._refusals_logged: set[str] = set()  # the follower's, logged once per reason
        self.refresh_seconds = refresh_seconds
        self._refresh_at: float | None = None
        self._io_errors_logged: set[str] = set()

    # The compiled closures skip the sticky store, so they serve only while it is None; setting a
    # store or a sink (now or later) rebinds both paths (_select_fast).
    @property
    def sticky(self) -> StickyStore | None:
        return self._sticky

    @sticky.setter
    def sticky(self, store: StickyStore | None) -> None:
        self._sticky = store
        self._select_fast()

    @property
    def exposure_sink(self) -> ExposureSink | None:
        return self._exposure_sink

    @exposure_sink.setter
    def exposure_sink(self, sink: ExposureSink | None) -> None:
        self._exposure_sink = sink
        self._select_fast()

    def _select_fast(self) -> None:
        """Bind ``_first_exposure`` and the compiled closures to the config, sink and store held
        now: the config's own closures without a sink, closures that report exposures with one,
        none with a sticky store."""
        cfg, sink = self._config, self._exposure_sink
        if cfg is None or sink is None:
            report = reporter = None
        else:
            report, reporter = self._exposure_reporters(sink, cfg)
        if cfg is None or self._sticky is not None:
            fast = {}
        elif reporter is None:
            fast = cfg.fast
        else:
            # An experiment in a held layer also logs holdout exposures (rule 8b): the full path.
            fast = {
                exp_id: _fast_assigner(cfg.experiments[exp_id], table, reporter(exp_id))
                for exp_id, table in cfg.fast_tables.items()
                if not cfg.experiments[exp_id].holdouts
            }
        self._first_exposure, self._fast = report, fast

    def _exposure_reporters(
        self, sink: ExposureSink, cfg: EdgeConfig
    ) -> tuple[ExposureReporter, Callable[[str], ExperimentReporter]]:
        """Rule 8 for both paths: the first exposure of (unit, experiment) to ``sink.log``, with
        the version of ``cfg`` (the config the variant came from); a failing sink is logged once
        and never raises into ``assign``. Returns ``first_exposure`` (any experiment) and
        ``reporter(experiment_id)``, the same for one experiment, its memory bound in."""
        memory, version, log_failure = self._exposed_units, cfg.version, self._log_io_once
        limit, count = self._exposure_memory, self._exposed_count
        reporters: dict[str, ExperimentReporter] = {}

        def reporter(experiment_id: str) -> ExperimentReporter:
            known = reporters.get(experiment_id)
            if known is not None:
                return known
            seen = memory.setdefault(experiment_id, set())  # atomic: threads share one set

            def report(unit, user_id, variant, attributes) -> None:
                if unit in seen:
                    return
                if limit is not None:
                    if count[0] >= limit:  # full: forget every pair (a unit may log again)
                        for units in list(memory.values()):  # a snapshot: threads may add
                            units.clear()
                        count[0] = 0
                    count[0] += 1
                seen.add(unit)
                try:
                    sink.log(
                        unit=unit,
                        user_id=user_id,
                        experiment_id=experiment_id,
                        variant=variant,
                        config_version=version,
                        attributes=attributes,
                    )
                except Exception as exc:  # noqa: BLE001 - a sink failure never breaks assign
                    log_failure("exposure sink", exc)

            reporters[experiment_id] = report
            return report

        def first_exposure(experiment_id, unit, user_id, variant, attributes) -> None:
            report = reporters.get(experiment_id)
            if report is None:
                report = reporter(experiment_id)
            report(unit, user_id, variant, attributes)

        return first_exposure, reporter

    @property
    def _exposed(self) -> set[tuple[str, str]]:
        """The (unit, experiment_id) pairs remembered as exposed, as a new set (for inspection)."""
        return {(u, e) for e, units in list(self._exposed_units.items()) for u in list(units)}

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_file(cls, path: str | Path, refresh_seconds: float | None = None, **kw) -> Client:
        """A client reading a signed config file; ConfigError if the first read is refused."""
        client = cls(refresh_seconds=refresh_seconds, **kw)
        client._source, client._source_kind = str(path), "file"
        client._reload(first=True)
        return client

    @classmethod
    def from_url(
        cls,
        url: str,
        refresh_seconds: float | None = None,
        *,
        stream: bool = False,
        stream_url: str | None = None,
        stream_timeout: float = 45.0,
        request_timeout: float = 10.0,
        **kw,
    ) -> Client:
        """A client fetching a signed config over HTTP(S) with urllib, with ``If-None-Match``
        (the ETag of the last 200) so that an unchanged config costs a 304.

        With ``stream=True`` it follows the edge's push: after the first GET (synchronous;
        ConfigError if refused) a daemon thread holds ``stream_url`` (default ``<url>/stream``)
        and installs each pushed version; while the stream is down it polls ``url`` every
        ``refresh_seconds`` (default 5) and reconnects with backoff (0.5 s doubling to 30 s).
        ``stream_timeout``: seconds of silence (about three 15 s heartbeats) after which the
        stream is dead; ``request_timeout``: of a poll and of the stream's connect. ``close()``
        (or ``with``) stops the thread; ``stream_stats`` says what it did.
        """
        client = cls(refresh_seconds=None if stream else refresh_seconds, **kw)
        client._source, client._source_kind = url, "url"
        client._fetcher = ConfigFetcher(url, timeout=request_timeout)
        client._reload(first=True)
        if stream:
            follower = EdgeFollower(
                client,
                stream_url=stream_url or stream_url_for(url),
                fetcher=client._fetcher,
                poll_seconds=5.0 if refresh_seconds is None else refresh_seconds,
                read_timeout=stream_timeout,
                request_timeout=request_timeout,
            )
            client._follower = follower
            weakref.finalize(client, follower.close).atexit = False  # dropped without close()
            follower.start()
        return client

    @classmethod
    def from_payload(
        cls, envelope_or_dict: Mapping | str | bytes, *, trusted: bool = False, **kw
    ) -> Client:
        """A client from a signed envelope (dict or JSON text). An unsigned payload dict is
        accepted only with ``trusted=True`` (tests, the simulator)."""
        client = cls(**kw)
        client._install(client._decode(envelope_or_dict, trusted), "payload")
        return client

    # ----------------------------------------------------------------- loading

    @property
    def config_version(self) -> int | None:
        return self._config.version if self._config else None

    @property
    def config(self) -> EdgeConfig | None:
        return self._config

    @property
    def experiment_ids(self) -> list[str]:
        return list(self._config.experiments) if self._config else []

    def _key(self) -> Ed25519PublicKey:
        if self._resolved_key is None:
            self._resolved_key = signing.public_key(self._public_key)
        return self._resolved_key

    def _decode(self, data: Mapping | str | bytes, trusted: bool) -> EdgeConfig:
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise ConfigError(f"not JSON (truncated?): {exc}") from None
        if isinstance(data, Mapping) and "payload" in data:
            try:
                payload = signing.verify_envelope(dict(data), self._key())
            except signing.SignatureError as exc:
                raise ConfigError(f"signature refused: {exc}") from None
        elif trusted:
            payload = data
        else:
            raise ConfigError(
                "not a signed envelope (unsigned payloads need from_payload(..., trusted=True))"
            )
        return parse_payload(payload)

    def _install(self, cfg: EdgeConfig, source: str) -> bool:
        """Swap in ``cfg`` unless its version goes back or reuses a number for other content."""
        with self._swap_lock:
            held = self._config
            if held is not None:
                if cfg.version < held.version:
                    raise ConfigError(
                        f"version {cfg.version} is lower than the held version {held.version}"
                    )
                if cfg.version == held.version:
                    if cfg.content_sha != held.content_sha:
                        raise ConfigError(
                            f"version {cfg.version} is already held with different content"
                        )
                    return False
            self._config = cfg
            self._select_fast()
        log.debug("edge config version %d loaded from %s", cfg.version, source)
        return True

    def load_payload(
        self, envelope_or_dict: Mapping | str | bytes, *, trusted: bool = False, source="payload"
    ) -> bool:
        """Offer a new payload; True if it was installed, False if refused (logged) or unchanged."""
        return bool(self._offer(envelope_or_dict, source, trusted=trusted))

    def install(
        self, data: Mapping | str | bytes, source: str = "payload", *, trusted: bool = False
    ) -> bool:
        """Decode, verify and install a payload: True if installed, False if that version is
        held already. Raises ConfigError saying why it is refused (the held config stays);
        unlike ``load_payload`` nothing is logged, for a caller that reports refusals itself."""
        return self._install(self._decode(data, trusted), source)

    def _offer(
        self, data: Mapping | str | bytes, source: str, *, trusted=False, log_once=False
    ) -> bool | None:
        """Decode, verify and install: True if installed, False if already held, None if refused.
        ``log_once`` (the follower) logs a reason once until a version is installed."""
        try:
            installed = self.install(data, source, trusted=trusted)
        except ConfigError as exc:
            reason = str(exc)
            if log_once:
                if reason in self._refusals_logged:
                    return None
                if len(self._refusals_logged) >= 100:  # a server inventing reasons: bounded
                    self._refusals_logged.clear()
                self._refusals_logged.add(reason)
            self._refuse(source, reason)
            return None
        if installed:
            self._refusals_logged.clear()
        return installed

    def _refuse(self, source: str, reason: str) -> None:
        log.error(
            "edge config from %s refused: %s; keeping version %s",
            source,
            reason,
            self.config_version,
        )

    def _read_source(self) -> bytes | None:
        """The source's bytes, or None when the edge answered 304 Not Modified."""
        if self._source_kind == "file":
            return Path(self._source).read_bytes()
        return self._fetcher.get()

    def _reload(self, first: bool = False) -> bool:
        if self.refresh_seconds is not None:
            self._refresh_at = time.monotonic() + self.refresh_seconds
        try:
            raw = self._read_source()
        except OSError as exc:
            if first:
                raise ConfigError(f"{self._source}: cannot read: {exc}") from None
            self._refuse(self._source, f"cannot read: {exc}")
            return False
        if raw is None or raw == self._last_raw:
            return False  # unchanged since the last attempt: already installed or refused
        self._last_raw = raw
        try:
            return self._install(self._decode(raw, trusted=False), self._source)
        except ConfigError as exc:
            if first:
                raise ConfigError(f"{self._source}: {exc}") from None
            self._refuse(self._source, str(exc))
            return False

    def refresh(self) -> bool:
        """Reload the file or URL now; True if a new version was installed."""
        if self._source is None:
            return False
        with self._refresh_lock:
            return self._reload()

    @property
    def stream_state(self) -> str | None:
        """ "streaming", "polling" (the stream is down) or "closed"; None without a stream."""
        return self._follower.state if self._follower is not None else None

    @property
    def stream_stats(self) -> StreamStats | None:
        """Versions received by stream and by poll, refused payloads, reconnects, polls and
        304s so far; None without a stream."""
        return self._follower.stats() if self._follower is not None else None

    def close(self) -> None:
        """Stop following the edge (the thread ends within a second) and flush the exposure
        sink. The client keeps answering from the config it holds."""
        if self._follower is not None:
            self._follower.close()
        self.flush()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _lazy_refresh(self) -> None:
        if self._refresh_lock.acquire(blocking=False):  # another thread is already reloading
            try:
                if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
                    self._reload()
            finally:
                self._refresh_lock.release()

    # ----------------------------------------------------------------- assignment

    def _evaluate(
        self, exp: CompiledExperiment, user_id, attributes, trace: dict | None
    ) -> tuple[str | None, str | None, str | None]:
        """(variant, how it was decided, unit value): rules 2 to 7."""
        unit = user_id if exp.by_user else attributes.get(exp.unit) if attributes else None
        if unit is None or unit == "":
            if trace is not None:
                trace["unit_value"] = None
                trace["decided_by"] = "no unit value"
            return None, None, None
        if type(unit) is not str:
            unit = str(unit)
        if trace is not None:
            trace["unit_value"] = unit
            trace["override"] = exp.overrides.get(unit)
        v = exp.overrides.get(unit)
        if v is not None:
            return v, OVERRIDE, unit
        if exp.holdouts:  # rule 3b: before the status, so a shipped variant skips the holdout
            held_by = held_out_by(exp, unit)
            if trace is not None:
                trace["held_out_by"] = held_by
            if held_by is not None:
                if trace is not None:
                    trace["decided_by"] = f"holdout {held_by}"
                return None, None, unit
        if exp.fixed is not None:
            return exp.fixed, exp.status, unit
        if exp.targeting:
            ok = True
            for attr, allowed in exp.targeting:
                a = attributes.get(attr) if attributes else None
                if a is not None and type(a) is not str:
                    a = str(a)
                hit = a is not None and a in allowed
                if trace is not None:
                    trace.setdefault("targeting", {})[attr] = {
                        "value": a,
                        "allowed": sorted(allowed),
                        "match": hit,
                    }
                if not hit:
                    ok = False
                    if trace is None:
                        break
            if not ok:
                if trace is not None:
                    trace["targeting_match"] = False
                    trace["decided_by"] = "targeting"
                return None, None, unit
            if trace is not None:
                trace["targeting_match"] = True
        if self.sticky is not None:
            try:
                v = self.sticky.get(unit, exp.id)
            except Exception as exc:  # noqa: BLE001 - a broken store falls back to the hash
                self._log_io_once("sticky get", exc)
                v = None
            if trace is not None:
                trace["sticky"] = v
            if v is not None and v in exp.variant_set:
                return v, STICKY, unit
        if exp.layer is not None:
            lb = bucket(exp.layer, unit)
            if trace is not None:
                trace["layer_bucket"] = lb
                trace["in_layer"] = exp.layer_lo <= lb < exp.layer_hi
            if not exp.layer_lo <= lb < exp.layer_hi:
                if trace is not None:
                    trace["decided_by"] = "not in layer range"
                return None, None, unit
        b = bucket(exp.salt, unit)
        i = pick_variant(exp.ranges, b)
        if trace is not None:
            trace["bucket"] = b
            trace["variant_range"] = list(exp.ranges[i]) if i is not None else None
        if i is None:
            if trace is not None:
                trace["decided_by"] = "bucket in no variant range"
            return None, None, unit
        return exp.variants[i], HASH, unit

    def _assign(self, exp: CompiledExperiment, user_id, attributes) -> str | None:
        return self._decide(exp, user_id, attributes, None)[0]

    def _decide(
        self, exp: CompiledExperiment, user_id, attributes, trace: dict | None
    ) -> tuple[str | None, str | None]:
        """(variant, how) with the side effects of ``assign``: the sticky write, rule 8."""
        variant, how, unit = self._evaluate(exp, user_id, attributes, trace)
        if how is HASH and self.sticky is not None:
            try:
                self.sticky.set(unit, exp.id, variant)
            except Exception as exc:  # noqa: BLE001
                self._log_io_once("sticky set", exc)
        report = self._first_exposure
        if report is not None and unit is not None:
            if exp.holdouts and how is not OVERRIDE:  # rule 8b: reached the holdout rule
                user = str(user_id) if user_id is not None and user_id != "" else unit
                for x in exp.holdouts:
                    group = holdout_group(x, unit)
                    if group is not None:
                        report(x.id, unit, user, group, attributes)
            if how is HASH or how is STICKY:
                user = str(user_id) if user_id is not None and user_id != "" else unit
                report(exp.id, unit, user, variant, attributes)
        return variant, how

    def assign(
        self, unit_or_user_id: str, experiment_id: str, attributes: Mapping[str, Any] | None = None
    ) -> str | None:
        """The variant id for this user (or unit) in one experiment, or None."""
        if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
            self._lazy_refresh()
        fast = self._fast.get(experiment_id)
        if fast is not None:
            return fast(unit_or_user_id, attributes)
        exp = self._config.experiments.get(experiment_id)
        if exp is None:
            return None
        return self._assign(exp, unit_or_user_id, attributes)

    def assign_all(
        self, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """{experiment_id: variant} for every experiment of the payload that gives a variant."""
        if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
            self._lazy_refresh()
        out = {}
        fast = self._fast
        for exp_id, exp in self._config.experiments.items():
            f = fast.get(exp_id)
            v = f(user_id, attributes) if f is not None else self._assign(exp, user_id, attributes)
            if v is not None:
                out[exp_id] = v
        return out

    def evaluate(
        self,
        user_id: str,
        attributes: Mapping[str, Any] | None = None,
        experiments: list[str] | tuple[str, ...] | None = None,
    ) -> dict[str, tuple[str | None, str]]:
        """``{experiment_id: (variant or None, reason)}`` for every experiment of the payload
        (or those named), with the side effects of ``assign`` (sticky write, first exposure).
        The reason says how the variant was decided (override, killed, stopped, sticky, hash)
        or why there is none (not in payload, no unit value, targeting, holdout <id>, not in
        layer range, bucket in no variant range). Remote evaluation (``abp serve``'s ``/assign``) uses it."""
        if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
            self._lazy_refresh()
        known = self._config.experiments
        out: dict[str, tuple[str | None, str]] = {}
        for exp_id in known if experiments is None else experiments:
            exp = known.get(exp_id)
            if exp is None:
                out[exp_id] = (None, "not in payload")
                continue
            trace: dict[str, Any] = {}
            variant, how = self._decide(exp, user_id, attributes, trace)
            out[exp_id] = (variant, how or trace.get("decided_by") or "no variant")
        return out

    def explain(
        self, user_id: str, experiment_id: str, attributes: Mapping[str, Any] | None = None
    ) -> dict:
        """Every step of the decision, without side effects (no sticky write, no exposure).

        Keys: in_payload, status, unit, unit_value, override, targeting (per attribute) and
        targeting_match, holdouts (of the layer) and held_out_by, sticky, layer, layer_range, layer_bucket, in_layer, bucket,
        variant_ranges, variant_range (the range holding ``bucket``), variant, decided_by
        (override, killed, stopped, sticky, hash, or why None), exposure_eligible,
        exposure_already_logged, exposure_logged (by this client, now or on ``assign``).
        """
        cfg = self._config
        out: dict[str, Any] = {
            "experiment_id": experiment_id,
            "user_id": user_id,
            "config_version": cfg.version,
            "in_payload": experiment_id in cfg.experiments,
        }
        exp = cfg.experiments.get(experiment_id)
        if exp is None:
            out.update(variant=None, decided_by="not in payload", exposure_logged=False)
            return out
        out.update(
            status=exp.status,
            unit=exp.unit,
            salt=exp.salt,
            layer=exp.layer,
            layer_range=[exp.layer_lo, exp.layer_hi] if exp.layer is not None else None,
            holdouts={x.id: [x.lo, x.hi] for x in exp.holdouts},
            variant_ranges={v: list(r) for v, r in zip(exp.variants, exp.ranges, strict=True)},
            sticky_store=self.sticky is not None,
        )
        variant, how, unit = self._evaluate(exp, user_id, attributes, out)
        out["variant"] = variant
        if unit is not None and "bucket" not in out:
            # Decided before the hash step: still show where the hash would put the unit.
            if exp.layer is not None and "layer_bucket" not in out:
                lb = bucket(exp.layer, unit)
                out["layer_bucket"], out["in_layer"] = lb, exp.layer_lo <= lb < exp.layer_hi
            out["bucket"] = b = bucket(exp.salt, unit)
            i = pick_variant(exp.ranges, b)
            out["variant_range"] = list(exp.ranges[i]) if i is not None else None
        if how is not None:
            out["decided_by"] = how
        out.setdefault("decided_by", None)
        eligible = how in _EXPOSED_PATHS
        already = unit in self._exposed_units.get(experiment_id, ())
        out["exposure_eligible"] = eligible
        out["exposure_already_logged"] = already
        out["exposure_logged"] = eligible and (already or self.exposure_sink is not None)
        return out

    # ----------------------------------------------------------------- side effects

    def _log_io_once(self, what: str, exc: Exception) -> None:
        if what not in self._io_errors_logged:
            self._io_errors_logged.add(what)
            log.error("%s failed (assignment continues): %s", what, exc)

    def flush(self) -> None:
        """Flush the exposure sink (also done at interpreter exit by DumpExposureSink)."""
        if self.exposure_sink is not None:
            try:
                self.exposure_sink.flush()
            except Exception as exc:  # noqa: BLE001
                self._log_io_once("exposure sink", exc)
