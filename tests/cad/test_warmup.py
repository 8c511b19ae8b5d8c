"""Start-up warm-up: after it no routing kernel compiles in the server; a cache miss is
detected without compiling; numba's cache goes under the data directory; the event-loop
lag probe sees a blocked loop."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba import njit

from cad.settings import (
    NUMBA_CACHE_SUBDIR,
    REPO_ROOT,
    Settings,
    configure_numba_cache,
    routing_sources_digest,
)
from cad.warmup import _probes, start_loop_lag_monitor
from routing import warmup
from routing.build import build_graph
from routing.ch import build_hierarchy
from routing.service import RoutingService


def _other_graph(tmp_path: Path, *, with_ch: bool) -> Path:
    """Not the warm-up's graph: another size, uneven travel times, some one-ways."""
    rng = np.random.default_rng(7)
    w, h = 11, 8
    tails, heads = [], []
    for r in range(h):
        for c in range(w):
            v = r * w + c
            if c + 1 < w:
                tails.append(v)
                heads.append(v + 1)
                if (r + c) % 4:
                    tails.append(v + 1)
                    heads.append(v)
            if r + 1 < h:
                tails += [v, v + w]
                heads += [v + w, v]
    n = w * h
    t = rng.integers(20, 400, len(tails))
    g = build_graph(tail_ext=np.array(tails) + 1000, head_ext=np.array(heads) + 1000, time_ds=t,
                    length_m=t * 8.0, road_class=np.zeros(len(tails)),
                    way_id=np.arange(len(tails)), node_ext_id=np.arange(n) + 1000,
                    node_lat=40.7 + (np.arange(n) // w) * 0.001,
                    node_lon=-74.0 + (np.arange(n) % w) * 0.0013, class_names=["street"])
    if with_ch:
        g = g.with_hierarchy(build_hierarchy(g))
    return g.save(tmp_path / ("ch.cadgraph" if with_ch else "plain.cadgraph"))


@pytest.mark.parametrize("with_ch", [True, False], ids=["hierarchy", "dijkstra"])
def test_no_kernel_compiles_after_the_warm_up(tmp_path: Path, with_ch: bool) -> None:
    asyncio.run(warmup.warm_routing_kernels())  # done once per process (conftest did it)
    path = _other_graph(tmp_path, with_ch=with_ch)
    with warmup._listening(warmup._Recorder(refuse=False)) as compiled:
        # what the server does: load the configured graph, place units, move them, ask
        svc = RoutingService.from_file(path, build_hierarchy_if_missing=False)
        g = svc.graph
        for i in range(150):
            svc.upsert_unit(f"U{i}", lat=40.7 + (i % 8) * 0.001, lon=-74.0 + (i % 11) * 0.0013,
                            available=i % 7 != 0, unit_type=["engine", "medic", "ladder"][i % 3],
                            capabilities=["als"] if i % 2 else [])
        for i in range(40):
            svc.move_unit(f"U{i}", lat=40.7005 + (i % 7) * 0.001, lon=-73.9995)
            svc.nearest_units(lat=40.703, lon=-73.993, k=5, unit_types=["medic"],
                              capabilities=["als"])
        svc.route("U3", lat=40.704, lon=-73.99)
        svc.eta_table(lat=[40.701, 40.706], lon=[-73.998, -73.991])
        svc.set_unit_available("U3", False)
        svc.remove_unit("U4")
        svc.swap_graph(type(g).load(path))
        svc.nearest_units(lat=40.703, lon=-73.993, k=5)
    assert compiled.compiled == 0


# Three server starts, each a fresh process, on a numba cache of their own that is empty at
# first: the one cold compile (~55 CPU s) the two tests below share.
_START = ("import asyncio, dataclasses, json; from routing.warmup import warm_routing_kernels;"
          "print(json.dumps(dataclasses.asdict(asyncio.run(warm_routing_kernels()))))")
_SERVE_A_GRAPH = """
import asyncio, dataclasses, json
from pathlib import Path
from routing.service import RoutingService
from routing.warmup import loaded_kernels, warm_routing_kernels
report = asyncio.run(warm_routing_kernels(graph_path=Path({path!r})))
warm = loaded_kernels()
svc = RoutingService.from_file({path!r}, snap_limit_m=200.0)
for i in range(100):
    svc.upsert_unit(f"U{{i}}", lat=40.7 + (i % 8) * 0.001, lon=-74.0 + (i % 11) * 0.0013,
                    available=i % 4 != 0, unit_type=["engine", "medic"][i % 2],
                    capabilities=["als"] if i % 3 else [])
for i in range(30):
    svc.move_unit(f"U{{i}}", lat=40.7012 + (i % 5) * 0.001, lon=-73.9987)
    svc.nearest_units(lat=40.703, lon=-73.993, k=5, unit_types=["medic", "engine"],
                      capabilities=["als"])
svc.remove_unit("U7")
print(json.dumps({{"report": dataclasses.asdict(report), "missing": sorted(loaded_kernels() - warm)}}))
"""


@pytest.fixture(scope="module")
def fresh_cache_starts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``first``: a server's first start on an empty cache (the warm-up report); ``second``:
    the next start on the cache the first filled; ``graph``: then a start with a server's
    graph (another size, uneven times, one-ways), serving it: its warm-up report and the
    kernels serving needed that its warm-up had not loaded."""
    tmp = tmp_path_factory.mktemp("fresh-cache")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NUMBA_CACHE_DIR": str(tmp / "nc")}

    def start(code: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                             text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
        return result

    first = start(_START)
    second = start(_START)
    graph = start(_SERVE_A_GRAPH.format(path=str(_other_graph(tmp, with_ch=True))))
    return {"first": first, "second": second, "graph": graph, "cache_dir": env["NUMBA_CACHE_DIR"]}


def test_warm_up_for_a_graph_loads_all_that_server_runs(fresh_cache_starts: dict[str, Any]) -> None:
    """With the server's graph the warm-up loads only what that server runs: check, in a
    fresh process, that serving it afterwards (as incidents/lifecycle and the unit locator
    do) needs no kernel, compiled or loaded, that the warm-up did not load."""
    result = fresh_cache_starts["graph"]
    assert result["report"]["compiled_in_process"] == 0 and not result["report"]["error"], result
    assert result["missing"] == []


def test_warm_cache_loads_every_kernel_without_a_child(fresh_cache_starts: dict[str, Any]) -> None:
    """A second server start loads everything from the cache the first one filled. On a
    cache of its own: the suite's shared cache is filled and read by other tests too."""
    first, second = fresh_cache_starts["first"], fresh_cache_starts["second"]
    assert first["from_cache"] is False and first["compiled_in_process"] == 0, first
    assert first["child_compile_s"] > 0 and not first["error"], first
    assert second["from_cache"] is True, second
    assert second["child_compile_s"] == 0 and second["compiled_in_process"] == 0, second
    assert second["kernels"] > 0 and not second["error"], second
    assert second["cache_dir"] == fresh_cache_starts["cache_dir"]


def test_a_cache_miss_is_refused_not_compiled() -> None:
    @njit
    def never_compiled(x: int) -> int:
        return x + 1

    with pytest.raises(warmup._CacheMiss), warmup._listening(warmup._Recorder(refuse=True)):
        never_compiled(1)
    assert never_compiled(1) == 2  # refused once, nothing broken


def test_the_cad_command_puts_numba_cache_under_the_data_dir(tmp_path: Path) -> None:
    code = ("import sys; sys.argv = ['cad', '--help']\n"
            "import cad.__main__ as entry\n"
            "try:\n    entry.main()\nexcept SystemExit:\n    pass\n"
            "import routing\nfrom numba.core import config\nprint(config.CACHE_DIR)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(CAD_DATA_DIR=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env, check=True)
    assert out.stdout.splitlines()[-1] == str(tmp_path / NUMBA_CACHE_SUBDIR
                                              / routing_sources_digest())
    # an explicit NUMBA_CACHE_DIR wins
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env, check=True)
    assert out.stdout.splitlines()[-1] == str(tmp_path / "mine")


def test_numba_cache_is_named_by_every_routing_source(tmp_path: Path) -> None:
    """A change to any routing module (not only the one a kernel is in) gives another cache
    directory: numba would load a kernel compiled against the module's old code."""
    src = REPO_ROOT / "routing"
    copy = tmp_path / "routing"
    copy.mkdir()
    for f in src.glob("*.py"):
        (copy / f.name).write_bytes(f.read_bytes())
    assert routing_sources_digest(copy) == routing_sources_digest(src) == routing_sources_digest()
    heap = copy / "heap.py"
    heap.write_bytes(heap.read_bytes() + b"\n# changed\n")
    assert routing_sources_digest(copy) != routing_sources_digest(src)


def test_configure_numba_cache_changes_nothing_once_routing_is_imported(tmp_path: Path) -> None:
    assert "routing" in sys.modules
    before = os.environ.get("NUMBA_CACHE_DIR")
    assert configure_numba_cache(tmp_path) is None
    assert os.environ.get("NUMBA_CACHE_DIR") == before


async def test_loop_lag_probe_sees_a_blocked_loop(tmp_path: Path) -> None:
    assert start_loop_lag_monitor(Settings(data_dir=tmp_path)) is None  # off by default
    seen = start_loop_lag_monitor(Settings(data_dir=tmp_path, loop_lag_monitor=True))
    assert seen is not None
    try:
        await asyncio.sleep(0.1)
        assert seen.ticks >= 3
        time.sleep(0.25)  # noqa: ASYNC251 - the stall under test (a compile on the loop)
        await asyncio.sleep(0.05)
        assert seen.worst_s >= 0.2 and seen.stalls >= 1
    finally:
        for task in list(_probes):
            task.cancel()
        await asyncio.sleep(0)


def test_report_fields_are_plain_data() -> None:
    report = asyncio.run(warmup.warm_routing_kernels())
    assert report.already_warm
    json.dumps(dataclasses.asdict(report))
