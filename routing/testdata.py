"""Locating the shared (read-only) road data for tests and benchmarks.

``CAD_SHARED_DATA`` points at the shared data folder (default ``../shared/data``
relative to the repository root). Tests that need a file skip when it is absent,
unless ``CAD_REQUIRE_SHARED_DATA=1``, in which case they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("CAD_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def road_file(name: str) -> Path:
    return shared_data_dir() / "road" / name


def shared_data_required() -> bool:
    return os.environ.get("CAD_REQUIRE_SHARED_DATA", "") == "1"


def require_road_file(name: str) -> Path:
    """Path to a shared road file, or skip (fail under CAD_REQUIRE_SHARED_DATA=1)."""
    import pytest

    path = road_file(name)
    if not path.exists():
        msg = (f"shared road data {path} not found (set CAD_SHARED_DATA to the folder holding "
               f"road/{name})")
        if shared_data_required():
            pytest.fail(msg + "; CAD_REQUIRE_SHARED_DATA=1 makes this a failure")
        pytest.skip(msg)
    return path
