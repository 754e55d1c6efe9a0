"""The ``abp`` command's entry point (``[project.scripts]``).

The commands need the platform's packages (``pip install 'ab-pipelines[platform]'``); on a slim
install (the SDK alone) ``abp`` says so in one sentence instead of an import traceback. Standard
library only, so that it can say it.
"""

from __future__ import annotations

import sys

PLATFORM_HINT = "pip install 'ab-pipelines[platform]'"


def main() -> None:
    try:
        from jobs.cli import main as abp
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in {"ab_pipelines", "jobs", "assets", "streamlit_app", ""}:
            raise  # our own package broken: a bug, not a missing extra
        sys.exit(
            f"error: abp needs the platform's packages ({missing} is not installed): "
            f"{PLATFORM_HINT}"
        )
    abp()
