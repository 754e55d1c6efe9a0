"""The edge service (docs/edge.md): the signed config with ETag and Server-Sent Events, remote
assignment with a sticky anonymous id, and the metric-event collector; ``abp serve`` runs it.

Importing this package imports neither Starlette nor prometheus_client: ``create_app`` does,
so a supervising ``abp serve`` sets up Prometheus's multiprocess mode before they load.
"""

from __future__ import annotations

from ab_pipelines.edge.settings import EdgeSettings, EdgeSettingsError

__all__ = ["EdgeSettings", "EdgeSettingsError", "create_app"]


def create_app(settings: EdgeSettings, home=None):
    """The edge's Starlette app (see ``ab_pipelines.edge.app.create_app``)."""
    from ab_pipelines.edge.app import create_app as _create_app

    return _create_app(settings, home)
