from __future__ import annotations

import pytest

from ab_pipelines.lake.delta import Lake


@pytest.fixture
def lake(home):
    return Lake(home)
