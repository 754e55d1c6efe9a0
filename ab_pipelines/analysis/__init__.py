"""Spark analysis: exposures to assignments, per-user metrics, sufficient statistics."""
