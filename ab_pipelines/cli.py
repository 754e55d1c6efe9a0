"""`abp`: the platform's command line (CONTRACTS section 4).

Errors a user can cause (a bad date, a bad engine setting, an unwritable ABP_HOME, a broken registry)
end in one sentence on stderr and a non-zero exit; nothing is half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from ab_pipelines.settings import (
    NOW_ENV,
    REPO_ROOT,
    Paths,
    SetupError,
    ensure_writable_home,
    paths,
)

__all__ = ["main"]


class UserError(click.ClickException):
    """One clear sentence for the user; exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _home() -> Paths:
    try:
        return ensure_writable_home(paths())
    except SetupError as exc:
        raise UserError(str(exc)) from None


def _parse_day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name} '{value}' is not a date; use YYYY-MM-DD.") from None


def ensure_dagster_home(p: Paths) -> None:
    """DAGSTER_HOME = $ABP_HOME/dagster, holding a copy of the repo's dagster.yaml."""
    home = p.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    src, dst = REPO_ROOT / "dagster.yaml", home / "dagster.yaml"
    if src.exists() and (not dst.exists() or dst.read_bytes() != src.read_bytes()):
        shutil.copyfile(src, dst)
    os.environ["DAGSTER_HOME"] = str(home)


def _require_engine() -> None:
    """The engine settings (ABP_SPARK_REMOTE, ...) are sound and a remote engine answers; no
    Java is needed (the embedded engine is Sail)."""
    from ab_pipelines.lake.engine import EngineSettings

    try:
        EngineSettings.from_env().check()
    except SetupError as exc:
        raise UserError(str(exc)) from None


def _registry():
    from ab_pipelines.config import RegistryError, load_registry

    try:
        return load_registry()
    except RegistryError as exc:
        raise UserError("the registry has problems:\n  " + "\n  ".join(exc.problems)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The experimentation platform: simulate, land and analyze A/B tests on a lakehouse."""


# ---- simulate ---------------------------------------------------------------------------------
@main.command()
@click.option("--start", required=True, help="First day to simulate, YYYY-MM-DD.")
@click.option("--days", default=1, show_default=True, type=click.IntRange(1, 366))
@click.option(
    "--users", default=None, type=click.IntRange(10, 50_000_000), help="Population (default 20000)."
)
@click.option("--seed", default=None, type=int, help="Random seed (default 7).")
@click.option(
    "--to-kafka",
    is_flag=True,
    help="Produce the traffic into Kafka (the running 'abp broker' or ABP_KAFKA_BOOTSTRAP) "
    "instead of writing dump files; 'abp connect' writes the dumps.",
)
def simulate(start: str, days: int, users: int | None, seed: int | None, to_kafka: bool) -> None:
    """Write realistic raw Kafka dumps for START..START+DAYS-1 (and history on first use)."""
    from ab_pipelines.simulate import simulate_days

    p = _home()
    first = _parse_day(start, "--start")
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(_kafka_delivery(p)) if to_kafka else None
        try:
            report = simulate_days(
                p,
                first,
                days,
                users=users,
                seed=seed,
                registry=_registry(),
                assigner=_published_assigner(p),
                sink=sink,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if sink is None:
        click.echo(report.summary())
    else:
        per_topic = ", ".join(f"{t}: {n}" for t, n in sorted(sink.produced.items()))
        click.echo(
            f"produced {len(report.days)} simulated days {report.days[0]}..{report.days[-1]} "
            f"to Kafka at {sink.bootstrap}: {per_topic} (all acknowledged); "
            f"planted {report.malformed} malformed values and {report.duplicates} producer retries"
        )


def _kafka_delivery(p: Paths):
    """The simulator's Kafka producer; a broker or setting problem as one sentence."""
    from ab_pipelines.events.kafka import KafkaSetupError
    from ab_pipelines.simulate.to_kafka import KafkaDelivery

    try:
        return KafkaDelivery(p.home)
    except KafkaSetupError as exc:
        raise UserError(str(exc)) from None


# ---- Kafka ------------------------------------------------------------------------------------
@main.command()
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Default: a free port.")
def broker(port: int) -> None:
    """Run the embedded Kafka broker (tansu) on loopback until Ctrl-C or SIGTERM.

    Other commands of the same ABP_HOME find it (its address is in $ABP_HOME/kafka/broker.json);
    with ABP_KAFKA_BOOTSTRAP set they use that cluster instead and this command is not needed.
    Storage is in memory: what the connector has not written to dumps is lost when it stops.
    """
    from ab_pipelines.events.kafka import (
        EmbeddedBroker,
        KafkaSettings,
        KafkaSetupError,
        ensure_topics,
        running_broker,
    )

    p = ensure_writable_home(_home())
    try:
        settings = KafkaSettings.from_env()
        if (already := running_broker(p.home)) is not None:
            raise KafkaSetupError(
                f"an embedded broker already runs for ABP_HOME {p.home} at {already}; "
                "stop it first (or use it)."
            )
        with _until_stopped(), EmbeddedBroker(p.home, port=port) as b:
            ensure_topics(b.bootstrap, settings)
            click.echo(
                f"Kafka broker (tansu, embedded) on {b.bootstrap}, pid {b.pid}; topics "
                f"exposures and metric_events, {settings.partitions} partitions each. "
                "Ctrl-C stops it."
            )
            while b.alive():
                time.sleep(0.5)
            raise KafkaSetupError(
                f"the embedded broker stopped by itself; see {p.home}/kafka/broker.log"
            )
    except KafkaSetupError as exc:
        raise UserError(str(exc)) from None
    except _Stopped:
        click.echo("broker stopped")


@main.command()
@click.option(
    "--drain",
    "drain",
    default=None,
    type=click.FloatRange(min=1),
    help="Write what the topics hold now (within SECONDS), then exit; default: run until stopped.",
)
def connect(drain: float | None) -> None:
    """Run the Kafka sink connector: topics -> dump files under $ABP_HOME/raw, exactly once.

    A long-running process (Ctrl-C or SIGTERM stops it after writing and committing its open
    files). Settings: ABP_CONNECT_* and ABP_KAFKA_* (docs/events.md); Prometheus metrics on
    127.0.0.1:$ABP_CONNECT_METRICS_PORT when set.
    """
    import dataclasses
    import logging

    from ab_pipelines.events.connector import run_connector
    from ab_pipelines.events.kafka import KafkaSetupError, resolve_bootstrap

    p = ensure_writable_home(_home())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("ab_pipelines.kafka").setLevel(logging.WARNING)
    try:
        bootstrap = resolve_bootstrap(p.home)
        click.echo(f"sink connector: Kafka at {bootstrap} -> {p.raw} (pid {os.getpid()})")
        counts = run_connector(p.home, bootstrap, drain=drain)
    except (KafkaSetupError, SetupError) as exc:
        raise UserError(str(exc)) from None
    click.echo(
        "connector stopped: " + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(counts).items())
    )


# ---- the edge ---------------------------------------------------------------------------------
@main.command()
@click.option("--host", default=None, help="Address to listen on (ABP_EDGE_HOST; 127.0.0.1).")
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Port; 0 picks a free one (ABP_EDGE_PORT; 8088).",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 512),
    help="Worker processes (ABP_EDGE_WORKERS; 1).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the edge service until Ctrl-C or SIGTERM: the signed config (ETag, SSE push),
    remote assignment with a sticky cookie, the event collector, Prometheus metrics.

    It serves $ABP_HOME/edge/config.json, watched for each new version (publish, kill); prints
    where it listens and writes it to $ABP_HOME/edge/serve.json. Settings: ABP_EDGE_* (the
    options override them); docs/edge.md.
    """
    from ab_pipelines.assignment.signing import SignatureError
    from ab_pipelines.edge import EdgeSettings
    from ab_pipelines.edge.serve import serve as run_edge
    from ab_pipelines.events.kafka import KafkaSetupError

    p = _home()
    given = {"ABP_EDGE_HOST": host, "ABP_EDGE_PORT": port, "ABP_EDGE_WORKERS": workers}
    # in the environment, so the worker processes read the same settings
    os.environ.update({k: str(v) for k, v in given.items() if v is not None})
    try:
        run_edge(EdgeSettings.from_env(), p, echo=click.echo)
    except (SetupError, KafkaSetupError, SignatureError) as exc:
        raise UserError(str(exc)) from None


class _Stopped(Exception):
    """SIGTERM or SIGINT reached a long-running command."""


@contextlib.contextmanager
def _until_stopped():
    """SIGTERM and SIGINT raise _Stopped in the main thread, so ``with`` blocks clean up."""

    def stop(signum, frame):
        raise _Stopped(signal.Signals(signum).name)

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _publish_or_fail(p: Paths) -> int:
    """Publish the registry (a new version only if it changed); a broken registry stops here."""
    from ab_pipelines.config.publish import PublishRefused, publish

    try:
        return publish(p, actor="demo").version
    except PublishRefused as exc:
        raise UserError("the registry has problems:\n  " + "\n  ".join(exc.problems)) from None


def _published_assigner(p: Paths):
    """Traffic is assigned by the SDK with the config published so far (None: not published yet)."""
    from ab_pipelines.assignment import Client
    from ab_pipelines.simulate import sdk_assigner

    path = p.edge / "config.json"
    return sdk_assigner(Client.from_file(str(path))) if path.exists() else None


# ---- run --------------------------------------------------------------------------------------
def run_days(p: Paths, first: dt.date, last: dt.date) -> bool:
    """Land (and check) first..last in one Dagster run, then analyse the days whose late window
    closed with it: first - late .. last - late (from the first experiment start). True if all ran."""
    ensure_dagster_home(p)
    try:
        from assets.analysis import LATE_ARRIVAL_DAYS
        from jobs.definitions import analyze_job, daily_job, defs
    except SetupError as exc:
        raise UserError(str(exc)) from None
    partitions = defs.resolve_job_def(daily_job.name).partitions_def.get_partition_keys()
    if first.isoformat() < partitions[0]:
        raise UserError(
            f"{first} is before the first daily partition {partitions[0]}; "
            "set ABP_FIRST_DAY (YYYY-MM-DD) to land older days."
        )
    if last.isoformat() > partitions[-1]:
        raise UserError(
            f"{last} is in the future: the last day that can be run is {partitions[-1]}."
        )
    close_dead_runs_now(p)
    if not _execute(defs, daily_job.name, first, last):
        return False
    late = dt.timedelta(days=LATE_ARRIVAL_DAYS)
    starts = [e.start_date for e in _registry().experiments.values()]
    a_first = max(first - late, min(starts, default=last), dt.date.fromisoformat(partitions[0]))
    if not starts or last - late < a_first:
        return True
    return _execute(defs, analyze_job.name, a_first, last - late)


def _execute(defs, job_name: str, first: dt.date, last: dt.date) -> bool:
    """One in-process run of a partitioned job over first..last, recorded in the instance.

    The run answers SIGTERM and Ctrl-C within seconds (recorded canceled) and fails a step that
    waits for a pool slot longer than ABP_SLOT_WAIT_MINUTES (jobs/recovery.py).
    """
    from dagster import DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ab_pipelines.safety.day import alert_run_failure
    from jobs.recovery import RunCanceled, SlotWaitTimeout, execute_guarded

    if first == last:
        kwargs = {"partition_key": first.isoformat()}
    else:
        kwargs = {
            "tags": {
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            }
        }
    # The console shows warnings only; the instance's event log (the Dagster UI) keeps everything.
    quiet = {
        "loggers": {
            "console": {"config": {"log_level": os.environ.get("ABP_LOG_LEVEL", "WARNING")}}
        }
    }
    instance = DagsterInstance.get()
    try:
        result = execute_guarded(
            defs.resolve_job_def(job_name),
            instance,
            run_config=quiet,
            raise_on_error=False,
            **kwargs,
        )
    except RunCanceled as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(130) from None
    except SlotWaitTimeout as exc:
        click.echo(f"error: {exc}", err=True)
        alert_run_failure(paths(), exc.run_id, job_name, str(exc))
        return False
    if not result.success:
        messages = []
        for ev in result.all_events:
            if ev.is_step_failure and ev.step_failure_data.error is not None:
                msg = ev.step_failure_data.error.message.strip()
                messages.append(f"step {ev.step_key} failed: {msg}")
                click.echo(messages[-1], err=True)
        # No daemon watches in-process runs: open the run_failed alert here (once per run).
        alert_run_failure(paths(), result.run_id, job_name, "; ".join(messages) or "run failed")
    return result.success


def close_dead_runs_now(p: Paths) -> None:
    """Close the runs whose process died (they would hold the engine's pool slot forever)."""
    from dagster import DagsterInstance

    from jobs.recovery import close_dead_runs

    for state in close_dead_runs(DagsterInstance.get(), p, f"abp (pid {os.getpid()})"):
        click.echo(f"closed {state.describe()}: its process died", err=True)


def landing_table(p: Paths, days: Sequence[dt.date], header: bool = True) -> str:
    """Read, landed, quarantined and duplicates per arrival day, from ops.landed_files."""
    from ab_pipelines.events.landing import format_summary, ledger_summary
    from ab_pipelines.lake import Lake

    return format_summary(ledger_summary(Lake(p), list(days)), header=header)


@main.command()
@click.option("--date", "date_", default=None, help="One day to materialize, YYYY-MM-DD.")
@click.option("--from", "from_", default=None, help="First day of a range (a backfill in one run).")
@click.option("--to", "to_", default=None, help="Last day of the range, inclusive.")
def run(date_: str | None, from_: str | None, to_: str | None) -> None:
    """Materialize all assets for a day or a range of days through Dagster."""
    if date_ and (from_ or to_):
        raise UserError("give either --date or --from/--to, not both.")
    if date_:
        first = last = _parse_day(date_, "--date")
    elif from_ and to_:
        first, last = _parse_day(from_, "--from"), _parse_day(to_, "--to")
        if last < first:
            raise UserError(f"the date range is backwards: --from {first} is after --to {last}.")
    else:
        raise UserError("give --date YYYY-MM-DD, or --from YYYY-MM-DD --to YYYY-MM-DD.")
    p = _home()
    _require_engine()
    _registry()
    ok = run_days(p, first, last)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    click.echo(landing_table(p, days))
    if not ok:
        raise UserError(
            f"the run for {first}..{last} failed; see the messages above and the Dagster UI."
        )


@main.command()
@click.option("--stuck", is_flag=True, help="Only unfinished runs: their process, slots, waits.")
@click.option(
    "--fail",
    "fail_id",
    default=None,
    help="Close this run: stop its process if it lives here, record it failed, free its slots.",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def runs(stuck: bool, fail_id: str | None, limit: int) -> None:
    """The Dagster runs of this ABP_HOME; close one that is stuck or whose process died."""
    import getpass

    from dagster import DagsterInstance

    from jobs.recovery import close_dead_runs, fail_run, run_states

    p = _home()
    ensure_dagster_home(p)
    instance = DagsterInstance.get()
    if fail_id:
        who = f"abp runs --fail ({getpass.getuser()}@{os.uname().nodename})"
        try:
            click.echo(fail_run(instance, p, fail_id, who))
        except LookupError as exc:
            raise UserError(str(exc)) from None
        return
    if stuck:
        states = run_states(instance)
        if not states:
            click.echo("no unfinished runs")
        for s in states:
            click.echo(s.describe())
            for h in s.holds:
                click.echo(f"  holds {h}")
            for pool, step, since in s.waits:
                click.echo(f"  waits {(time.time() - since) / 60:.0f} min for {pool}: {step}")
            if s.alive is False:
                click.echo(f"  its process is gone: `abp runs --fail {s.run_id}` closes it")
        return
    close_dead_runs(instance, p, f"abp runs (pid {os.getpid()})")
    for r in instance.get_run_records(limit=limit):
        run = r.dagster_run
        part = run.tags.get("dagster/partition") or "..".join(
            filter(
                None,
                [
                    run.tags.get("dagster/asset_partition_range_start"),
                    run.tags.get("dagster/asset_partition_range_end"),
                ],
            )
        )
        click.echo(
            f"{run.run_id}  {r.create_timestamp:%Y-%m-%d %H:%M:%S}  {run.job_name:<16} "
            f"{part:<23} {run.status.value.lower()}"
        )


# ---- registry and config plane -------------------------------------------------------------
def _problems(p: Paths) -> list[str]:
    """Every registry problem, against the last published state."""
    from ab_pipelines.config import validate_registry
    from ab_pipelines.config.publish import published_state

    return [str(x) for x in validate_registry(None, published_state(p))]


@main.command()
def validate() -> None:
    """Validate the registry (every problem on one line: file, field, reason)."""
    p = _home()
    problems = _problems(p)
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise UserError(f"the registry has {len(problems)} problem(s); nothing can be published.")
    reg = _registry()
    click.echo(f"ok: {len(reg.experiments)} experiments, {len(reg.metrics)} metrics")


@main.command()
@click.argument("experiment")
@click.option("--by", "by", required=True, help="The reviewer (not the owner).")
def approve(experiment: str, by: str) -> None:
    """Record a review: append an approval of EXPERIMENT's current content (its sha) to its YAML."""
    from ab_pipelines.config import approve as do_approve
    from ab_pipelines.settings import registry_root

    path = registry_root() / "experiments" / f"{experiment}.yaml"
    if not path.exists():
        raise UserError(f"no experiment file {path}.")
    try:
        approval = do_approve(path, by)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(
        f"approved {experiment} by {approval.by} (sha {approval.sha[:12]}); commit the file for review"
    )


@main.command()
def publish() -> None:
    """Compile the registry plus kills into the signed edge config; a new version only on change."""
    from ab_pipelines.config.publish import PublishRefused
    from ab_pipelines.config.publish import publish as do_publish

    p = _home()
    try:
        result = do_publish(p, actor=os.environ.get("USER", "abp"))
    except PublishRefused as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        raise UserError(
            f"not published: the registry has {len(exc.problems)} problem(s); the last good config keeps serving."
        ) from None
    what = "published" if result.changed else "unchanged"
    click.echo(
        f"{what}: version {result.version} at {result.path} ({', '.join(result.experiments)})"
    )


@main.command()
@click.argument("experiment")
@click.option("--reason", required=True, help="Why (kept in ops.kills and ops.audit_log).")
@click.option("--by", "by", required=True, help="Who (an email).")
def kill(experiment: str, reason: str, by: str) -> None:
    """Kill switch: everyone gets the baseline from the next config version; audited."""
    from ab_pipelines.config.publish import kill as do_kill

    p = _home()
    try:
        result = do_kill(p, experiment, reason, by)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(
        f"killed {experiment}: config version {result.version} serves the baseline to everyone"
    )


@main.command()
@click.argument("user_id")
@click.option("--by", "by", required=True, help="Who asked for it (an email); audited.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(user_id: str, by: str, yes: bool) -> None:
    """Remove USER_ID from the raw dumps and every table (an erasure request); audited.

    The user's lines are cut from the raw files, their arrival days re-landed, and bronze's old
    versions vacuumed. See docs/reliability.md.
    """
    from ab_pipelines.events.forget import forget_user
    from ab_pipelines.lake import Lake, spark_session

    if not user_id.strip():
        raise UserError("the user id is empty.")
    p = _home()
    _require_engine()
    known = _registry().known_variants()
    if not yes:
        click.confirm(
            f"Remove every line and row of user {user_id!r} from {p.home}? "
            "Old versions of the bronze tables are deleted too",
            abort=True,
        )
    report = forget_user(spark_session(), Lake(p), p.raw, user_id, by, known)
    click.echo(
        f"forgot {user_id!r}: {report.lines} line(s) removed from {len(report.files)} raw "
        f"file(s); re-landed {len(report.days)} day(s); {report.files_vacuumed} old file(s) "
        "deleted; recorded in ops.audit_log"
    )


@main.command()
@click.argument("user_id")
@click.argument("experiment", required=False)
@click.option(
    "--attr", "attrs", multiple=True, metavar="K=V", help="An attribute, e.g. --attr country=US."
)
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def assign(user_id: str, experiment: str | None, attrs: tuple[str, ...], as_json: bool) -> None:
    """What the SDK would return for USER_ID (and EXPERIMENT), and why."""
    import json as _json

    from ab_pipelines.assignment import Client

    attributes = {}
    for a in attrs:
        k, sep, v = a.partition("=")
        if not sep or not k:
            raise UserError(f"--attr '{a}' is not key=value.")
        attributes[k] = v
    p = _home()
    path = p.edge / "config.json"
    if not path.exists():
        raise UserError(f"no published config at {path}; run 'abp publish' first.")
    from ab_pipelines.assignment import ConfigError

    try:
        client = Client.from_file(str(path))
    except ConfigError as exc:
        raise UserError(f"the published config cannot be used: {exc}") from None
    ids = [experiment] if experiment else sorted(client.experiment_ids)
    out = {e: client.explain(user_id, e, attributes=attributes) for e in ids}
    if as_json:
        click.echo(_json.dumps(out, indent=2, sort_keys=True, default=str))
        return
    for e, why in out.items():
        detail = f"bucket {why.get('bucket')}"
        if why.get("layer"):
            detail = (
                f"layer {why['layer']} bucket {why.get('layer_bucket')} in {why.get('layer_range')}, "
                + detail
            )
        click.echo(
            f"{e}: {why.get('variant')}  ({why.get('decided_by')}; {detail}; config v{why.get('config_version')})"
        )


# ---- demo -------------------------------------------------------------------------------------
@main.command()
@click.option(
    "--days",
    default=None,
    type=click.IntRange(1, 60),
    help="Experiment days to play (default: $ABP_DEMO_DAYS or 7).",
)
@click.option("--users", default=None, type=click.IntRange(100, 5_000_000))
@click.option(
    "--history-days",
    default=None,
    type=click.IntRange(1, 60),
    help="Pre-experiment days simulated on first use, for CUPED (default 14).",
)
@click.option(
    "--no-kafka",
    is_flag=True,
    help="Write the simulated traffic as dump files directly: no broker, no connector.",
)
def demo(days: int, users: int | None, history_days: int | None, no_kafka: bool) -> None:
    """Play the demo: day by day, simulate the day's traffic, then land (and analyze) it.

    The traffic goes through Kafka: the embedded broker (or ABP_KAFKA_BOOTSTRAP's cluster) and
    one sink connector, both started here and stopped on exit (also on Ctrl-C); the connector
    writes the dumps that landing reads. --no-kafka writes the dumps directly.
    """
    from ab_pipelines.simulate import HISTORY_DAYS, simulate_days

    history = history_days or HISTORY_DAYS

    if days is None:
        env_days = os.environ.get("ABP_DEMO_DAYS", "7")
        if not env_days.isdigit() or not 1 <= int(env_days) <= 60:
            raise UserError(
                f"ABP_DEMO_DAYS '{env_days}' must be a whole number of days from 1 to 60."
            )
        days = int(env_days)
    p = _home()
    _require_engine()
    reg = _registry()
    start = min(e.start_date for e in reg.experiments.values())
    click.echo(
        f"ABP_HOME={p.home}\nplaying {days} days from {start} (after {history} days of history)"
    )
    seen: set[str] = set()
    saved_clock = os.environ.get(NOW_ENV)
    stack = contextlib.ExitStack()
    try:
        kafka = None if no_kafka else stack.enter_context(_DemoKafka(p))
        if kafka is not None:
            click.echo(kafka.describe())
        os.environ[NOW_ENV] = f"{start}T00:00:00Z"
        click.echo(f"edge config version {_publish_or_fail(p)} serving at {p.edge / 'config.json'}")
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
            os.environ[NOW_ENV] = f"{day}T00:00:00Z"
            _publish_or_fail(p)
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
                        registry=_registry(),
                        assigner=_published_assigner(p),
                        history_days=history,
                        sink=kafka.delivery if kafka else None,
                    )
                except ValueError as exc:
                    raise UserError(str(exc)) from None
                if kafka is not None:
                    click.echo(kafka.written(day))
            # On first use the history arrives too: land it with the first day, in one run.
            first = day - dt.timedelta(days=history) if first_use and i == 0 else day
            os.environ[NOW_ENV] = f"{day + dt.timedelta(days=1)}T00:00:00Z"
            if not run_days(p, first, day):
                raise UserError(f"landing {first}..{day} failed; see the messages above.")
            span = [first + dt.timedelta(days=k) for k in range((day - first).days + 1)]
            click.echo(landing_table(p, span, header=i == 0))
            for line in _safety_lines(p, seen):
                click.echo(line)
        if kafka is not None:
            click.echo(kafka.reconciliation(start - dt.timedelta(days=history), day))
    except _Stopped:
        raise UserError("the demo was stopped; run it again to go on where it stopped.") from None
    finally:
        stack.close()
        if saved_clock is None:
            os.environ.pop(NOW_ENV, None)
        else:
            os.environ[NOW_ENV] = saved_clock
    click.echo(_quality_line(p))
    click.echo(_scorecards(p, _registry()))
    click.echo(_kill_check(p))
    click.echo(
        "\nDone. Open the Dagster UI with 'make dagster' (http://127.0.0.1:3000) to see the assets, "
        "runs and their metadata, and the analysts' dashboard with 'make dashboard' (http://127.0.0.1:8501)."
    )


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
            self.stack.enter_context(_until_stopped())
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

        stop_group(proc, float(os.environ.get("ABP_STOP_SECONDS", "8") or 8))


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
    """Every analysed experiment's scorecard on its latest analysed day."""
    from ab_pipelines.analysis.scorecard import ScorecardError, render, scorecard
    from ab_pipelines.lake import Lake

    lake, cards = Lake(p), []
    for exp in sorted(reg.experiments.values(), key=lambda e: e.id):
        try:
            cards.append(render(scorecard(lake, reg, exp.id)))
        except ScorecardError:
            continue
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


# ---- results and plan -------------------------------------------------------------------------
@main.command()
@click.argument("experiment")
@click.option(
    "--date", "date_", default=None, help="Analysis day, YYYY-MM-DD (default: the latest)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object (CONTRACTS section 4).")
@click.option(
    "--version",
    "version",
    default=None,
    type=click.IntRange(0),
    help="Show it as computed in this version of gold.experiment_results.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Show it as it was at this time (ISO-8601 with a zone, e.g. 2026-11-05T08:00Z).",
)
def results(
    experiment: str, date_: str | None, as_json: bool, version: int | None, as_of: str | None
) -> None:
    """The scorecard of EXPERIMENT as of a day: SRM, decision, every metric's estimates.

    With --version or --as-of it is shown exactly as it was computed then (versions are kept for
    ABP_TIME_TRAVEL_DAYS, default 30 days).
    """
    from ab_pipelines.analysis.scorecard import (
        ScorecardError,
        pinned_versions,
        render,
        scorecard,
        to_json,
    )
    from ab_pipelines.lake import Lake

    if version is not None and as_of:
        raise UserError("give either --version or --as-of, not both.")
    day = _parse_day(date_, "--date") if date_ else None
    at = None
    if as_of:
        try:
            at = dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise UserError(f"--as-of '{as_of}' is not an ISO-8601 time.") from None
        if at.tzinfo is None:
            raise UserError(f"--as-of '{as_of}' has no zone; add Z or an offset like +01:00.")
    lake = Lake(_home())
    try:
        pinned = pinned_versions(lake, version, at)
        card = scorecard(lake, _registry(), experiment, day, pinned)
    except ScorecardError as exc:
        raise UserError(str(exc)) from None
    click.echo(to_json(card) if as_json else render(card))


@main.command()
@click.option("--metric", required=True, help="Metric id (metrics/<id>.yaml).")
@click.option("--mde", required=True, type=float, help="Relative change to detect, e.g. 0.02.")
@click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
@click.option(
    "--power",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
@click.option("--variants", default=2, show_default=True, type=click.IntRange(2, 20))
@click.option(
    "--allocation", default=1.0, show_default=True, type=float, help="Share of eligible traffic."
)
@click.option("--json", "as_json", is_flag=True)
def plan(
    metric: str,
    mde: float,
    alpha: float,
    power: float,
    variants: int,
    allocation: float,
    as_json: bool,
) -> None:
    """Units and days needed to detect MDE on METRIC, from the measured variance and traffic."""
    import json

    from ab_pipelines.analysis.plan import PlanError
    from ab_pipelines.analysis.plan import plan as make_plan
    from ab_pipelines.lake import Lake

    try:
        result = make_plan(
            Lake(_home()), _registry(), metric, mde, alpha, power, variants, allocation
        )
    except PlanError as exc:
        raise UserError(str(exc)) from None
    click.echo(
        json.dumps(result.as_dict(), indent=2, allow_nan=False) if as_json else result.render()
    )


@main.command()
@click.option(
    "--days", default=7, show_default=True, type=click.IntRange(1, 3650), help="Recent window."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: open and recent alerts.")
def alerts(days: int, as_json: bool) -> None:
    """Open alerts, and the ones closed in the DAYS analysis days up to the latest analysed day."""
    import json

    from ab_pipelines.lake import Lake
    from ab_pipelines.lake.tables import GOLD_EXPERIMENT_RESULTS
    from ab_pipelines.safety import open_alerts, recent_alerts
    from ab_pipelines.safety.notify import pending_notifications
    from ab_pipelines.settings import now

    lake = Lake(_home())
    analysed = lake.read_arrow(GOLD_EXPERIMENT_RESULTS, columns=["day"]).column(0).to_pylist()
    try:
        today = max(analysed) if analysed else now().date()
    except SetupError as exc:
        raise UserError(str(exc)) from None
    opened = open_alerts(lake)
    recent = [a for a in recent_alerts(lake, days=days, today=today) if not a.is_open]
    pending = pending_notifications(lake)
    if as_json:

        def row(a):
            r = a.to_row()
            r["detail"] = a.detail
            return r

        body = {
            "open": [row(a) for a in opened],
            "recent": [row(a) for a in recent],
            "pending_notifications": len(pending),
        }
        click.echo(json.dumps(body, indent=2, default=str, allow_nan=False))
        return
    click.echo(f"open alerts: {len(opened)}")
    for a in opened:
        click.echo(
            f"  [{a.severity}] {a.kind:<17} {a.experiment_id or '-':<16} {a.subject:<28} "
            f"since {a.opened_day} (last seen {a.last_seen_day}): {a.message}"
        )
    click.echo(f"closed in the last {days} day(s): {len(recent)}")
    for a in recent:
        click.echo(
            f"  {a.kind:<17} {a.experiment_id or '-':<16} {a.subject:<28} "
            f"{a.opened_day} .. {a.closed_day}"
        )
    if pending:
        click.echo(f"{len(pending)} notification(s) not yet delivered (retried by deliver_alerts)")


@main.command()
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
def dashboard(port: int) -> None:
    """Start the analysts' dashboard (Streamlit) on loopback; it reads the lake, never Spark."""
    p = _home()
    sys.path.insert(0, str(REPO_ROOT))
    from streamlit_app.launch import launch

    click.echo(f"dashboard on http://127.0.0.1:{port} (ABP_HOME={p.home})")
    raise SystemExit(launch(port, p))


# ---- cluster ----------------------------------------------------------------------------------
@main.command("executor-requirements")
@click.option(
    "--zip",
    "zip_to",
    default=None,
    type=click.Path(file_okay=False, writable=True),
    help="Also write the project's code as the zip shipped to executors into this folder.",
)
def executor_requirements_cmd(zip_to: str | None) -> None:
    """Print what the Spark workers' Python needs (pip requirement lines, pinned to this driver).

    The project itself is not among them: it is shipped with every job (docs/deploy.md).
    """
    from pathlib import Path

    from ab_pipelines.executors import executor_requirements, project_zip, python_version

    click.echo(f"# Python {python_version()} on every worker (the driver's minor version)")
    for line in executor_requirements():
        click.echo(line)
    if zip_to:
        click.echo(f"# project zip: {project_zip(Path(zip_to))}", err=True)


# ---- dagster ----------------------------------------------------------------------------------
@main.command()
@click.option("--port", default=3000, show_default=True, type=int)
def dagster(port: int) -> None:
    """Start the Dagster UI on loopback, with DAGSTER_HOME under ABP_HOME."""
    p = _home()
    ensure_dagster_home(p)
    exe = shutil.which("dagster") or os.path.join(os.path.dirname(sys.executable), "dagster")
    cmd = [exe, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    click.echo(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={p.dagster_home})")
    raise SystemExit(subprocess.call(cmd, cwd=REPO_ROOT))


if __name__ == "__main__":  # pragma: no cover
    main()
