"""Worker process tuning for many sockets: the cyclic GC, and its pauses for the stats
endpoint."""

from __future__ import annotations

import gc
import time
from typing import Any

# Cyclic GC with the default gen-0 threshold (700) took 29 % of a worker's CPU holding 2,200
# sockets (py-spy --native, benchmarks/realtime_bench.py, 2,000 units @ 1 Hz, 200 boards):
# every tick allocates frames and lists and each collection walks the asyncio/uvloop objects
# of every connection. Collect 70x less often; objects from start-up are frozen out of it.
GC_GEN0_THRESHOLD = 50_000

# Collections per generation: count, total and longest pause.
gc_pauses: dict[int, dict[str, float]] = {g: {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
                                          for g in range(3)}
gc_recent: list[tuple[float, int, float]] = []  # (wall time, generation, ms), the last 20
_gc_started = 0.0


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    ms = (time.perf_counter() - _gc_started) * 1000
    rec = gc_pauses[info["generation"]]
    rec["count"] += 1
    rec["total_ms"] += ms
    rec["max_ms"] = max(rec["max_ms"], ms)
    gc_recent.append((time.time(), info["generation"], round(ms, 2)))
    del gc_recent[:-20]


def tune_gc() -> None:
    """After start-up: freeze what exists, collect generation 0 less often, time pauses.

    Only the young generations are collected before the freeze: a full collection of the
    start-up heap held the event loop for 100-130 ms (a stall the cold-start benchmark
    measures), while what it would free is start-up garbage that lives once, not per
    request."""
    gc.collect(1)
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), gen1, gen2)
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


def gc_stats() -> dict[str, Any]:
    return {
        "gc": {str(g): {k: round(v, 2) for k, v in rec.items()} for g, rec in gc_pauses.items()},
        "gc_recent": list(gc_recent),
    }
