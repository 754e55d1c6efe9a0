"""Dagster software-defined assets; thin: they call ab_pipelines and report metadata."""
