"""Test data: locating the shared (read-only) road data for tests and benchmarks, and a
small valid graph built in memory (``small_graph``).

``CAD_SHARED_DATA`` points at the shared data folder (default ``../shared/data``
relative to the repository root). Tests that need a file skip when it is absent,
unless ``CAD_REQUIRE_SHARED_DATA=1``, in which case they fail.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routing.graph import RoadGraph

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


def small_graph() -> RoadGraph:
    """A small valid graph with hierarchy and snapping grid, for file-format tests: a 4 x 4
    grid of two-way streets 100 m apart near 40N 74W, plus one one-way diagonal."""
    import numpy as np

    from routing.build import build_graph
    from routing.ch import build_hierarchy
    from routing.snap import build_snap_index

    arcs: list[tuple[int, int]] = []
    for r in range(4):
        for c in range(4):
            v = 10 * r + c
            if c < 3:
                arcs += [(v, v + 1), (v + 1, v)]
            if r < 3:
                arcs += [(v, v + 10), (v + 10, v)]
    arcs.append((0, 11))
    ids = np.array(sorted({a for a, _ in arcs} | {b for _, b in arcs}), dtype=np.int64)
    t = np.array([50 + (7 * a + 3 * b) % 20 for a, b in arcs], dtype=np.int64)
    g = build_graph(
        tail_ext=np.array([a for a, _ in arcs]), head_ext=np.array([b for _, b in arcs]),
        time_ds=t, length_m=t * 10.0, road_class=np.zeros(len(arcs)),
        way_id=np.arange(len(arcs)), node_ext_id=ids, node_lat=40.0 + (ids // 10) * 0.0009,
        node_lon=-74.0 + (ids % 10) * 0.0012, class_names=["test"])
    g = g.with_hierarchy(build_hierarchy(g))
    return g.with_snap_index(build_snap_index(g))
