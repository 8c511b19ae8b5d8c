"""Nearest-K units benchmark: the project's CH + bucket kernel against baselines.

    python benchmarks/routing_bench.py --graph ny|sf|PATH [--quick]

Same graph, same units (500 at random nodes, half available), same 1,000 random
incident nodes, K=5, in one process. Methods:

* ``kernel``      - routing.kernels.ch_nearest_k, timed per query inside a numba loop
                    (clock_gettime through ctypes), i.e. without the Python call;
* ``kernel_api``  - the same through UnitIndex.nearest_raw, timed per Python call;
* ``service``     - RoutingService.nearest_units(node=...), the public API, per call
                    (placement, seeds, result objects included);
* ``networkx``    - Dijkstra on the reversed networkx graph, stopping after K
                    available units are settled (pure Python, heapq over G.pred);
* ``scipy``       - scipy.sparse.csgraph.dijkstra on the transposed CSR with a
                    distance limit, doubled until K available units are inside;
* ``rk_cch``      - routingkit-cch CCHManyToOne pinned to the available units
                    (only when installed: ``pip install .[bench]``).

Agreement: the share of queries whose K ETAs equal the kernel's exactly (integer
travel times). Prints a table, then one JSON line with medians, p99s and speed-ups.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routing import kernels as K
from routing.ch import build_hierarchy
from routing.graph import RoadGraph, is_graph_file
from routing.index import Seed, UnitIndex
from routing.testdata import road_file

_libc = ctypes.CDLL(None)
_clock_gettime = _libc.clock_gettime
_clock_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]
_clock_gettime.restype = ctypes.c_int
CLOCK_MONOTONIC = 1


@njit
def _now_ns(ts):
    _clock_gettime(CLOCK_MONOTONIC, ts.ctypes.data)
    return ts[0] * 1_000_000_000 + ts[1]


# not cached: numba refuses to cache functions that hold a ctypes pointer
@njit
def _batch_queries(ub_indptr, ub_head, ub_w, ub_l, uf_indptr, uf_head, uf_w, b_start, b_len,
                   pool_sj, pool_t, pool_l, u_avail, u_type, u_caps, u_tie, u_edge, u_frac,
                   n_slots, q_rank, edge_time, edge_len, k, dist, dlen, hkey, hnode, hpos,
                   touched, best, best_touched, out_slot, out_t, out_l, res_t, res_s, lat_ns):
    ts = np.zeros(2, np.int64)
    sr = np.zeros(1, np.int32)
    st = np.zeros(1)
    sl = np.zeros(1)
    se = np.full(1, -1, np.int32)
    sf = np.zeros(1)
    for q in range(q_rank.shape[0]):
        sr[0] = q_rank[q]
        t0 = _now_ns(ts)
        cnt = K.ch_nearest_k(ub_indptr, ub_head, ub_w, ub_l, uf_indptr, uf_head, uf_w, b_start,
                             b_len, pool_sj, pool_t, pool_l, u_avail, u_type, u_caps, u_tie,
                             u_edge, u_frac, n_slots, sr, st, sl, se, sf, 1, edge_time, edge_len,
                             True, np.int64(-1), np.int64(0), k, dist, dlen, hkey, hnode, hpos,
                             touched, best, best_touched, out_slot, out_t, out_l)
        lat_ns[q] = _now_ns(ts) - t0
        for i in range(k):
            res_t[q, i] = out_t[i] if i < cnt else np.inf
            res_s[q, i] = out_slot[i] if i < cnt else -1


@njit
def _batch_moves(slots, new_rank, uf_indptr, uf_head, uf_w, uf_l, ub_indptr, ub_head, ub_w,
                 b_start, b_len, b_cap, pool_sj, pool_t, pool_l, scal, u_cnt, u_nodes, dist, dlen, hkey, hnode, hpos, touched, tmp_node, tmp_t, tmp_l, lat_ns):
    ts = np.zeros(2, np.int64)
    src = np.zeros(1, np.int32)
    z = np.zeros(1)
    for i in range(slots.shape[0]):
        src[0] = new_rank[i]
        t0 = _now_ns(ts)
        K.bucket_remove(slots[i], b_start, b_len, pool_sj, pool_t, pool_l, u_cnt, u_nodes)
        pool_sj, pool_t, pool_l, cnt = K.bucket_insert(
            slots[i], src, z, z, 1, uf_indptr, uf_head, uf_w, uf_l, ub_indptr, ub_head, ub_w,
            b_start, b_len, b_cap, pool_sj, pool_t, pool_l, scal, u_cnt, u_nodes, dist,
            dlen, hkey, hnode, hpos, touched, tmp_node, tmp_t, tmp_l)
        lat_ns[i] = _now_ns(ts) - t0
        if cnt < 0:
            return pool_sj, pool_t, pool_l, i
    return pool_sj, pool_t, pool_l, slots.shape[0]


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_graph(spec: str) -> RoadGraph:
    from routing.loaders import load_any, load_dimacs

    if spec == "ny":
        return load_dimacs(road_file("USA-road-t.NY.gr.gz"), road_file("USA-road-d.NY.co.gz"))
    if spec == "sf":
        return load_any(road_file("tl_2017_06075_roads.zip"))
    if is_graph_file(spec):
        return RoadGraph.load(spec).with_hierarchy(None)
    return load_any(spec)


def pct(a: list[float] | np.ndarray, p: float) -> float:
    return float(np.percentile(np.asarray(a), p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", default="ny", help="ny | sf | path to a road file or .cadgraph")
    ap.add_argument("--quick", action="store_true", help="fewer baseline queries (~1 min)")
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    n_base = 150 if args.quick else args.queries  # queries given to the slow baselines
    kk = args.k
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    g = load_graph(args.graph)
    t_read = time.perf_counter() - t0
    n = g.n_nodes
    print(f"graph {args.graph}: {n:,} nodes, {g.n_edges:,} arcs (read in {t_read:.1f} s)",
          file=sys.stderr)

    unit_nodes = rng.choice(n, size=args.units, replace=False).astype(np.int32)
    avail = np.zeros(args.units, dtype=bool)
    avail[rng.choice(args.units, size=args.units // 2, replace=False)] = True
    q_nodes = rng.integers(0, n, size=args.queries).astype(np.int32)
    rows: dict[str, dict] = {}

    # ---- kernel: preprocessing, file load, unit placement -----------------------------
    m0 = rss_mib()
    t0 = time.perf_counter()
    gh = g.with_hierarchy(build_hierarchy(g))
    t_pre = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = gh.save(Path(tmp) / "bench.cadgraph")
        t0 = time.perf_counter()
        gh = RoadGraph.load(path)
        t_load = time.perf_counter() - t0
    idx = UnitIndex(gh, capacity=args.units)
    for i in range(args.units):
        s = idx.new_slot()
        idx.set_unit(s, [Seed(int(unit_nodes[i]), 0.0, 0.0)], available=bool(avail[i]),
                     type_bits=1, cap_bits=0, tie_key=i)
    mem_kernel = rss_mib() - m0
    h = gh.hierarchy
    assert h is not None
    q_rank = h.rank[q_nodes].astype(np.int32)
    idx._ensure_k(kk)
    res_t = np.empty((args.queries, kk))
    res_s = np.empty((args.queries, kk), np.int64)
    lat = np.empty(args.queries, np.int64)

    def run_batch() -> None:
        _batch_queries(h.up_b_indptr, h.up_b_head, h.up_b_time_ds, h.up_b_length_m,
                       h.up_f_indptr, h.up_f_head, h.up_f_time_ds, idx._b_start, idx._b_len,
                       idx._pool_sj, idx._pool_t, idx._pool_l, idx.u_avail, idx.u_type,
                       idx.u_caps, idx.u_tie, idx.u_edge, idx.u_frac, idx.n_slots, q_rank,
                       idx._edge_time, gh.edge_length_m, kk, idx._dist, idx._dlen, idx._hkey,
                       idx._hnode, idx._hpos, idx._touched, idx._best, idx._best_touched,
                       idx._out_slot, idx._out_t, idx._out_l, res_t, res_s, lat)

    run_batch()  # compile / warm
    run_batch()
    kern_us = lat / 1000.0
    rows["kernel"] = {"pre_s": t_pre, "load_s": t_load, "mem": mem_kernel,
                      "med": float(np.median(kern_us)), "p99": pct(kern_us, 99), "agree": 1.0}
    # the same through the Python API, one call per query
    api = []
    z1 = np.zeros(1)
    e1 = np.full(1, -1, np.int32)
    for q in range(args.queries):
        sr = q_rank[q:q + 1]
        t0 = time.perf_counter()
        idx.nearest_raw(sr, z1, z1, e1, z1, kk, np.int64(-1), np.int64(0))
        api.append((time.perf_counter() - t0) * 1e6)
    rows["kernel_api"] = {"pre_s": t_pre, "load_s": t_load, "mem": mem_kernel,
                          "med": float(np.median(api)), "p99": pct(api, 99), "agree": 1.0}
    ref_eta = res_t / 1.0  # integer deciseconds (units at nodes)

    # ---- unit moves ----------------------------------------------------------------------
    n_moves = 2000
    mv_slots = rng.integers(0, args.units, size=n_moves).astype(np.int64)
    mv_node = rng.integers(0, n, size=n_moves)
    mv_rank = h.rank[mv_node].astype(np.int32)
    mv_lat = np.empty(n_moves, np.int64)
    pool = _batch_moves(mv_slots, mv_rank, h.up_f_indptr, h.up_f_head, h.up_f_time_ds,
                        h.up_f_length_m, h.up_b_indptr, h.up_b_head, h.up_b_time_ds,
                        idx._b_start, idx._b_len, idx._b_cap, idx._pool_sj, idx._pool_t,
                        idx._pool_l, idx._scal, idx.u_cnt, idx.u_nodes, idx._dist,
                        idx._dlen, idx._hkey, idx._hnode, idx._hpos, idx._touched, idx._tmp_node,
                        idx._tmp_t, idx._tmp_l, mv_lat)
    idx._pool_sj, idx._pool_t, idx._pool_l = pool[0], pool[1], pool[2]
    done = pool[3]
    assert done == n_moves, "bucket rows too narrow for the batch move benchmark"
    for i in range(done):
        unit_nodes[mv_slots[i]] = mv_node[i]
    move_us = mv_lat[:done] / 1000.0
    api_moves = []
    for i in range(300):
        s = int(rng.integers(args.units))
        node = int(rng.integers(n))
        t0 = time.perf_counter()
        idx.set_unit(s, [Seed(node, 0.0, 0.0)], available=bool(avail[s]), type_bits=1,
                     cap_bits=0, tie_key=s)
        api_moves.append((time.perf_counter() - t0) * 1e6)
        unit_nodes[s] = node
    # re-run the kernel on the final unit positions so every method sees the same units
    run_batch()
    ref_eta = res_t.copy()

    # ---- the service face: RoutingService.nearest_units(node=...), one call per query ----
    from routing.service import RoutingService  # only this section needs it

    svc = RoutingService(gh)
    for i in range(args.units):
        svc.upsert_unit(i, node=int(gh.node_ext_id[unit_nodes[i]]), available=bool(avail[i]))
    svc_lat, svc_eta = [], []
    q_ext = gh.node_ext_id[q_nodes].tolist()
    for q in range(args.queries):
        t0 = time.perf_counter()
        res = svc.nearest_units(node=q_ext[q], k=kk)
        svc_lat.append((time.perf_counter() - t0) * 1e6)
        svc_eta.append([round(u.eta_s * 10.0) for u in res.units])

    # ---- baselines -----------------------------------------------------------------------------
    avail_nodes = unit_nodes[avail]
    is_unit: dict[int, list[int]] = {}
    for ui in np.nonzero(avail)[0]:
        is_unit.setdefault(int(unit_nodes[ui]), []).append(int(ui))

    def agree(etas: Sequence[Any]) -> float:
        ok = sum(1 for q, e in enumerate(etas) if np.array_equal(np.asarray(e, float),
                                                                    ref_eta[q, :len(e)])
                 and len(e) == np.isfinite(ref_eta[q]).sum())
        return ok / len(etas)

    # networkx
    import networkx as nx

    m0 = rss_mib()
    t0 = time.perf_counter()
    G = nx.DiGraph()
    G.add_weighted_edges_from(zip(gh.edge_tail.tolist(), gh.fwd_head.tolist(),
                                  gh.edge_time_ds.tolist()))
    t_nx_pre = time.perf_counter() - t0
    mem_nx = rss_mib() - m0
    pred = G.pred
    nx_lat, nx_eta = [], []
    for q in range(n_base):
        t0 = time.perf_counter()
        src = int(q_nodes[q])
        dist = {src: 0}
        heap = [(0, src)]
        found: list[int] = []
        done_set = set()
        while heap and len(found) < kk:
            d, x = heapq.heappop(heap)
            if x in done_set:
                continue
            done_set.add(x)
            for _ in is_unit.get(x, ()):
                if len(found) < kk:
                    found.append(d)
            for y, attr in pred[x].items():
                nd = d + attr["weight"]
                if nd < dist.get(y, 1 << 62):
                    dist[y] = nd
                    heapq.heappush(heap, (nd, y))
        nx_lat.append((time.perf_counter() - t0) * 1e6)
        nx_eta.append(found)
    rows["networkx"] = {"pre_s": t_nx_pre, "load_s": float("nan"), "mem": mem_nx,
                        "med": float(np.median(nx_lat)), "p99": pct(nx_lat, 99), "agree": agree(nx_eta)}
    del G, pred

    # scipy
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    m0 = rss_mib()
    t0 = time.perf_counter()
    # transposed graph: rows = heads, so a search from the incident runs backwards
    A = csr_matrix((gh.edge_time_ds.astype(np.float64), (gh.fwd_head, gh.edge_tail)),
                   shape=(n, n))
    t_sp_pre = time.perf_counter() - t0
    mem_sp = rss_mib() - m0
    sp_lat, sp_eta = [], []
    limit0 = float(np.median(gh.edge_time_ds)) * 60
    for q in range(n_base):
        t0 = time.perf_counter()
        limit = limit0
        while True:
            d = dijkstra(A, directed=True, indices=int(q_nodes[q]), limit=limit)
            du = d[avail_nodes]
            if np.isfinite(du).sum() >= kk or not np.isfinite(limit):
                break
            limit = limit * 2 if limit < 1e12 else np.inf
        top = np.sort(du[np.isfinite(du)])[:kk]
        sp_lat.append((time.perf_counter() - t0) * 1e6)
        sp_eta.append(top.tolist())
    rows["scipy"] = {"pre_s": t_sp_pre, "load_s": float("nan"), "mem": mem_sp,
                     "med": float(np.median(sp_lat)), "p99": pct(sp_lat, 99), "agree": agree(sp_eta)}

    # routingkit-cch
    try:
        import routingkit_cch as rk
    except ImportError:
        rk = None  # type: ignore[assignment]  # optional baseline: absent = skipped
        print("routingkit-cch not installed (pip install .[bench]): skipped", file=sys.stderr)
    if rk is not None:
        m0 = rss_mib()
        t0 = time.perf_counter()
        tail_l, head_l = gh.edge_tail.tolist(), gh.fwd_head.tolist()
        order = rk.compute_order_inertial(n, tail_l, head_l, gh.node_lat.tolist(),
                                          gh.node_lon.tolist())
        cch = rk.CCH(order, tail_l, head_l, False)
        metric = rk.CCHMetric(cch, gh.edge_time_ds.tolist())
        m2o = rk.CCHManyToOne(metric, avail_nodes.tolist())
        t_rk_pre = time.perf_counter() - t0
        mem_rk = rss_mib() - m0
        rk_lat, rk_eta = [], []
        for q in range(n_base):
            t0 = time.perf_counter()
            rk_ds = m2o.distances_to(int(q_nodes[q]))
            rk_top = sorted(d for d in rk_ds if d is not None)[:kk]
            rk_lat.append((time.perf_counter() - t0) * 1e6)
            rk_eta.append(rk_top)
        rows["rk_cch"] = {"pre_s": t_rk_pre, "load_s": float("nan"), "mem": mem_rk,
                          "med": float(np.median(rk_lat)), "p99": pct(rk_lat, 99),
                          "agree": agree(rk_eta)}

    rows["service"] = {"pre_s": t_pre, "load_s": t_load, "mem": mem_kernel,
                       "med": float(np.median(svc_lat)), "p99": pct(svc_lat, 99),
                       "agree": agree(svc_eta)}

    # ---- report -------------------------------------------------------------------------------
    print()
    print(f"nearest-{kk} of {args.units} units ({int(avail.sum())} available), "
          f"{args.queries} queries for the kernel, {n_base} for baselines; graph {args.graph} "
          f"({n:,} nodes)")
    print(f"{'method':<12}{'preprocess s':>13}{'load s':>8}{'mem MiB':>9}{'median µs':>11}"
          f"{'p99 µs':>10}{'agreement':>11}")
    for name, r in rows.items():
        load = f"{r['load_s']:.2f}" if np.isfinite(r["load_s"]) else "-"
        print(f"{name:<12}{r['pre_s']:>13.2f}{load:>8}{r['mem']:>9.0f}{r['med']:>11.1f}"
              f"{r['p99']:>10.1f}{r['agree']:>10.1%}")
    print(f"unit move: kernel median {np.median(move_us):.1f} µs, p99 {pct(move_us, 99):.1f} µs; "
          f"through UnitIndex.set_unit median {np.median(api_moves):.1f} µs")
    out = {
        "graph": args.graph, "nodes": n, "units": args.units, "k": kk,
        "queries": args.queries, "baseline_queries": n_base,
        "preprocess_s": round(t_pre, 2), "graph_load_s": round(t_load, 3),
        "move_median_us": round(float(np.median(move_us)), 2),
        "move_api_median_us": round(float(np.median(api_moves)), 2),
        "methods": {k_: {"median_us": round(r["med"], 2), "p99_us": round(r["p99"], 2),
                         "agreement": round(r["agree"], 4)} for k_, r in rows.items()},
        "speedup_median": {k_: round(r["med"] / rows["kernel"]["med"], 1)
                           for k_, r in rows.items() if k_ not in ("kernel",)},
        "speedup_median_api": {k_: round(r["med"] / rows["kernel_api"]["med"], 1)
                               for k_, r in rows.items() if k_ not in ("kernel", "kernel_api", "service")},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
