"""`abp`'s library commands: the platform's command line without Dagster or Streamlit.

The commands that drive Dagster (``run``, ``runs``, ``dagster``, ``demo``) or start the dashboard
(``dashboard``) live with the Dagster code (``jobs/cli.py``), whose ``main`` is this group with
those commands added: that is the installed ``abp`` (CONTRACTS section 4).

Errors a user can cause (a bad date, a bad engine setting, an unwritable ABP_HOME, a broken registry)
end in one sentence on stderr and a non-zero exit; nothing is half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import time
from collections.abc import Sequence

import click

from ab_pipelines.settings import (
    Paths,
    SetupError,
    ensure_writable_home,
    paths,
    settings,
)

__all__ = [
    "Stopped",
    "UserError",
    "home_or_fail",
    "landing_table",
    "main",
    "parse_day",
    "published_assigner",
    "registry_or_fail",
    "require_engine",
    "until_stopped",
]


class UserError(click.ClickException):
    """One clear sentence for the user; exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def home_or_fail() -> Paths:
    try:
        return ensure_writable_home(paths())
    except SetupError as exc:
        raise UserError(str(exc)) from None


def parse_day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name} '{value}' is not a date; use YYYY-MM-DD.") from None


def require_engine() -> None:
    """The engine settings (ABP_SPARK_REMOTE, ...) are sound and a remote engine answers; no
    Java is needed (the embedded engine is Sail)."""
    from ab_pipelines.lake.engine import EngineSettings

    try:
        EngineSettings.from_env().check()
    except SetupError as exc:
        raise UserError(str(exc)) from None


def registry_or_fail():
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

    p = home_or_fail()
    first = parse_day(start, "--start")
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(_kafka_delivery(p)) if to_kafka else None
        try:
            report = simulate_days(
                p,
                first,
                days,
                users=users,
                seed=seed,
                registry=registry_or_fail(),
                assigner=published_assigner(p),
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

    p = ensure_writable_home(home_or_fail())
    try:
        settings = KafkaSettings.from_env()
        if (already := running_broker(p.home)) is not None:
            raise KafkaSetupError(
                f"an embedded broker already runs for ABP_HOME {p.home} at {already}; "
                "stop it first (or use it)."
            )
        with until_stopped(), EmbeddedBroker(p.home, port=port) as b:
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
    except Stopped:
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

    p = ensure_writable_home(home_or_fail())
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

    p = home_or_fail()
    given = {"ABP_EDGE_HOST": host, "ABP_EDGE_PORT": port, "ABP_EDGE_WORKERS": workers}
    # in the environment, so the worker processes read the same settings
    os.environ.update({k: str(v) for k, v in given.items() if v is not None})
    try:
        run_edge(EdgeSettings.from_env(), p, echo=click.echo)
    except (SetupError, KafkaSetupError, SignatureError) as exc:
        raise UserError(str(exc)) from None


class Stopped(Exception):
    """SIGTERM or SIGINT reached a long-running command."""


@contextlib.contextmanager
def until_stopped():
    """SIGTERM and SIGINT raise Stopped in the main thread, so ``with`` blocks clean up."""

    def stop(signum, frame):
        raise Stopped(signal.Signals(signum).name)

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def published_assigner(p: Paths):
    """Traffic is assigned by the SDK with the config published so far (None: not published yet)."""
    from ab_pipelines.assignment import Client
    from ab_pipelines.simulate import sdk_assigner

    path = p.edge / "config.json"
    return sdk_assigner(Client.from_file(str(path))) if path.exists() else None


def landing_table(p: Paths, days: Sequence[dt.date], header: bool = True) -> str:
    """Read, landed, quarantined and duplicates per arrival day, from ops.landed_files."""
    from ab_pipelines.events.landing import format_summary, ledger_summary
    from ab_pipelines.lake import Lake

    return format_summary(ledger_summary(Lake(p), list(days)), header=header)


# ---- registry and config plane -------------------------------------------------------------
def _problems(p: Paths) -> list[str]:
    """Every registry problem, against the last published state."""
    from ab_pipelines.config import validate_registry
    from ab_pipelines.config.publish import published_state

    return [str(x) for x in validate_registry(None, published_state(p))]


@main.command()
def validate() -> None:
    """Validate the registry (every problem on one line: file, field, reason)."""
    p = home_or_fail()
    problems = _problems(p)
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise UserError(f"the registry has {len(problems)} problem(s); nothing can be published.")
    reg = registry_or_fail()
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

    p = home_or_fail()
    try:
        result = do_publish(p, actor=settings().user)
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

    p = home_or_fail()
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
    p = home_or_fail()
    require_engine()
    known = registry_or_fail().known_variants()
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
    p = home_or_fail()
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
        read_scorecard,
        render,
        to_json,
    )
    from ab_pipelines.lake import Lake

    if version is not None and as_of:
        raise UserError("give either --version or --as-of, not both.")
    day = parse_day(date_, "--date") if date_ else None
    at = None
    if as_of:
        try:
            at = dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise UserError(f"--as-of '{as_of}' is not an ISO-8601 time.") from None
        if at.tzinfo is None:
            raise UserError(f"--as-of '{as_of}' has no zone; add Z or an offset like +01:00.")
    lake = Lake(home_or_fail())
    try:
        pinned = pinned_versions(lake, version, at)
        card = read_scorecard(lake, registry_or_fail(), experiment, day, pinned)
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
            Lake(home_or_fail()),
            registry_or_fail(),
            metric,
            mde,
            alpha,
            power,
            variants,
            allocation,
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

    lake = Lake(home_or_fail())
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


if __name__ == "__main__":  # pragma: no cover
    main()
