"""Measure the TIGER time factor: how much longer SFFD units really took from en route to
on scene than the posted-speed TIGER graph predicts.

    python benchmarks/eta_calibration.py --graph sf-factor1.cadgraph

The graph must be built with ``--tiger-time-factor 1`` (posted speeds). For every engine or
truck response of the SFFD call files whose unit belongs to the call's first-due station
(so it most likely left from quarters) with both times recorded: observed = On Scene -
Response (en route), predicted = fastest road time from the station to the call's recorded
location. The factor is the median of observed / predicted over trips the graph puts at 60 s
or more (shorter ones are dominated by pulling out and parking, not by the road). Prints a
table per predicted-time band and per priority, then one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from routing.graph import RoadGraph

CALL_FILES = ("sffd_calls_2016-12-31_to_2017-01-07.csv.gz",
              "sffd_calls_2020-04-07_to_2020-04-20.csv.gz")
MIN_PREDICTED_S = 60.0
TIME_FMT = "%m/%d/%Y %I:%M:%S %p"


def shared(relative: str) -> Path:
    return Path(os.environ.get("CAD_SHARED_DATA", REPO.parent / "shared" / "data")) / relative


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--graph", type=Path, required=True, help="SF TIGER graph, factor 1")
    args = ap.parse_args()
    g = RoadGraph.load(args.graph)
    factor_in_graph = float(g.meta.get("time_factor", 1.0))
    kx = np.cos(np.radians(37.76))
    tree = cKDTree(np.column_stack([g.node_lon * kx, g.node_lat]))
    n = g.n_nodes
    adj = csr_matrix((g.edge_time_ds.astype(np.float64) / 10.0, (g.edge_tail, g.fwd_head)),
                     shape=(n, n))
    stations: dict[int, tuple[float, float]] = {}
    with open(shared("calls/sffd_fire_stations.csv"), newline="") as f:
        for r in csv.DictReader(f):
            stations[int(r["station"])] = (float(r["lat"]), float(r["lon"]))
    ids = sorted(stations)
    _, st_nodes = tree.query([[stations[s][1] * kx, stations[s][0]] for s in ids])
    times = dijkstra(adj, directed=True, indices=st_nodes)   # station x node, seconds
    row_of = {s: i for i, s in enumerate(ids)}

    trips: list[tuple[float, float, str]] = []   # predicted, observed, priority
    for name in CALL_FILES:
        with gzip.open(shared(f"calls/{name}"), "rt", newline="") as f:
            for r in csv.DictReader(f):
                m = re.fullmatch(r"[ET](\d+)", r["Unit ID"])
                if not m or not r["Response DtTm"] or not r["On Scene DtTm"]:
                    continue
                station = int(m.group(1))
                if station not in row_of or r["Station Area"].lstrip("0") != str(station):
                    continue
                observed = (datetime.strptime(r["On Scene DtTm"], TIME_FMT)
                            - datetime.strptime(r["Response DtTm"], TIME_FMT)).total_seconds()
                if not 0 < observed <= 1800:
                    continue
                lat, lon = (float(v) for v in r["Location"].strip("()").split(","))
                _, node = tree.query([lon * kx, lat])
                predicted = float(times[row_of[station], int(node)]) * (1.0 / factor_in_graph)
                if np.isfinite(predicted) and predicted > 0:
                    trips.append((predicted, observed, r["Final Priority"]))
    pred = np.array([t[0] for t in trips])
    obs = np.array([t[1] for t in trips])
    prio = np.array([t[2] for t in trips])
    ratio = obs / pred
    use = pred >= MIN_PREDICTED_S
    factor = float(np.median(ratio[use]))
    print(f"{'trips':<28}{'n':>7}{'median obs/pred':>18}{'p25':>8}{'p75':>8}")
    rows = [("all (pred >= 60 s)", use)]
    for lo, hi in ((60, 120), (120, 240), (240, 480), (480, 10_000)):
        rows.append((f"pred {lo}-{hi} s", (pred >= lo) & (pred < hi)))
    for p in ("3", "2"):
        rows.append((f"final priority {p}", use & (prio == p)))
    rows.append(("pred < 60 s (not used)", ~use))
    bands = {}
    for label, mask in rows:
        if mask.sum():
            q = np.percentile(ratio[mask], [25, 50, 75])
            print(f"{label:<28}{int(mask.sum()):>7}{q[1]:>18.2f}{q[0]:>8.2f}{q[2]:>8.2f}")
            bands[label] = {"n": int(mask.sum()), "median": round(float(q[1]), 3)}
    err_before = np.median(np.abs(np.log(ratio[use])))
    err_after = np.median(np.abs(np.log(ratio[use] / factor)))
    print(json.dumps({"tiger_time_factor": round(factor, 2), "trips": int(use.sum()),
                      "median_abs_log_error_factor1": round(float(err_before), 3),
                      "median_abs_log_error_calibrated": round(float(err_after), 3),
                      "bands": bands}))


if __name__ == "__main__":
    main()
