"""Compile (or load from numba's on-disk cache) every routing kernel before a server says
it is ready, without stalling its event loop.

Kernels are ``@njit(cache=True)``: the first call of each compiles it (seconds; tens of
seconds for all of them on a cold cache) and writes the machine code to numba's cache,
which later processes load in milliseconds. Compilation holds the GIL, so compiling in a
thread of the server would still freeze its event loop; it is done in a child process
instead, and the server then only loads from the cache. :func:`warm_routing_kernels`:

1. runs :func:`exercise_kernels` in a worker thread with compilation refused (a numba
   ``numba:compile`` listener aborts the first cache miss): on a warm cache this loads
   every kernel and is done;
2. on a miss, runs ``python -m routing.warmup`` (the same workload in a child process,
   same source files and same cache directory), which compiles and fills the cache;
3. runs the workload again in the thread, now loading from the cache.

The workload goes only through the public API (a small graph built, its hierarchy built,
saved and loaded as the server does, or the server's own graph; a :class:`RoutingService`
with units placed, moved, made unavailable, removed; nearest units, routes, ETA tables,
snapping, a graph swap), so it covers whatever kernels the routing internals use; with
the server's graph it is limited to what that server runs (:func:`exercise_kernels`).
``tests/cad/test_warmup.py`` checks that nothing compiles afterwards.
The cache directory is numba's: ``NUMBA_CACHE_DIR`` when set (``cad`` sets it under its
data directory, see ``cad.settings.configure_numba_cache``), else next to the sources or
in the user's cache directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba.core import config as numba_config
from numba.core import event as numba_event

from routing.build import build_graph
from routing.graph import RoadGraph
from routing.service import Location, RoutingService

# Compiling every kernel takes about 60 CPU seconds (170 s of wall time measured on two
# cores shared with five other busy processes); a child still compiling after this long is
# stuck, and the server compiles in-process instead.
CHILD_TIMEOUT_S = 600.0

_warmed_lock = threading.Lock()
_warmed: WarmupReport | None = None


@dataclass(frozen=True)
class WarmupReport:
    seconds: float            # wall time of the whole warm-up
    from_cache: bool          # everything was loaded from numba's cache in this process
    child_compile_s: float    # wall time of the compiling child (0 when warm)
    compiled_in_process: int  # kernels compiled in this process (0 unless the cache failed)
    kernels: int              # kernel signatures now loaded in this process
    cache_dir: str            # numba's cache directory ("" = beside the sources)
    already_warm: bool = False  # this process had warmed up before (nothing done now)
    error: str = ""           # why the child failed, when it did
    # CPU time of the compiling child: its wall time depends on what else the machine
    # runs, this hardly
    child_cpu_s: float = 0.0


class _CacheMiss(Exception):
    """Raised inside numba's compiler on the first kernel that is not in the cache."""


class _Recorder(numba_event.Listener):
    """Counts compilations in one thread; with ``refuse`` aborts the first one instead."""

    def __init__(self, *, refuse: bool) -> None:
        self.refuse = refuse
        self.thread = threading.get_ident()
        self.compiled = 0

    def on_start(self, event: numba_event.Event) -> None:
        if threading.get_ident() != self.thread:
            return  # another thread's compilation is none of this warm-up's business
        if self.refuse:
            raise _CacheMiss(str(getattr(event.data.get("dispatcher"), "__name__", "?")))
        self.compiled += 1

    def on_end(self, event: numba_event.Event) -> None:
        pass


@contextlib.contextmanager
def _listening(recorder: _Recorder) -> Iterator[_Recorder]:
    numba_event.register("numba:compile", recorder)
    try:
        yield recorder
    finally:
        numba_event.unregister("numba:compile", recorder)


def _grid_graph(side: int = 6) -> RoadGraph:
    """A ``side`` x ``side`` street grid (~100 m blocks in San Francisco), two-way streets
    plus one one-way row, with street names: small, but every array has its real dtype."""
    ids = np.arange(side * side, dtype=np.int64)
    lat = 37.77 + (ids // side) * 0.0009
    lon = -122.42 + (ids % side) * 0.00114
    tails: list[int] = []
    heads: list[int] = []
    names: list[int] = []
    for r in range(side):
        for c in range(side):
            v = r * side + c
            if c + 1 < side:
                tails.append(v)
                heads.append(v + 1)
                names.append(r)
                if r != 1:  # row 1 is one-way eastbound
                    tails.append(v + 1)
                    heads.append(v)
                    names.append(r)
            if r + 1 < side:
                tails += [v, v + side]
                heads += [v + side, v]
                names += [side + c, side + c]
    t = np.asarray(tails, dtype=np.int64)
    h = np.asarray(heads, dtype=np.int64)
    length = np.full(t.size, 100.0)
    return build_graph(
        tail_ext=t, head_ext=h, time_ds=np.full(t.size, 90, dtype=np.int64), length_m=length,
        road_class=np.zeros(t.size, dtype=np.int16), way_id=np.arange(t.size, dtype=np.int64),
        node_ext_id=ids, node_lat=lat, node_lon=lon, class_names=["residential"],
        edge_name=np.asarray(names, dtype=np.int64),
        street_names=[f"Street {i}" for i in range(2 * side)],
        meta={"source": "routing.warmup"})


def _exercise(service: RoutingService, graph_file: Path) -> None:
    g = service.graph
    lat0, lon0 = float(g.node_lat.min()), float(g.node_lon.min())
    dlat = float(g.node_lat.max()) - lat0
    dlon = float(g.node_lon.max()) - lon0
    # More units than the index's initial capacity, so its growth paths run too.
    for i in range(80):
        f = (i * 37 % 100) / 100.0
        service.upsert_unit(f"u{i}", lat=lat0 + f * dlat, lon=lon0 + (1 - f) * dlon,
                            available=i % 5 != 0, unit_type=("engine", "medic")[i % 2],
                            capabilities=["als"] if i % 3 == 0 else [])
    service.upsert_unit("at-node", node=int(g.node_ext_id[0]), unit_type="engine")
    service.upsert_unit("on-edge", location=Location(edge=0, frac=0.25), unit_type="medic")
    lat, lon = lat0 + 0.41 * dlat, lon0 + 0.63 * dlon
    where = Location(lat=lat, lon=lon)
    for _ in range(2):  # the second round takes the paths of a warm workspace
        service.nearest_units(location=where, k=5)
        service.nearest_units(location=where, k=3, unit_types=["medic"], capabilities=["als"])
        service.nearest_units(node=int(g.node_ext_id[-1]), k=12, unit_types=["engine"])
        service.move_unit("u1", lat=lat0 + 0.9 * dlat, lon=lon0 + 0.1 * dlon)
        service.move_unit("u2", node=int(g.node_ext_id[7]))
        service.set_unit_available("u0", True)
        service.set_unit_available("u3", False)
        service.route("u1", location=where)
        service.route("at-node", node=int(g.node_ext_id[-1]))
        service.eta_table(lat=[lat, lat0], lon=[lon, lon0])
        service.eta_table(nodes=[int(g.node_ext_id[3])], unit_ids=["u1", "u2"])
        service.snap(np.array([lat, lat0 - 0.01]), np.array([lon, lon0]))
        service.locate(lat=lat, lon=lon)
    service.remove_unit("u4")
    service.swap_graph(RoadGraph.load(graph_file))
    service.nearest_units(location=where, k=5)


def exercise_kernels(workdir: Path, *, graph_path: Path | None = None) -> None:
    """Run once every routing kernel a server uses, through the public API. Graphs go
    through a file as in the server (loaded arrays are read-only, and numba compiles
    separately for read-only arrays).

    Without ``graph_path``: all of them, on a tiny grid (building a contraction hierarchy,
    its queries, the Dijkstra fallback of graphs built with ``--no-ch``, snapping). With
    the server's graph: what that server will run. A graph with its hierarchy needs only
    the queries, run on that graph (25-30 CPU seconds of compiling instead of 60 for all:
    what brings a cold start to about 30 s on two cores); one without gets its hierarchy
    built at start-up, so that construction is compiled too (on the grid: same kernels,
    far faster)."""
    graph = RoadGraph.load(graph_path) if graph_path is not None else None
    if graph is not None and graph.hierarchy is not None:
        assert graph_path is not None
        _exercise(RoutingService(graph, build_hierarchy_if_missing=False), graph_path)
        return
    built = _grid_graph()
    with_ch = RoutingService(built).graph  # builds the contraction hierarchy
    ch_file = with_ch.save(workdir / "warmup-ch.cadgraph")
    _exercise(RoutingService.from_file(ch_file), ch_file)
    if graph is None:
        # Graphs built with --no-ch, served by other programs: the Dijkstra fallback kernels.
        plain_file = built.save(workdir / "warmup-plain.cadgraph")
        _exercise(RoutingService.from_file(plain_file, build_hierarchy_if_missing=False),
                  plain_file)


def _run_exercise(*, refuse_compile: bool, graph_path: Path | None = None) -> int:
    """The workload in the calling thread; returns how many kernels were compiled (raises
    :class:`_CacheMiss` on the first one when ``refuse_compile``)."""
    with tempfile.TemporaryDirectory(prefix="cad-warmup-") as tmp:
        with _listening(_Recorder(refuse=refuse_compile)) as recorder:
            exercise_kernels(Path(tmp), graph_path=graph_path)
        return recorder.compiled


def loaded_kernels() -> set[str]:
    """``module.kernel(signature)`` of every kernel compiled or loaded in this process, over
    every routing module."""
    from numba.core.registry import CPUDispatcher

    found: set[str] = set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "routing" or name.startswith("routing.")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher):
                fn = obj.py_func
                found.update(f"{fn.__module__}.{fn.__qualname__}{sig}" for sig in obj.signatures)
    return found


def loaded_kernel_signatures() -> int:
    return len(loaded_kernels())


def _numba_cache_dir() -> str:
    """numba's cache directory in effect ("" = its default locations). numba fills its config
    module's globals from the environment at run time, hence getattr."""
    return str(getattr(numba_config, "CACHE_DIR", "") or "")


def _child_env() -> dict[str, str]:
    """The child must compile the very source files this process imported (numba keys its
    cache by source path) into the cache directory this process reads."""
    env = dict(os.environ)
    src_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH", "")) if p)
    if _numba_cache_dir():
        env["NUMBA_CACHE_DIR"] = _numba_cache_dir()
    else:
        env.pop("NUMBA_CACHE_DIR", None)
    return env


async def _compile_in_child(graph_path: Path | None) -> tuple[str, float, float]:
    """``python -m routing.warmup [--graph PATH]``: (why it failed or "", wall s, CPU s)."""
    t0 = time.perf_counter()
    args = ["--graph", str(graph_path)] if graph_path is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "routing.warmup", *args, env=_child_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err, error = b"", b"", ""
    try:
        async with asyncio.timeout(CHILD_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        error = f"still compiling after {CHILD_TIMEOUT_S:.0f} s"
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave a compiler behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
    if not error and proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-2:]
        error = f"exited {proc.returncode}: {' | '.join(tail)}"
    cpu_s = float("nan")
    with contextlib.suppress(ValueError, IndexError):
        cpu_s = float(out.decode().split("cpu_s=")[1].split()[0])
    return error, time.perf_counter() - t0, cpu_s


async def _probe(graph_path: Path | None) -> tuple[bool, str]:
    """(every kernel loaded from the cache, error). Refuses to compile: never stalls."""
    try:
        await asyncio.to_thread(_run_exercise, refuse_compile=True, graph_path=graph_path)
    except _CacheMiss:
        return False, ""
    except Exception as exc:  # noqa: BLE001 - a broken kernel surfaces in the final run
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


async def warm_routing_kernels(*, graph_path: Path | None = None,
                               force: bool = False) -> WarmupReport:
    """Make every routing kernel the server will run callable without compiling, off the
    event loop. ``graph_path``: the server's graph (see :func:`exercise_kernels`).

    Done once per process (later calls return at once with ``already_warm``) unless
    ``force``. Never raises for a cache problem: when the child cannot fill the cache the
    kernels are compiled in this process, which works but holds the GIL (reported as
    ``compiled_in_process``)."""
    global _warmed
    with _warmed_lock:
        done = _warmed
    if done is not None and not force:
        return WarmupReport(0.0, done.from_cache, 0.0, 0, loaded_kernel_signatures(),
                            done.cache_dir, already_warm=True)
    t0 = time.perf_counter()
    if graph_path is not None and not Path(graph_path).is_file():
        graph_path = None  # the server reports the missing graph itself
    child_s, cpu_s, compiled = 0.0, 0.0, 0
    from_cache, error = await _probe(graph_path)
    if not from_cache:
        child_error, child_s, cpu_s = await _compile_in_child(graph_path)
        error = "; ".join(e for e in (error, child_error) if e)
        compiled = await asyncio.to_thread(_run_exercise, refuse_compile=False,
                                           graph_path=graph_path)
    report = WarmupReport(
        seconds=time.perf_counter() - t0, from_cache=from_cache, child_compile_s=child_s,
        child_cpu_s=cpu_s, compiled_in_process=compiled, kernels=loaded_kernel_signatures(),
        cache_dir=_numba_cache_dir(), error=error)
    with _warmed_lock:
        _warmed = report
    return report


def _main(argv: list[str]) -> int:
    """The child: compile the kernels into numba's cache. One at a time per cache: a second
    server starting meanwhile waits here, then only loads."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m routing.warmup",
                                 description="Compile the routing kernels into numba's cache.")
    ap.add_argument("--graph", type=Path, help="the server's graph file (default: all kernels)")
    args = ap.parse_args(argv)
    lock_dir = Path(_numba_cache_dir() or tempfile.gettempdir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(lock_dir / f"cad-routing-warmup-{os.getuid()}.lock", "a") as lock:
        _lock(lock)
        compiled = _run_exercise(refuse_compile=False, graph_path=args.graph)
    print(f"routing kernels: {compiled} compiled in {time.perf_counter() - t0:.1f} s "
          f"cpu_s={time.process_time():.2f} "
          f"(cache: {_numba_cache_dir() or 'beside the sources'})")
    return 0


def _lock(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: two cold starts at once just compile twice
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
