"""`abp`: the platform's command line (CONTRACTS section 4), the installed entry point.

The library's commands (``ab_pipelines.cli``) plus the ones that drive Dagster (``run``, ``runs``,
``dagster``, ``demo``) or start the dashboard (``dashboard``): those live here, with the Dagster
code, so that ``ab_pipelines`` never imports Dagster, Streamlit, ``assets`` or ``jobs``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time

import click

from ab_pipelines.cli import (
    UserError,
    home_or_fail,
    landing_table,
    parse_day,
    registry_or_fail,
    require_engine,
)
from ab_pipelines.cli import main as library_main
from ab_pipelines.settings import REPO_ROOT
from jobs.driver import ensure_dagster_home, run_days

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The experimentation platform: simulate, land and analyze A/B tests on a lakehouse."""


for _name, _command in library_main.commands.items():
    main.add_command(_command, _name)


# ---- run --------------------------------------------------------------------------------------
@main.command()
@click.option("--date", "date_", default=None, help="One day to materialize, YYYY-MM-DD.")
@click.option("--from", "from_", default=None, help="First day of a range (a backfill in one run).")
@click.option("--to", "to_", default=None, help="Last day of the range, inclusive.")
def run(date_: str | None, from_: str | None, to_: str | None) -> None:
    """Materialize all assets for a day or a range of days through Dagster."""
    if date_ and (from_ or to_):
        raise UserError("give either --date or --from/--to, not both.")
    if date_:
        first = last = parse_day(date_, "--date")
    elif from_ and to_:
        first, last = parse_day(from_, "--from"), parse_day(to_, "--to")
        if last < first:
            raise UserError(f"the date range is backwards: --from {first} is after --to {last}.")
    else:
        raise UserError("give --date YYYY-MM-DD, or --from YYYY-MM-DD --to YYYY-MM-DD.")
    p = home_or_fail()
    require_engine()
    registry_or_fail()
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

    p = home_or_fail()
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
def demo(days: int | None, users: int | None, history_days: int | None, no_kafka: bool) -> None:
    """Play the demo: day by day, simulate the day's traffic, then land (and analyze) it.

    The traffic goes through Kafka: the embedded broker (or ABP_KAFKA_BOOTSTRAP's cluster) and
    one sink connector, both started here and stopped on exit (also on Ctrl-C); the connector
    writes the dumps that landing reads. --no-kafka writes the dumps directly.
    """
    from jobs.demo import play

    play(days, users, history_days, no_kafka)


# ---- dashboard and Dagster UI -----------------------------------------------------------------
@main.command()
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
def dashboard(port: int) -> None:
    """Start the analysts' dashboard (Streamlit) on loopback; it reads the lake, never Spark."""
    p = home_or_fail()
    sys.path.insert(0, str(REPO_ROOT))
    from streamlit_app.launch import launch

    click.echo(f"dashboard on http://127.0.0.1:{port} (ABP_HOME={p.home})")
    raise SystemExit(launch(port, p))


@main.command()
@click.option("--port", default=3000, show_default=True, type=int)
def dagster(port: int) -> None:
    """Start the Dagster UI on loopback, with DAGSTER_HOME under ABP_HOME."""
    p = home_or_fail()
    ensure_dagster_home(p)
    exe = shutil.which("dagster") or os.path.join(os.path.dirname(sys.executable), "dagster")
    cmd = [exe, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    click.echo(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={p.dagster_home})")
    raise SystemExit(subprocess.call(cmd, cwd=REPO_ROOT))


if __name__ == "__main__":  # pragma: no cover
    main()
