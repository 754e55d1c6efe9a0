"""The demo driver (``abp demo``): day by day, simulate a day's traffic (through Kafka or straight
to dumps), then land and analyse it through Dagster runs, and print what the platform decided.

The platform's clock follows the simulated days: each day is published at its 00:00 and landed
and analysed at the next day's 00:00 (the runs carry that time as their ``abp/now`` tag), so a
kill made while analysing a day is stamped in simulated time and applies to the next simulated
day's traffic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from ab_pipelines.cli import (
    Stopped,
    UserError,
    home_or_fail,
    landing_table,
    published_assigner,
    registry_or_fail,
    require_engine,
    until_stopped,
)
from ab_pipelines.settings import Paths, settings
from jobs.driver import run_days

__all__ = ["play"]


def play(days: int | None, users: int | None, history_days: int | None, no_kafka: bool) -> None:
    """Play the demo (``abp demo``, whose help says what it does); errors as :class:`UserError`.

    The platform's clock follows the simulated days and is passed to what reads it: each day's
    publish, and the day's Dagster runs (their ``abp/now`` tag).
    """
    from ab_pipelines.simulate import HISTORY_DAYS, simulate_days

    history = history_days or HISTORY_DAYS

    if days is None:
        env_days = settings().demo_days
        if not env_days.isdigit() or not 1 <= int(env_days) <= 60:
            raise UserError(
                f"ABP_DEMO_DAYS '{env_days}' must be a whole number of days from 1 to 60."
            )
        days = int(env_days)
    p = home_or_fail()
    require_engine()
    reg = registry_or_fail()
    start = min(e.start_date for e in reg.experiments.values())
    click.echo(
        f"ABP_HOME={p.home}\nplaying {days} days from {start} (after {history} days of history)"
    )
    seen: set[str] = set()
    stack = contextlib.ExitStack()
    try:
        kafka = None if no_kafka else stack.enter_context(_DemoKafka(p))
        if kafka is not None:
            click.echo(kafka.describe())
        version = _publish_or_fail(p, _midnight(start))
        click.echo(f"edge config version {version} serving at {p.edge / 'config.json'}")
        for i in range(days):
            day = start + dt.timedelta(days=i)
            # Through Kafka a day is produced again unless the connector wrote all of it before
            # (the embedded broker lost whatever it had not written when the demo stopped).
            again = kafka.prepare(day) if kafka is not None else {}
            # On first use the history arrives too; a demo killed before landing it (the
            # state file is there, the ledger has no row of its days) lands it now.
            first_use = not (p.raw / "_sim_state.json").exists() or (
                i == 0 and _history_unlanded(p, day, history)
            )
            # The platform's clock follows the simulated days: publish before the day's traffic,
            # land and analyse once the day is over (so a kill is stamped in simulated time and
            # applies to the next simulated day's traffic).
            _publish_or_fail(p, _midnight(day))
            if again is None:
                click.echo(
                    f"Kafka: {day} was in the dumps already (written before the demo stopped)"
                )
            else:
                try:
                    simulate_days(
                        p,
                        day,
                        1,
                        users=again.get("users", users),
                        seed=again.get("seed"),
                        registry=registry_or_fail(),
                        assigner=published_assigner(p),
                        history_days=history,
                        sink=kafka.delivery if kafka else None,
                    )
                except ValueError as exc:
                    raise UserError(str(exc)) from None
                if kafka is not None:
                    click.echo(kafka.written(day))
            # On first use the history arrives too: land it with the first day, in one run.
            first = day - dt.timedelta(days=history) if first_use and i == 0 else day
            if not run_days(p, first, day, now=_midnight(day + dt.timedelta(days=1))):
                raise UserError(f"landing {first}..{day} failed; see the messages above.")
            span = [first + dt.timedelta(days=k) for k in range((day - first).days + 1)]
            click.echo(landing_table(p, span, header=i == 0))
            for line in _safety_lines(p, seen):
                click.echo(line)
        if kafka is not None:
            click.echo(kafka.reconciliation(start - dt.timedelta(days=history), day))
    except Stopped:
        raise UserError("the demo was stopped; run it again to go on where it stopped.") from None
    finally:
        stack.close()
    click.echo(_quality_line(p))
    click.echo(_scorecards(p, registry_or_fail()))
    click.echo(_kill_check(p))
    click.echo(
        "\nDone. Open the Dagster UI with 'make dagster' (http://127.0.0.1:3000) to see the assets, "
        "runs and their metadata, and the analysts' dashboard with 'make dashboard' (http://127.0.0.1:8501)."
    )


def _midnight(day: dt.date) -> dt.datetime:
    """The simulated clock at 00:00 UTC of ``day``."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _publish_or_fail(p: Paths, now: dt.datetime) -> int:
    """Publish the registry at ``now`` (a new version only if it changed); a broken registry
    stops here."""
    from ab_pipelines.config.publish import PublishRefused, publish

    try:
        return publish(p, actor="demo", now=now).version
    except PublishRefused as exc:
        raise UserError("the registry has problems:\n  " + "\n  ".join(exc.problems)) from None


class _DemoKafka:
    """The demo's Kafka: a broker (the running one, ABP_KAFKA_BOOTSTRAP's, or an embedded one
    started here), one ``abp connect`` child in a process group of its own, the simulator's
    producer; on exit the connector and a broker started here are stopped."""

    def __init__(self, p: Paths) -> None:
        self.p = p
        self.stack = contextlib.ExitStack()
        self.started_broker = False
        self.produced_before = 0
        self.committed_before = 0

    def __enter__(self) -> _DemoKafka:
        from ab_pipelines.events.kafka import (
            EmbeddedBroker,
            KafkaSettings,
            KafkaSetupError,
            ensure_topics,
            find_bootstrap,
        )
        from ab_pipelines.simulate.to_kafka import KafkaDelivery

        try:
            self.stack.enter_context(until_stopped())
            self.settings = KafkaSettings.from_env()
            self.bootstrap = find_bootstrap(self.p.home, self.settings)
            if self.bootstrap is None:
                broker = self.stack.enter_context(EmbeddedBroker(self.p.home))
                self.bootstrap, self.started_broker = broker.bootstrap, True
            ensure_topics(self.bootstrap, self.settings)
            # The demo waits for each day's records to be in files: rotate every second.
            env = {"ABP_CONNECT_MAX_SECONDS": os.environ.get("ABP_CONNECT_MAX_SECONDS", "1")}
            self.connector = self.stack.enter_context(_Child(self.p, ["connect"], "connector", env))
            self.delivery = KafkaDelivery(self.p.home, self.bootstrap, self.settings)
            # A broker of earlier runs (abp broker, a cluster) holds their records: what this
            # demo writes is counted from where the connector stands once it has caught up.
            self.committed_before = sum(self._caught_up().committed.values())
        except KafkaSetupError as exc:
            self.stack.close()
            raise UserError(str(exc)) from None
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    def describe(self) -> str:
        where = "embedded broker (tansu), started for the demo" if self.started_broker else "broker"
        return (
            f"Kafka: {where} at {self.bootstrap}; sink connector pid {self.connector.pid} "
            f"writing dumps to {self.p.raw} (log: {self.connector.log})"
        )

    @property
    def _progress_file(self) -> Path:
        return self.p.raw / "_demo_kafka.json"

    def _progress(self) -> dict:
        try:
            return json.loads(self._progress_file.read_text())
        except (OSError, ValueError):
            return {"done": [], "files": []}

    def _dump_files(self) -> list[str]:
        return sorted(
            f.relative_to(self.p.raw).as_posix()
            for t in self.p.raw.glob("*")
            if t.is_dir() and not t.name.startswith(("_", "."))
            for f in t.glob("date=*/*.jsonl*")
        )

    def prepare(self, day: dt.date) -> dict | None:
        """Before producing ``day``: None when the connector wrote all of it in an earlier
        demo (nothing to produce); else what to simulate with. The dump files written after the
        last day the connector finished belong to a day cut short (never landed: landing comes
        after the whole day is written): they are removed, and the day is produced again; if no
        day was finished, the history is simulated again too (the simulation state is removed,
        its population and seed kept)."""
        progress = self._progress()
        if day.isoformat() in progress["done"]:
            return None
        keep = set(progress["files"])
        partial = [f for f in self._dump_files() if f not in keep]
        for rel in partial:
            (self.p.raw / rel).unlink()
        state = self.p.raw / "_sim_state.json"
        if progress["done"] or not state.exists():
            return {}
        kept = json.loads(state.read_text())
        state.unlink()
        return {"users": kept["users"], "seed": kept["seed"]}

    def _caught_up(self, timeout: float = 300.0):
        """Wait until the connector has written (and committed) everything in the topics; the
        group's lag then."""
        from ab_pipelines.events.kafka import KafkaSetupError, group_lag

        deadline = time.monotonic() + timeout
        while True:
            self.connector.check()
            try:
                lag = group_lag(self.bootstrap, self.settings)
            except KafkaSetupError:
                lag = None
            if lag is not None and lag.total == 0:
                return lag
            if time.monotonic() > deadline:
                raise UserError(
                    f"the sink connector has not written {lag.total if lag else 'some'} records "
                    f"after {timeout:.0f} s; see {self.connector.log}."
                )
            time.sleep(0.5)

    def written(self, day: dt.date, timeout: float = 300.0) -> str:
        """Wait until the connector has written (and committed) everything produced so far;
        then ``day`` is done (the demo will not produce it again)."""
        self.delivery.flush()
        produced_now = sum(self.delivery.produced.values())
        produced, self.produced_before = produced_now - self.produced_before, produced_now
        committed = sum(self._caught_up(timeout).committed.values())
        written, self.committed_before = committed - self.committed_before, committed
        if written != produced:
            raise UserError(
                f"Kafka: {produced} records produced but the connector wrote {written}; "
                f"see {self.connector.log}."
            )
        progress = self._progress()
        progress["done"] = sorted({*progress["done"], day.isoformat()})
        progress["files"] = self._dump_files()
        progress["produced"] = progress.get("produced", 0) + produced
        tmp = self._progress_file.with_name(".demo_kafka.tmp")
        tmp.write_text(json.dumps(progress, indent=1))
        os.replace(tmp, self._progress_file)
        return f"Kafka: produced {produced} records = written to dumps by the connector {written}"

    def reconciliation(self, first: dt.date, last: dt.date) -> str:
        """From the broker to the lake over the whole demo: produced = dump lines = read =
        landed + quarantined + duplicates (+ lines in folders not landed yet, e.g. the day after
        the last one, where its late records arrived)."""
        from ab_pipelines.events.dumps import list_day_files
        from ab_pipelines.events.landing import ledger_summary
        from ab_pipelines.events.parse import read_lines
        from ab_pipelines.lake import Lake

        produced = self._progress().get("produced", 0)  # over every demo run of this home
        folders = sorted(
            {
                dt.date.fromisoformat(d.name.removeprefix("date="))
                for t in self.p.raw.iterdir()
                if t.is_dir() and not t.name.startswith(("_", "."))
                for d in t.glob("date=*")
            }
        )
        in_dumps, waiting = 0, 0
        for day in folders:
            n = sum(
                len(read_lines(f.path.read_bytes(), f.path.name.endswith(".gz"))[0])
                for f in list_day_files(self.p.raw, day)
            )
            in_dumps += n
            if day > last:
                waiting += n
        rows = ledger_summary(Lake(self.p), [d for d in folders if d <= last])
        read = sum(r["read"] for r in rows)
        landed = sum(r["landed"] for r in rows)
        quarantined = sum(r["quarantined"] for r in rows)
        dups = sum(r["duplicates"] for r in rows)
        ok = produced == in_dumps == read + waiting and read == landed + quarantined + dups
        return (
            f"Kafka to lake{'' if ok else ' (MISMATCH)'}: produced {produced} = in dumps "
            f"{in_dumps} = read {read} (landed {landed} + quarantined {quarantined} + duplicates "
            f"{dups}) + {waiting} awaiting the next day's landing"
        )


class _Child:
    """An ``abp`` subcommand as a child process in a process group of its own, killed with us
    (PR_SET_PDEATHSIG), its output in ``$ABP_HOME/kafka/<name>.log``; stopped by its group id
    (SIGTERM, then SIGKILL after ABP_STOP_SECONDS)."""

    def __init__(self, p: Paths, args: list[str], name: str, env: dict | None = None) -> None:
        self.p, self.args, self.name, self.env = p, args, name, env or {}
        self.log = p.home / "kafka" / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def __enter__(self) -> _Child:
        from ab_pipelines.processes import dying_with_parent

        self.log.parent.mkdir(parents=True, exist_ok=True)
        abp = os.path.join(os.path.dirname(sys.executable), "abp")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                dying_with_parent([abp, *self.args]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        return self

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-600:].strip()
            raise UserError(
                f"the {self.name} stopped (exit {self.proc.returncode}); {self.log} ends: {tail}"
            )

    def __exit__(self, *exc) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        from ab_pipelines.processes import stop_group
        from jobs.recovery import stop_seconds

        stop_group(proc, stop_seconds())


def _history_unlanded(p: Paths, day: dt.date, history: int) -> bool:
    """Has a day of the ``history`` days before ``day`` dumps but no landing ledger row?"""
    from ab_pipelines.events.dumps import list_day_files
    from ab_pipelines.events.landing import ledger_summary
    from ab_pipelines.lake import Lake

    days = [day - dt.timedelta(days=k) for k in range(1, history + 1)]
    ledger = {r["arrival_day"]: r["files"] for r in ledger_summary(Lake(p), days)}
    return any(list_day_files(p.raw, d) and not ledger[d] for d in days)


def _safety_lines(p: Paths, seen: set[str]) -> list[str]:
    """Alerts opened or closed and automatic kills since the last call (``seen`` remembers)."""
    from ab_pipelines.lake import Lake
    from ab_pipelines.lake.tables import OPS_KILLS
    from ab_pipelines.safety import read_alerts

    lake, out = Lake(p), []
    for a in read_alerts(lake):
        key = f"{a.alert_id}:{a.status}"
        if key in seen:
            continue
        seen.add(key)
        if a.is_open:
            out.append(
                f"  ALERT opened  [{a.severity}] {a.kind} {a.experiment_id} {a.subject}: {a.message}"
            )
        else:
            out.append(f"  ALERT closed  {a.kind} {a.experiment_id} {a.subject} on {a.closed_day}")
    for k in lake.read_arrow(OPS_KILLS).to_pylist():
        key = f"kill:{k['experiment_id']}"
        if key not in seen:
            seen.add(key)
            out.append(
                f"  KILLED {k['experiment_id']} by {k['by']} at {k['killed_at']:%Y-%m-%d %H:%M}Z: "
                f"{k['reason']}"
            )
    return out


def _kill_check(p: Paths) -> str:
    """For each killed experiment: what the published config serves now, and the exposures after."""
    from ab_pipelines.assignment import Client
    from ab_pipelines.lake import Lake
    from ab_pipelines.lake.tables import OPS_KILLS, SILVER_EXPOSURE_COUNTS

    lake = Lake(p)
    kills = lake.read_arrow(OPS_KILLS).to_pylist()
    if not kills:
        return "\nno experiment was killed"
    client = Client.from_file(str(p.edge / "config.json"))
    counts = lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()
    lines = ["\nkilled experiments, after the kill:"]
    for k in kills:
        exp_id, at = k["experiment_id"], k["killed_at"]
        served = {client.assign(f"user-{i}", exp_id) for i in range(1000)}
        per_day: dict = {}
        for r in counts:
            if r["experiment_id"] == exp_id:
                per_day.setdefault(r["event_date"], {}).setdefault(r["variant"], 0)
                per_day[r["event_date"]][r["variant"]] += r["exposures"]
        days = " ".join(
            f"{d:%m-%d}:{'/'.join(f'{v}={n}' for v, n in sorted(per_day[d].items()))}"
            for d in sorted(per_day)
        )
        lines.append(
            f"  {exp_id}: killed {at:%Y-%m-%d %H:%M}Z; the published config serves "
            f"{sorted(x for x in served if x) or ['nothing']} to 1000 users; "
            f"exposures logged per day: {days or 'none'}"
        )
    return "\n".join(lines)


def _scorecards(p: Paths, reg) -> str:
    """Every analysed experiment's scorecard on its latest analysed day, then every holdout's
    (general against holdout: the cumulative effect of its layers)."""
    from ab_pipelines.analysis.scorecard import ScorecardError, render, scorecard
    from ab_pipelines.lake import Lake

    lake, cards = Lake(p), []
    subjects = sorted(reg.experiments.values(), key=lambda e: e.id)
    subjects += [reg.analysed_experiments[h] for h in sorted(reg.holdouts)]
    for exp in subjects:
        try:
            card = render(scorecard(lake, reg, exp.id))
        except ScorecardError:
            continue
        if exp.id in reg.holdouts:
            h = reg.holdouts[exp.id]
            card = (
                f"holdout {h.id}: {h.share:.0%} of units kept out of {', '.join(h.layers)}; "
                "general (served the layers' experiments) against holdout\n" + card
            )
        cards.append(card)
    if not cards:
        return "no analysed day yet"
    head = (
        "\nscorecards (lift: CUPED where it applies, always-valid 95% interval; * = significant "
        "after correction; 'fixed p' is the fixed-horizon p-value, not for peeking):\n\n"
    )
    return head + "\n\n".join(cards)


def _quality_line(p: Paths) -> str:
    from ab_pipelines.lake import Lake
    from ab_pipelines.lake.tables import OPS_DQ_RESULTS

    rows = (
        Lake(p).read_arrow(OPS_DQ_RESULTS, columns=["table", "check", "day", "passed"]).to_pylist()
    )
    failed = sorted(f"{r['day']} {r['table']}.{r['check']}" for r in rows if not r["passed"])
    line = f"data-quality checks: {len(rows) - len(failed)} passed, {len(failed)} failed (ops.dq_results)"
    return line + "".join(f"\n  failed: {f}" for f in failed)
