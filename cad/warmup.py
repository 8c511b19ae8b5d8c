"""Start-up readiness of one worker: routing kernels compiled before it serves, and an
optional probe of the event loop's stalls.

``warm_routing_kernels`` is awaited in the app's lifespan, so uvicorn opens the socket only
once every kernel is loaded (routing/warmup.py: compiled in a child process when numba's
cache is cold, loaded in a worker thread here). Before the socket, not behind a 503 from
``/readyz``: a request that reached the app mid-warm-up (a recommendation, an AVL fix) would
compile on its own, holding the GIL for seconds; with no socket there is no such request,
and `cad serve` already opens it only after the database is up and migrated. The cost is
that ``/healthz`` does not answer during a cold start either (about 30 s of CPU with the San
Francisco graph, once per data directory; benchmarks/coldstart_bench.py): give an
orchestrator's probes a start-up grace period of that order.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from cad.settings import Settings

if TYPE_CHECKING:  # imported at run time, in a thread
    from routing.warmup import WarmupReport

log = structlog.get_logger("cad.warmup")

LOOP_LAG_TICK_S = 0.01
STALL_LOG_S = 0.01
_probes: set[asyncio.Task[None]] = set()


def prepare_routing(settings: Settings) -> None:
    """Before the event loop runs anything (called by the app factory): import the routing
    package and numba, and build numba's typing and target contexts (about 0.7 CPU s).

    Done on a worker thread during the lifespan instead, these imports held the GIL in
    stretches that stalled the loop for 70-130 ms (a loop that serves nothing yet, but one
    that also runs the database pool and the lag probe). Here no loop is waiting on them.
    Nothing to do without a graph or with the warm-up switched off."""
    if not settings.routing_warmup or settings.graph_path is None:
        return
    importlib.import_module("routing.warmup")
    registry = importlib.import_module("numba.core.registry")
    registry.cpu_target.typing_context.refresh()
    registry.cpu_target.target_context.refresh()


async def warm_routing_kernels(settings: Settings) -> None:
    """Every routing kernel the server will run, compiled or loaded from numba's cache, off
    the event loop; logs ``routing_kernels_ready``. Nothing to do without a graph.

    The cache is wherever numba's ``NUMBA_CACHE_DIR`` says: the ``cad`` command points it
    under the data directory (``cad.settings.configure_numba_cache``) before anything imports
    numba. The app factory leaves the process environment alone: under a bare ASGI server
    (``uvicorn cad.app:create_app --factory``) numba's default applies unless the variable
    is set there, beside the sources or in ``~/.cache/numba``."""
    if not settings.routing_warmup:
        log.info("routing_kernels_not_warmed", reason="CAD_ROUTING_WARMUP=0")
        return
    if settings.graph_path is None:
        # Without a graph no routing kernel runs: ETAs are straight-line estimates and the
        # unit locator, AVL ingest and recommendations skip the routing index (routing is
        # None throughout). Loading them anyway cost 0.6 CPU s a start, 60 once per cache.
        log.info("routing_kernels_ready", seconds=0.0, kernels=0,
                 skipped="no graph configured (CAD_GRAPH_PATH): no routing kernel runs")
        return
    # Imported by prepare_routing before the loop started; in a thread should it not have.
    module = await asyncio.to_thread(importlib.import_module, "routing.warmup")
    report: WarmupReport = await module.warm_routing_kernels(graph_path=settings.graph_path)
    fields = {"seconds": round(report.seconds, 3), "from_cache": report.from_cache,
              "child_compile_s": round(report.child_compile_s, 1),
              "compiled_in_process": report.compiled_in_process, "kernels": report.kernels,
              "child_cpu_s": round(report.child_cpu_s, 1),
              "numba_cache_dir": report.cache_dir or "beside the sources"}
    if report.already_warm:
        log.debug("routing_kernels_ready", already_warm=True, **fields)
    elif report.error or report.compiled_in_process:
        log.warning("routing_kernels_ready", error=report.error, **fields)
    else:
        log.info("routing_kernels_ready", **fields)


@dataclass
class LoopLag:
    """What the lag probe saw so far."""

    worst_s: float = 0.0
    stalls: int = 0  # wake-ups STALL_LOG_S or more late
    ticks: int = 0


def start_loop_lag_monitor(settings: Settings) -> LoopLag | None:
    """With ``CAD_LOOP_LAG_MONITOR=1``: a task that wakes every 10 ms and logs
    ``event_loop_stall`` (``lag_ms``) whenever a wake-up comes 10 ms or more late (the loop
    could not run anything meanwhile), and ``event_loop_lag`` with the longest when the loop
    shuts down. The honest measure of a stall: it sees the loop itself, also before the
    socket is open, where polling ``/healthz`` from outside sees only refusals."""
    if not settings.loop_lag_monitor:
        return None
    lag = LoopLag()
    task = asyncio.get_running_loop().create_task(_watch_loop_lag(lag), name="loop-lag-monitor")
    _probes.add(task)
    task.add_done_callback(_probes.discard)
    return lag


async def _watch_loop_lag(seen: LoopLag) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            due = loop.time() + LOOP_LAG_TICK_S
            await asyncio.sleep(LOOP_LAG_TICK_S)
            lag = loop.time() - due
            seen.ticks += 1
            seen.worst_s = max(seen.worst_s, lag)
            if lag >= STALL_LOG_S:
                seen.stalls += 1
                log.info("event_loop_stall", lag_ms=round(lag * 1000, 1))
    finally:
        log.info("event_loop_lag", max_ms=round(seen.worst_s * 1000, 1), stalls=seen.stalls,
                 ticks=seen.ticks)
