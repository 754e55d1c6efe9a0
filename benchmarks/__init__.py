"""Benchmarks against peers (issue 8): ``make bench`` runs ``python -m benchmarks``.

Each benchmark runs the project and a peer in the same run, on the same data, interleaving their
repetitions so both see the same noise on a shared machine, and reports medians and their ratio.
Peers live in venvs of their own under ``.venv-peers/`` (see :mod:`benchmarks.peers`). The report is
written to ``docs/benchmarks.md`` (:mod:`benchmarks.report`).
"""
