"""A running app with a training agency (CAD_TRAINING_AGENCIES), for the training-mode tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.dispatch_fixtures import make_settings
from tests.support import RunningApp, running_app

TRAINING = "SFFD-TRAINING"


@pytest.fixture
async def training_app(database_url: str, tmp_path: Path) -> AsyncIterator[RunningApp]:
    settings = make_settings(database_url, tmp_path, training_agencies=[TRAINING])
    async with running_app(settings) as running:
        yield running
