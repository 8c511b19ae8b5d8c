"""Accuracy of the address geocoder on San Francisco's data (no timings here): the SFFD
stations' addresses, a 90/10 split of the shared address file, and the hundred-block addresses
of the SFFD call files against each call's recorded location. Each test prints what it
measured (run with -s to see it)."""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from cad.settings import Settings
from incidents.geocode import StreetIndex
from incidents.geocoding.index import AddressPoints, Candidate, Geocoder
from incidents.geocoding.normalize import normalize_street
from routing.build import haversine_m
from routing.graph import RoadGraph
from tests.support import require_shared

EXACT = ("address_point", "interpolated")   # a result this precise must be within 300 m
CALL_FILES = ("calls/sffd_calls_2016-12-31_to_2017-01-07.csv.gz",
              "calls/sffd_calls_2020-04-07_to_2020-04-20.csv.gz")


def _points(rows: list[dict[str, str]]) -> AddressPoints:
    return AddressPoints([normalize_street(r["street"]) for r in rows], [r["street"] for r in rows],
                         np.array([int(r["number"]) for r in rows]),
                         np.array([float(r["lat"]) for r in rows]),
                         np.array([float(r["lon"]) for r in rows]))


@pytest.fixture(scope="module")
def address_rows() -> list[dict[str, str]]:
    path = require_shared("addresses/sf_address_points.csv.gz")
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sf_road_graph(sf_graph_path: Path) -> RoadGraph:
    return RoadGraph.load(sf_graph_path)


def _geocoder(rows: list[dict[str, str]], graph: RoadGraph) -> Geocoder:
    """As the server builds it: the points, the graph's street names and edges."""
    return Geocoder(_points(rows), graph=graph, streets=StreetIndex.from_graph(graph))


@pytest.fixture(scope="module")
def sf_geocoder(address_rows: list[dict[str, str]], sf_road_graph: RoadGraph) -> Geocoder:
    return _geocoder(address_rows, sf_road_graph)


def _error_m(c: Candidate, lat: float, lon: float) -> float:
    return haversine_m(c.lat, c.lon, lat, lon)


def _far_and_exact(results: list[tuple[str, Candidate | None, float]]) -> list[str]:
    """Answers more than 300 m off that did not say they were less precise than interpolated."""
    return [f"{q!r} -> {c.label} ({c.precision}) {err:.0f} m" for q, c, err in results
            if c is not None and err > 300 and c.precision in EXACT]


def test_sffd_stations_geocode_at_the_station(sf_geocoder: Geocoder,
                                              sffd_stations: list[dict[str, str]]) -> None:
    """Every station within 150 m, the issue's bound. Two of them (19, 390 BUCKINGHAM WAY;
    48, 800 AVENUE I) have numbers beyond every known number of their street in the half
    file: they are placed along the street's edges, at street precision."""
    results = []
    for s in sffd_stations:
        found = sf_geocoder.geocode(s["address"])
        assert found, s["address"]
        c = found[0]
        results.append((s["station"], c, _error_m(c, float(s["lat"]), float(s["lon"]))))
    errors = np.array([e for _, _, e in results])
    print(f"\nstations: {len(results)}, median error {np.median(errors):.1f} m, "
          f"max {errors.max():.0f} m; " + ", ".join(f"{st} {c.precision} {e:.0f} m"
                                                    for st, c, e in results if st in ("19", "48")))
    assert len(results) == 45
    assert [(st, c.label, round(e)) for st, c, e in results if e > 150] == []
    assert {st: c.precision for st, c, _ in results if st in ("19", "48")} == {
        "19": "street", "48": "street"}
    assert np.median(errors) <= 30
    assert not _far_and_exact([(s, c, e) for s, c, e in results])


def _file_mistakes(rows: list[dict[str, str]]) -> set[int]:
    """Rows whose point is more than 300 m from both of its street's nearest numbers on the
    same side (113 ORD ST lies 4.7 km from 99 and 117, in the Presidio; 496 BRYANT ST 1.6 km
    from 482 and 518): the file's own mistakes, which no geocoder can hold out and recover."""
    by_street: dict[tuple[str, int], list[int]] = {}
    for k, r in enumerate(rows):
        by_street.setdefault((r["street"], int(r["number"]) % 2), []).append(k)
    out: set[int] = set()
    for ks in by_street.values():
        ks.sort(key=lambda k: int(rows[k]["number"]))
        for a in range(1, len(ks) - 1):
            here, below, above = rows[ks[a]], rows[ks[a - 1]], rows[ks[a + 1]]
            lat, lon = float(here["lat"]), float(here["lon"])
            if min(haversine_m(lat, lon, float(o["lat"]), float(o["lon"])) for o in (below, above)) > 300:
                out.add(ks[a])
    return out


def _hold_out(rows: list[dict[str, str]], graph: RoadGraph, seed: int, min_score: float
              ) -> tuple[list[tuple[str, Candidate | None, float]], int]:
    """Build from a random 90 % and geocode the other 10 %: numbers the index never saw. An
    answer scoring below intake's threshold is a refusal (the dispatcher chooses), not a
    placement; the file's own mistakes are left out of the held-out tenth."""
    held = np.random.default_rng(seed).random(len(rows)) >= 0.9
    mistakes = _file_mistakes(rows)
    geocoder = _geocoder([r for r, h in zip(rows, held, strict=True) if not h], graph)
    results: list[tuple[str, Candidate | None, float]] = []
    refused = 0
    for k in np.flatnonzero(held).tolist():
        if k in mistakes:
            continue
        r = rows[k]
        q = f"{r['number']} {r['street']}"
        found = geocoder.geocode(q)
        c = found[0] if found else None
        if c is not None and c.score < min_score:
            refused += 1
            continue
        results.append((q, c, _error_m(c, float(r["lat"]), float(r["lon"])) if c else np.inf))
    return results, refused


def test_held_out_tenth_of_the_address_file(address_rows: list[dict[str, str]],
                                            sf_road_graph: RoadGraph) -> None:
    results, refused = _hold_out(address_rows, sf_road_graph, 20261130, Settings().geocode_min_score)
    errors = np.array([e for _, _, e in results])
    precisions: dict[str, int] = {}
    for _, c, _ in results:
        key = c.precision if c else "none"
        precisions[key] = precisions.get(key, 0) + 1
    median, p95 = float(np.median(errors)), float(np.percentile(errors, 95))
    print(f"\nheld out: {len(results)} addresses, median {median:.1f} m, p95 {p95:.1f} m, "
          f"{precisions}, refused {refused}")
    assert median <= 20
    assert p95 <= 80
    far = _far_and_exact(results)
    assert not far, far


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_no_far_answer_claims_to_be_exact_for_any_split(address_rows: list[dict[str, str]],
                                                        sf_road_graph: RoadGraph, seed: int) -> None:
    """The 300 m rule over several random splits. Built without the graph (as this file did
    before), splits 1-8 each showed a few: streets whose only points were held out answered by
    a look-alike name's point (661 COWLES ST -> 661 COLE ST, 4 km), and the file's mistakes."""
    results, refused = _hold_out(address_rows, sf_road_graph, seed, Settings().geocode_min_score)
    far = _far_and_exact(results)
    print(f"\nseed {seed}: {len(results)} placed, {refused} refused, far and exact {far}")
    assert len(results) > 10_000
    assert not far, far


def _block_calls() -> list[tuple[str, float, float]]:
    out = []
    for name in CALL_FILES:
        with gzip.open(require_shared(name), "rt", newline="") as f:
            seen: set[str] = set()
            for row in csv.DictReader(f):
                if row["Call Number"] in seen or not re.search(r"\bBLOCK\b", row["Address"], re.IGNORECASE):
                    continue
                seen.add(row["Call Number"])
                lat, lon = (float(v) for v in row["Location"].strip("()").split(","))
                out.append((row["Address"], lat, lon))
    return out


def test_sffd_hundred_block_calls_land_at_the_recorded_location(sf_geocoder: Geocoder) -> None:
    results: list[tuple[str, Candidate | None, float]] = []
    for address, lat, lon in _block_calls():
        found = sf_geocoder.geocode(address)
        c = found[0] if found else None
        results.append((address, c, _error_m(c, lat, lon) if c else np.inf))
    errors = np.array([e for _, _, e in results])
    within = float(np.mean(errors <= 150))
    print(f"\nSFFD hundred-block calls: {len(results)}, within 150 m: {within:.1%}, "
          f"median {np.median(errors):.1f} m, not found {int(np.isinf(errors).sum())}")
    assert len(results) > 6000
    assert within >= 0.95
    far = _far_and_exact(results)
    assert not far, far


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """A point 400 m off claimed as exact is reported; one said to be street level is not."""
    c = Candidate(37.0, -122.0, "1 X ST", 1.0, "interpolated")
    assert _far_and_exact([("1 X ST", c, 400.0)])
    s = Candidate(37.0, -122.0, "1 X ST", 0.9, "street")
    assert not _far_and_exact([("1 X ST", s, 400.0)])
