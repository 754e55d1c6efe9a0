"""The config a worker serves, and the watch that replaces it (docs/edge.md, "Where the config
comes from").

``ConfigWatcher`` looks at ``$ABP_HOME/edge/config.json`` every ``watch_seconds`` (a ``stat``:
inode, mtime_ns, size). A changed file is read and installed through the SDK's own path
(``Client.install``: signature, schema, and the rule that a version never goes back nor an old
number comes with other content). A refused file costs one log line and
one count (``abp_edge_config_refused_total``) and the last good version keeps serving; the same
bad file is not logged again until it changes. A file caught half-written by a writer that does
not replace atomically (its ``stat`` moved while it was read) is read again on the next look, not
refused.

Every accepted version is installed in the worker's serving ``Client`` (so ``/assign`` answers
from it, with its exposure memory kept across versions) and wakes every ``/config/stream``
subscriber of the worker at once: ``changed`` is an ``asyncio.Event`` replaced on each version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ab_pipelines.assignment import Client, ConfigError
from ab_pipelines.edge import metrics

__all__ = ["ConfigWatcher", "ServedConfig"]

log = logging.getLogger("ab_pipelines.edge")


@dataclass(frozen=True)
class ServedConfig:
    """One verified version as the endpoints send it."""

    raw: bytes  # config.json's bytes exactly as verified: the body of GET /config
    version: int
    content_sha: str
    etag: str  # quoted: "<version>-<first 16 of content_sha>"
    sse_event: bytes  # the whole Server-Sent Event announcing this version

    @classmethod
    def of(cls, raw: bytes, version: int, content_sha: str) -> ServedConfig:
        text = raw.decode("utf-8").strip()
        if "\n" in text or "\r" in text:  # an SSE data line holds no newline
            text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
        event = f"id: {version}\nevent: config\ndata: {text}\n\n".encode()
        return cls(raw, version, content_sha, f'"{version}-{content_sha[:16]}"', event)


class ConfigWatcher:
    """Holds the served config of one worker and keeps it up to date with ``path``.

    Args:
        path: the signed config file (``$ABP_HOME/edge/config.json``).
        client: the worker's serving Client (without a config yet); every version goes into it.
        watch_seconds: seconds between two looks at the file.
    """

    def __init__(self, path: Path, client: Client, watch_seconds: float) -> None:
        self.path = Path(path)
        self.client = client
        self.watch_seconds = watch_seconds
        self.current: ServedConfig | None = None
        self.changed = asyncio.Event()  # set (and replaced) when a new version is served
        self.stopping = False
        self._seen: tuple[int, int, int] | None = None  # stat of the last file dealt with
        self._missing_logged = False
        self._task: asyncio.Task | None = None

    # ---- one look ----------------------------------------------------------------------------
    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def look(self) -> bool:
        """Look at the file once; True when a new version is now served. Blocking (disk and
        signature check): the task runs it in a thread."""
        seen = self._stat()
        if seen is None:
            if self.current is not None and not self._missing_logged:
                self._missing_logged = True
                log.error("edge config %s is gone; keeping version %d", self.path, self.version)
            return False
        self._missing_logged = False
        if seen == self._seen:
            return False
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            return self._refuse(seen, f"cannot read: {exc}")
        if self._stat() != seen:
            return False  # written while we read it: look again next time
        self._seen = seen
        if self.current is not None and raw == self.current.raw:
            return False
        try:
            # The SDK's own path: signature, schema, then its version rule (a version that goes
            # back, or an old number with other content, is refused; the same one is no news).
            if not self.client.install(raw, source=str(self.path)):
                return False
        except ConfigError as exc:
            return self._refuse(seen, str(exc))
        cfg = self.client.config  # this watcher is the serving client's only installer
        self.current = ServedConfig.of(raw, cfg.version, cfg.content_sha)
        metrics.CONFIG_VERSION.set(cfg.version)
        log.info("edge config version %d served (from %s)", cfg.version, self.path)
        return True

    def _refuse(self, seen: tuple[int, int, int], reason: str) -> bool:
        self._seen = seen  # the same bad file is refused once, not at every look
        metrics.CONFIG_REFUSED.inc()
        log.error(
            "edge config %s refused: %s; still serving version %s",
            self.path,
            reason,
            self.version if self.current else "none",
        )
        return False

    @property
    def version(self) -> int | None:
        return self.current.version if self.current else None

    def _announce(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    # ---- the task ----------------------------------------------------------------------------
    def start(self) -> None:
        """Load what is there now, then watch in an asyncio task (call inside the event loop)."""
        metrics.CONFIG_VERSION.set(0)
        self.look()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="edge-config-watch")

    async def _run(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.watch_seconds)
            try:
                if await asyncio.to_thread(self.look):
                    self._announce()
            except Exception:  # a bug here must not end the watch: log it and look again
                log.exception("edge config watch failed; looking again")

    def stop(self) -> None:
        """End the watch and wake every subscriber (they see ``stopping`` and end)."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
        self._announce()
