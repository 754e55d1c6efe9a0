"""Data-quality checks (Great Expectations 1.x suites) and their results table."""

from ab_pipelines.quality.results import checks_of_day, failed_checks, record_outcomes
from ab_pipelines.quality.suites import CHECKS, CheckOutcome, check_names, run_checks

__all__ = [
    "CHECKS",
    "CheckOutcome",
    "check_names",
    "checks_of_day",
    "failed_checks",
    "record_outcomes",
    "run_checks",
]
