"""The in-memory geocoder: address points (from the ``address_points`` table), managed places
and the road graph's street names, in one immutable object built off the event loop at start.

Every answer is a ranked list of candidates; each names its precision, from the best:
``address_point`` (a known point), ``interpolated`` (between the nearest known numbers on the
same street and side: same parity), ``block`` (a hundred-block form: the middle of the block's
known points), ``intersection`` (two streets' shared graph node), ``street`` (the number is
outside every known range, or no number was given) and ``place`` (a managed place or alias).
The score says how sure the *name* match is (1.0 exact; a missing suffix, a wrong suffix or a
typo lower it), times a small factor for the precision; intake refuses below a threshold."""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from incidents.geocode import StreetIndex
from incidents.geocoding.normalize import base_name, normalize_street, normalize_text, parse_query
from routing.graph import RoadGraph

PRECISIONS = ("address_point", "interpolated", "block", "intersection", "street", "place")
# How much a precision lowers a name match's score: a street-level answer to a numbered
# address is still the right street, but the dispatcher should see it rank below a point.
PRECISION_FACTOR = {"address_point": 1.0, "interpolated": 0.98, "block": 0.98,
                    "intersection": 1.0, "street": 0.92, "place": 1.0}
# Known numbers farther apart than this are not interpolated between (a street broken by a
# park or a hill, resumed elsewhere): the nearer number's point answers, at street precision.
MAX_INTERPOLATION_GAP_M = 400.0
# The other side of the street stands in for a missing pair on this side only when its known
# numbers are this close (beyond, the other side may run on a different stretch).
OTHER_SIDE_SPAN = 20
# Interpolations on the two sides farther apart than this (a street is rarely 60 m wide)
# mean one name on two streets: the answer drops to street precision.
SIDES_AGREE_M = 150.0
FUZZY_CUTOFF = 75.0          # rapidfuzz ratio (of names without suffix) below which
                             # a name is not offered at all
FUZZY_FACTOR = 0.9           # a typo's score: ratio x this, so "MARKT ST" (94) -> 0.85
MISSING_SUFFIX_SCORE = 0.95  # "935 FOLSOM" when FOLSOM ST is the only FOLSOM
AMBIGUOUS_SCORE = 0.8        # "26TH" is 26TH AVE and 26TH ST; a wrong suffix
TIE_LIMIT_M = 120.0
# Points of one street closer than this belong to one stretch (SF blocks are 80-250 m; a
# missing half of the points leaves gaps of up to a block).
STRETCH_LINK_M = 300.0
# A stretch's known numbers stand for their whole hundred-block: a number this close to two
# stretches' ranges may be on either.
STRETCH_MARGIN = 100          # an address point farther from any edge of its street is not tied
EARTH_M_PER_DEG = 111_320.0
# A number beyond every known number of its street is placed by walking along the street's
# graph edges from the last known point, away from the numbers below it (street precision):
# metres per house number from the street's own known points, held within SF's usual range
# (100 numbers to a block of 80-200 m), and never farther than the cap or the street's end.
EXTRAPOLATE_RATE_M = (0.8, 2.0)
EXTRAPOLATE_DEFAULT_RATE_M = 1.2
EXTRAPOLATE_CAP_M = 600.0
# A number this far beyond every known number of its street (five hundred-blocks: more than the
# missing half of an address file leaves out, farther than the walk above reaches) is more
# likely a slip of the keys ("99999 MARKET ST", "12000 FOLSOM ST") than a real address: it is
# still answered at street precision, but its score drops below the intake's minimum so the
# dispatcher confirms it (docs/geocoding.md).
IMPLAUSIBLE_BEYOND = 500
IMPLAUSIBLE_FACTOR = 0.8
# TIGER breaks some streets into pieces that do not share a node: the walk steps over a gap
# this short to the next piece of the same name ahead.
EXTRAPOLATE_JUMP_M = 60.0


@dataclass(frozen=True)
class Candidate:
    lat: float
    lon: float
    label: str                    # the matched address, place or corner as the index writes it
    score: float
    precision: str
    street: str | None = None     # normalised street name
    number: int | None = None
    unit: str = ""
    access_lat: float | None = None   # where the point meets its street's edge (routing target)
    access_lon: float | None = None
    side: str | None = None           # left/right of the edge's digitised direction


@dataclass(frozen=True)
class Place:
    id: str
    name: str
    aliases: tuple[str, ...]
    lat: float
    lon: float


@dataclass(frozen=True)
class Reverse:
    lat: float
    lon: float
    address: str | None
    distance_m: float | None
    street: str | None
    cross_streets: tuple[str, ...]


@dataclass(frozen=True)
class AddressPoints:
    """Columns of the address table: one entry per point (units of one building collapse)."""

    street: Sequence[str]     # normalised
    label: Sequence[str]      # the street as the file writes it
    number: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    @classmethod
    def empty(cls) -> AddressPoints:
        z = np.zeros(0)
        return cls([], [], np.zeros(0, np.int64), z, z)


@dataclass(frozen=True)
class Ties:
    """Each address point's street edge in the graph: edge id (-1 untied), fraction along it,
    side (+1 left, -1 right of the edge's direction), distance, and the access point."""

    edge: np.ndarray
    frac: np.ndarray
    side: np.ndarray
    distance_m: np.ndarray
    access_lat: np.ndarray
    access_lon: np.ndarray


def edges_by_name(graph: RoadGraph) -> dict[str, list[int]]:
    """The graph's edges under each normalised street name (an edge may carry several)."""
    by_name: dict[str, list[int]] = defaultdict(list)
    edge_name = np.asarray(graph.edge_name)
    name_norm = [[normalize_street(p) for p in nm.split(";")] for nm in graph.street_names]
    for arc in np.flatnonzero(edge_name >= 0).tolist():
        for norm in name_norm[int(edge_name[arc])]:
            by_name[norm].append(arc)
    return dict(by_name)


def tie_to_streets(graph: RoadGraph, streets: Sequence[str], lat: np.ndarray, lon: np.ndarray
                   ) -> Ties:
    """Tie every point to the nearest edge of the graph that carries its street's name; one
    way streets and divided roads fall out of it: each carriageway is its own edge, and the
    nearest one is on the address's side."""
    n = len(streets)
    edge = np.full(n, -1, np.int64)
    frac = np.zeros(n)
    side = np.zeros(n, np.int8)
    dist = np.full(n, np.inf)
    alat, alon = lat.astype(np.float64).copy(), lon.astype(np.float64).copy()
    if n == 0:
        return Ties(edge, frac, side, dist, alat, alon)
    lat0 = float(np.mean(lat))
    kx = EARTH_M_PER_DEG * math.cos(math.radians(lat0))
    ky = EARTH_M_PER_DEG
    by_name = edges_by_name(graph)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(streets):
        groups[s].append(i)
    tail, head = graph.edge_tail, graph.fwd_head
    nx, ny = graph.node_lon * kx, graph.node_lat * ky
    for s, idx_list in groups.items():
        edges = by_name.get(s)
        if not edges:
            continue
        e = np.asarray(edges)
        ax, ay = nx[tail[e]], ny[tail[e]]
        bx, by = nx[head[e]], ny[head[e]]
        dx, dy = bx - ax, by - ay
        len2 = np.maximum(dx * dx + dy * dy, 1e-9)
        idx = np.asarray(idx_list)
        for lo in range(0, idx.size, 512):
            part = idx[lo:lo + 512]
            px = (lon[part] * kx)[:, None]
            py = (lat[part] * ky)[:, None]
            t = np.clip(((px - ax) * dx + (py - ay) * dy) / len2, 0.0, 1.0)
            qx, qy = ax + t * dx, ay + t * dy
            d2 = (px - qx) ** 2 + (py - qy) ** 2
            best = np.argmin(d2, axis=1)
            rows = np.arange(part.size)
            d = np.sqrt(d2[rows, best])
            ok = d <= TIE_LIMIT_M
            sel = part[ok]
            b = best[ok]
            edge[sel] = e[b]
            frac[sel] = t[rows[ok], b]
            dist[sel] = d[ok]
            cross = dx[b] * (py[ok, 0] - ay[b]) - dy[b] * (px[ok, 0] - ax[b])
            side[sel] = np.where(cross >= 0, 1, -1)
            alon[sel] = qx[rows[ok], b] / kx
            alat[sel] = qy[rows[ok], b] / ky
    return Ties(edge, frac, side, dist, alat, alon)


@dataclass
class _Street:
    label: str
    # per parity (0 even, 1 odd): sorted numbers and their point indexes
    numbers: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    points: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    # number ranges of the street's separate stretches, when it has several whose ranges
    # overlap (one name on two streets): a number inside two of them is not located exactly
    stretches: list[tuple[int, int]] = field(default_factory=list)
    middle: int = -1      # the point that answers for the street as a whole

    def ambiguous(self, number: int) -> bool:
        return sum(1 for lo, hi in self.stretches
                   if lo - STRETCH_MARGIN <= number <= hi + STRETCH_MARGIN) > 1

    def beyond(self, number: int) -> int:
        """How far ``number`` lies outside every known number of the street (0 inside)."""
        known = [n for n in self.numbers if n.size]
        if not known:
            return 0
        lo, hi = min(int(n[0]) for n in known), max(int(n[-1]) for n in known)
        return max(lo - number, number - hi, 0)


def _straightness(v: tuple[float, float], at: tuple[float, float], heading: tuple[float, float]
                  ) -> float:
    """The cosine between ``heading`` and the step from ``at`` to ``v``: 1 straight on."""
    dx, dy = v[0] - at[0], v[1] - at[1]
    return ((dx * heading[0] + dy * heading[1])
            / ((math.hypot(*heading) or 1.0) * (math.hypot(dx, dy) or 1.0)))


class Geocoder:
    """Immutable once built; share it between threads and requests."""

    def __init__(self, points: AddressPoints, *, places: Sequence[Place] = (),
                 graph: RoadGraph | None = None, streets: StreetIndex | None = None) -> None:
        self.graph = graph
        self.street_index = streets
        if streets is not None:
            streets.prepare()
        self.lat = np.asarray(points.lat, np.float64)
        self.lon = np.asarray(points.lon, np.float64)
        self.number = np.asarray(points.number, np.int64)
        # the street key from the label, so a change of the normalisation reaches points
        # imported before it (the table's normalised column is the import's dedupe key)
        norm_of: dict[str, str] = {}
        self.point_street = [norm_of[lb] if lb in norm_of else norm_of.setdefault(lb, normalize_street(lb))
                             for lb in points.label]
        n = self.lat.size
        self.ties = (tie_to_streets(graph, self.point_street, self.lat, self.lon)
                     if graph is not None and n else None)
        self._street_edges = edges_by_name(graph) if graph is not None else {}
        self._streets: dict[str, _Street] = {}
        order = sorted(range(n), key=lambda i: (self.point_street[i], int(self.number[i])))
        groups: dict[str, list[int]] = defaultdict(list)
        labels: dict[str, str] = {}
        for i in order:
            groups[self.point_street[i]].append(i)
            # "05TH ST" as the city's file writes it reads "5TH ST" to a dispatcher
            labels.setdefault(self.point_street[i], re.sub(r"\b0+(?=\d)", "", points.label[i]))
        for s, idx in groups.items():
            arr = np.asarray(idx, np.int64)
            nums = self.number[arr]
            par = nums % 2
            lat, lon = self.lat[arr], self.lon[arr]
            middle = int(arr[int(np.argmin((lat - np.median(lat)) ** 2
                                           + (lon - np.median(lon)) ** 2))])
            self._streets[s] = _Street(
                labels[s], (nums[par == 0], nums[par == 1]), (arr[par == 0], arr[par == 1]),
                self._stretches(arr), middle)
        # graph streets without any address point still answer at street precision
        self._graph_streets: set[str] = set(streets.street_names()) if streets else set()
        all_names = set(self._streets) | self._graph_streets
        self._names = sorted(all_names)
        self._by_base: dict[str, list[str]] = defaultdict(list)
        for s in self._names:
            self._by_base[base_name(s)].append(s)
        self._bases = sorted(self._by_base)
        self._places = list(places)
        self._place_keys: dict[str, int] = {}
        for k, p in enumerate(self._places):
            for key in (p.name, *p.aliases):
                self._place_keys.setdefault(normalize_text(key), k)
        self._place_names = sorted(self._place_keys)
        lat0 = float(np.mean(self.lat)) if n else 0.0
        self._kx = EARTH_M_PER_DEG * math.cos(math.radians(lat0))
        self._tree = (cKDTree(np.column_stack([self.lon * self._kx, self.lat * EARTH_M_PER_DEG]))
                      if n else None)

    def _stretches(self, idx: np.ndarray) -> list[tuple[int, int]]:
        """Number ranges of a street's spatially separate stretches, when some overlap."""
        if idx.size < 2:
            return []
        kx = EARTH_M_PER_DEG * math.cos(math.radians(float(self.lat[idx[0]])))
        xy = np.column_stack([self.lon[idx] * kx, self.lat[idx] * EARTH_M_PER_DEG])
        pairs = cKDTree(xy).query_pairs(STRETCH_LINK_M, output_type="ndarray")
        n = idx.size
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        k, comp = connected_components(graph, directed=False)
        if k < 2:
            return []
        nums = self.number[idx]
        ranges = sorted((int(nums[comp == c].min()), int(nums[comp == c].max())) for c in range(k))
        overlap = any(ranges[a][1] + 2 * STRETCH_MARGIN >= ranges[a + 1][0]
                      for a in range(len(ranges) - 1))
        return ranges if overlap else []

    @property
    def n_points(self) -> int:
        return int(self.lat.size)

    @property
    def n_places(self) -> int:
        return len(self._places)

    def with_places(self, places: Sequence[Place]) -> Geocoder:
        """A copy with another places table (the address arrays are shared)."""
        new = object.__new__(Geocoder)
        new.__dict__.update(self.__dict__)
        new._places = list(places)
        new._place_keys = {}
        for k, p in enumerate(new._places):
            for key in (p.name, *p.aliases):
                new._place_keys.setdefault(normalize_text(key), k)
        new._place_names = sorted(new._place_keys)
        return new

    # ---- names ------------------------------------------------------------------------
    def _label(self, street: str) -> str:
        st = self._streets.get(street)
        if st is not None:
            return st.label
        return self.street_index.label(street) if self.street_index else street

    def street_matches(self, text: str) -> list[tuple[str, float]]:
        """Streets a typed name may mean, each with how sure the match is."""
        norm = normalize_street(text)
        if not norm:
            return []
        if norm in self._streets or norm in self._graph_streets:
            return [(norm, 1.0)]
        base = base_name(norm)
        same_base = self._by_base.get(base, [])
        if same_base:
            if base == norm and len(same_base) == 1:
                return [(same_base[0], MISSING_SUFFIX_SCORE)]
            return [(s, AMBIGUOUS_SCORE) for s in same_base]
        # A typo is looked for in the name without its suffix ("MARKT" ~ "MARKET"): whole
        # names would match on a shared " ALY" or " ST" alone. A typed suffix must then agree.
        suffix = norm[len(base):].strip()
        out: dict[str, float] = {}
        for b, ratio, _ in process.extract(base, self._bases, scorer=fuzz.ratio,
                                           score_cutoff=FUZZY_CUTOFF, limit=5):
            streets = self._by_base[b]
            for s in streets:
                own = s[len(b):].strip()
                if suffix and own != suffix and len(streets) > 1:
                    continue
                sc = ratio / 100.0 * FUZZY_FACTOR
                if (suffix and own != suffix) or (not suffix and len(streets) > 1):
                    sc *= AMBIGUOUS_SCORE
                out[s] = max(out.get(s, 0.0), sc)
        return sorted(out.items(), key=lambda kv: -kv[1])

    # ---- points -------------------------------------------------------------------------
    def _cand(self, i: int, *, label: str, score: float, precision: str, street: str,
              number: int | None, unit: str, lat: float | None = None,
              lon: float | None = None) -> Candidate:
        alat = alon = None
        side = None
        if self.ties is not None and self.ties.edge[i] >= 0:
            if lat is None:
                alat, alon = float(self.ties.access_lat[i]), float(self.ties.access_lon[i])
            side = "left" if self.ties.side[i] > 0 else "right"
        return Candidate(float(self.lat[i]) if lat is None else lat,
                         float(self.lon[i]) if lon is None else lon,
                         label, round(score * PRECISION_FACTOR[precision], 4), precision,
                         street, number, unit, alat, alon, side)

    def _dist_m(self, i: int, j: int) -> float:
        dx = (self.lon[i] - self.lon[j]) * self._kx
        dy = (self.lat[i] - self.lat[j]) * EARTH_M_PER_DEG
        return float(math.hypot(dx, dy))

    def locate(self, street: str, number: int, *, score: float = 1.0, unit: str = ""
               ) -> Candidate | None:
        """A numbered address on a known street: the point, else interpolated on the same
        side, else the other side, else the nearest known number (street precision)."""
        st = self._streets.get(street)
        label = f"{number} {self._label(street)}"
        if st is None:
            return self._street_only(street, score=score, unit=unit, number=number)
        parity = number % 2
        nums, pts = st.numbers[parity], st.points[parity]
        k = int(np.searchsorted(nums, number))
        if k < nums.size and nums[k] == number:
            return self._cand(int(pts[k]), label=label, score=score, precision="address_point",
                              street=street, number=number, unit=unit)
        if st.ambiguous(number):
            return self._nearest_number(st, street, number, label=label, score=score, unit=unit)
        same = self._between(st, parity, number, max_span=None)
        other = self._between(st, 1 - parity, number, max_span=OTHER_SIDE_SPAN)
        if same is not None and other is not None and self._apart_m(same, other) > SIDES_AGREE_M:
            # the two sides disagree: one name on two separate streets (MASON ST downtown
            # and in the Presidio); the point may be on either
            same = other = None
        pick = same or other
        if pick is not None:
            i, j, t = pick
            lat = float(self.lat[i] + t * (self.lat[j] - self.lat[i]))
            lon = float(self.lon[i] + t * (self.lon[j] - self.lon[i]))
            c = self._cand(i if t < 0.5 else j, label=label, score=score,
                           precision="interpolated", street=street, number=number, unit=unit,
                           lat=lat, lon=lon)
            return self._with_access(c, i, j, t)
        if st.beyond(number) > IMPLAUSIBLE_BEYOND:
            score *= IMPLAUSIBLE_FACTOR
        far = self._extrapolate(st, street, number, label=label, score=score, unit=unit)
        if far is not None:
            return far
        return self._nearest_number(st, street, number, label=label, score=score, unit=unit)

    def _extrapolate(self, st: _Street, street: str, number: int, *, label: str, score: float,
                     unit: str) -> Candidate | None:
        """A number beyond every known number of its side (of both sides when that side has
        none): walk from the last known point along the street's graph edges, away from the
        numbers before it, as far as the number's distance from it at the street's own metres
        per number (held within EXTRAPOLATE_RATE_M), at most EXTRAPOLATE_CAP_M and never past
        the street's end. Street precision: the walk is a good guess, not a located point."""
        if self.ties is None or street not in self._street_edges:
            return None
        parity = number % 2
        nums, pts = st.numbers[parity], st.points[parity]
        if nums.size == 0:
            nums, pts = st.numbers[1 - parity], st.points[1 - parity]
        if nums.size == 0 or nums[0] <= number <= nums[-1]:
            return None
        # the other side brackets the number with points close enough to interpolate: the
        # number is inside the street's known stretch, not beyond it
        o_nums, o_pts = st.numbers[1 - parity], st.points[1 - parity]
        k = int(np.searchsorted(o_nums, number))
        if 0 < k < o_nums.size and self._dist_m(int(o_pts[k - 1]), int(o_pts[k])) <= MAX_INTERPOLATION_GAP_M:
            return None
        above = number > nums[-1]
        # a location the file gives to many numbers of the street (a complex's one point for
        # all its buildings) says nothing about where along the street a number is
        where: dict[tuple[float, float], list[int]] = defaultdict(list)
        for n_, p_ in zip(nums.tolist(), pts.tolist(), strict=True):
            where[(float(self.lat[p_]), float(self.lon[p_]))].append(n_)
        stacked = {key for key, ns in where.items() if len(ns) >= 3 and max(ns) - min(ns) > 20}
        order = [k for k in (range(nums.size - 1, -1, -1) if above else range(nums.size))
                 if (float(self.lat[pts[k]]), float(self.lon[pts[k]])) not in stacked]
        if not order:
            return None
        last = int(pts[order[0]])
        if self.ties.edge[last] < 0:
            return None
        # the known points before the last one, nearest number first: the first of them
        # standing apart from it gives the direction and the metres per number
        ref = -1
        rate = EXTRAPOLATE_DEFAULT_RATE_M
        for k in order[1:]:
            j = int(pts[k])
            d = self._dist_m(last, j)
            if d > 5.0:
                ref = j
                span = abs(int(nums[order[0]]) - int(nums[k]))
                rate = min(max(d / max(span, 1), EXTRAPOLATE_RATE_M[0]), EXTRAPOLATE_RATE_M[1])
                break
        want = min(abs(number - int(nums[order[0]])) * rate, EXTRAPOLATE_CAP_M)
        walk = self._walk(street, last, ref, want)
        if walk is None:
            return None
        lat, lon = walk
        return Candidate(lat, lon, label, round(score * PRECISION_FACTOR["street"], 4), "street",
                         street, number, unit, lat, lon,
                         "left" if self.ties.side[last] > 0 else "right")

    def _walk(self, street: str, start: int, ref: int, want_m: float
              ) -> tuple[float, float] | None:
        """From point ``start``'s access point, ``want_m`` metres along the street's edges
        away from point ``ref`` (or, without one, towards the street's longer end)."""
        graph = self.graph
        ties = self.ties
        assert graph is not None and ties is not None
        kx, ky = self._kx, EARTH_M_PER_DEG
        edges = self._street_edges[street]
        nbrs: dict[int, set[int]] = defaultdict(set)
        for a in edges:
            t, h = int(graph.edge_tail[a]), int(graph.fwd_head[a])
            if t != h:
                nbrs[t].add(h)
                nbrs[h].add(t)
        xy = {v: (float(graph.node_lon[v]) * kx, float(graph.node_lat[v]) * ky) for v in nbrs}
        e = int(ties.edge[start])
        tail, head = int(graph.edge_tail[e]), int(graph.fwd_head[e])
        sx, sy = float(ties.access_lon[start]) * kx, float(ties.access_lat[start]) * ky

        def run(first: int) -> tuple[float, tuple[float, float]]:
            """Walk towards node ``first``: the distance covered and where it ends."""
            px, py = sx, sy
            prev_dir = (xy[first][0] - px, xy[first][1] - py)
            node, came, done = first, -1, 0.0
            seen = {tail, head}
            while True:
                nx_, ny_ = xy[node]
                step = math.hypot(nx_ - px, ny_ - py)
                if done + step >= want_m:
                    f = (want_m - done) / max(step, 1e-9)
                    return want_m, (px + f * (nx_ - px), py + f * (ny_ - py))
                done += step
                if step > 1e-6:
                    prev_dir = (nx_ - px, ny_ - py)
                px, py = nx_, ny_
                seen.add(node)
                ahead = [v for v in nbrs[node] if v != came and v not in seen]
                if not ahead:   # the piece ends: a short gap to a piece ahead (farther from
                    # where the walk began) is stepped over
                    here = math.hypot(px - sx, py - sy)
                    ahead = [v for v in xy if v not in seen
                             and math.hypot(xy[v][0] - px, xy[v][1] - py) <= EXTRAPOLATE_JUMP_M
                             and math.hypot(xy[v][0] - sx, xy[v][1] - sy) > here]
                    if not ahead:
                        return done, (px, py)
                at, heading = (px, py), prev_dir
                bends = [_straightness(xy[v], at, heading) for v in ahead]
                came, node = node, ahead[bends.index(max(bends))]

        if ref >= 0:
            rx, ry = float(self.lon[ref]) * kx, float(self.lat[ref]) * ky
            # the end of the edge whose direction from the start point leads away from ref
            away = (sx - rx, sy - ry)
            ahead_end = max((tail, head), key=lambda v: _straightness(xy[v], (sx, sy), away))
            _, (x, y) = run(ahead_end)
        else:
            _, (x, y) = max(run(tail), run(head), key=lambda r: r[0])
        return y / ky, x / kx

    def _nearest_number(self, st: _Street, street: str, number: int, *, label: str,
                        score: float, unit: str) -> Candidate:
        """Outside every known range, across a gap, or on a name two streets share: the
        point of the nearest known number, at street precision."""
        parity = number % 2
        best: tuple[int, int] | None = None
        for par in (parity, 1 - parity):
            nums, pts = st.numbers[par], st.points[par]
            if nums.size:
                k = int(np.argmin(np.abs(nums - number)))
                gap = abs(int(nums[k]) - number) + (0 if par == parity else 1)
                if best is None or gap < best[0]:
                    best = (gap, int(pts[k]))
        assert best is not None
        return self._cand(best[1], label=label, score=score, precision="street", street=street,
                          number=number, unit=unit)

    def _between(self, st: _Street, parity: int, number: int, *, max_span: int | None
                 ) -> tuple[int, int, float] | None:
        """The known points just below and above ``number`` on one side, and the fraction
        between them; None when there is no such pair, they are too far apart on the ground
        (a street broken and resumed elsewhere), or their numbers span more than ``max_span``."""
        nums, pts = st.numbers[parity], st.points[parity]
        k = int(np.searchsorted(nums, number))
        if not 0 < k < nums.size:
            return None
        lo, hi = int(nums[k - 1]), int(nums[k])
        if max_span is not None and hi - lo > max_span:
            return None
        i, j = int(pts[k - 1]), int(pts[k])
        if self._dist_m(i, j) > MAX_INTERPOLATION_GAP_M:
            return None
        return i, j, (number - lo) / max(hi - lo, 1)

    def _apart_m(self, a: tuple[int, int, float], b: tuple[int, int, float]) -> float:
        def at(p: tuple[int, int, float]) -> tuple[float, float]:
            i, j, t = p
            return (float(self.lat[i] + t * (self.lat[j] - self.lat[i])),
                    float(self.lon[i] + t * (self.lon[j] - self.lon[i])))
        (la, lo), (lb, lob) = at(a), at(b)
        return float(math.hypot((lo - lob) * self._kx, (la - lb) * EARTH_M_PER_DEG))

    def _with_access(self, c: Candidate, i: int, j: int, t: float) -> Candidate:
        ties = self.ties
        if ties is None or ties.edge[i] < 0 or ties.edge[j] < 0:
            return c
        alat = float(ties.access_lat[i] + t * (ties.access_lat[j] - ties.access_lat[i]))
        alon = float(ties.access_lon[i] + t * (ties.access_lon[j] - ties.access_lon[i]))
        return Candidate(c.lat, c.lon, c.label, c.score, c.precision, c.street, c.number, c.unit,
                         alat, alon, c.side)

    def _street_only(self, street: str, *, score: float, unit: str, number: int | None = None
                     ) -> Candidate | None:
        """A street without a usable number: its middle known point, else the graph's."""
        label = self._label(street) if number is None else f"{number} {self._label(street)}"
        st = self._streets.get(street)
        if st is not None:
            return self._cand(st.middle, label=label, score=score, precision="street",
                              street=street, number=number, unit=unit)
        if self.street_index is not None:
            hit = self.street_index.street_point(street)
            if hit is not None:
                return Candidate(hit[0], hit[1], label, round(score * PRECISION_FACTOR["street"], 4),
                                 "street", street, number, unit)
        return None

    def block(self, street: str, start: int, *, score: float = 1.0, unit: str = ""
              ) -> Candidate | None:
        """'100 BLOCK MARKET ST': the middle of the block's known points."""
        st = self._streets.get(street)
        label = f"{start} Block of {self._label(street)}"
        if st is None:
            return self._street_only(street, score=score, unit=unit, number=None)
        lo = start - start % 100
        idx = np.concatenate([pts[(nums >= lo) & (nums < lo + 100)]
                              for nums, pts in zip(st.numbers, st.points, strict=True)])
        if idx.size == 0:
            c = self.locate(street, lo + 50, score=score, unit=unit)
            if c is None or c.precision == "street":
                return c if c is None else Candidate(
                    c.lat, c.lon, label, c.score, c.precision, street, lo, unit, c.access_lat,
                    c.access_lon, c.side)
            return Candidate(c.lat, c.lon, label, round(score * PRECISION_FACTOR["block"], 4),
                             "block", street, lo, unit, c.access_lat, c.access_lon, None)
        lat, lon = self.lat[idx], self.lon[idx]
        # the middle between the block's lowest and highest known points
        ends = [int(np.argmin(self.number[idx])), int(np.argmax(self.number[idx]))]
        mlat, mlon = float(lat[ends].mean()), float(lon[ends].mean())
        return Candidate(mlat, mlon, label, round(score * PRECISION_FACTOR["block"], 4), "block",
                         street, lo, unit)

    # ---- queries ------------------------------------------------------------------------
    def geocode(self, text: str, *, limit: int = 5) -> list[Candidate]:
        q = parse_query(text)
        out: list[Candidate] = []
        if q.kind in ("address", "block"):
            assert q.number is not None
            for street, score in self.street_matches(q.street):
                c = (self.locate(street, q.number, score=score, unit=q.unit) if q.kind == "address"
                     else self.block(street, q.number, score=score, unit=q.unit))
                if c is not None:
                    out.append(c)
        elif q.kind == "intersection":
            out.extend(self.intersection(q.street, q.street2, unit=q.unit))
        if q.kind in ("name", "address"):
            out.extend(self.places(q.text if q.kind == "address" else q.street))
        if q.kind == "name":
            for street, score in self.street_matches(q.street):
                c = self._street_only(street, score=score, unit=q.unit)
                if c is not None:
                    out.append(c)
        out.sort(key=lambda c: (-c.score, PRECISIONS.index(c.precision), c.label))
        seen: set[str] = set()
        ranked = []
        for c in out:
            if c.label not in seen:
                seen.add(c.label)
                ranked.append(c)
        return ranked[:limit]

    def intersection(self, a: str, b: str, *, unit: str = "") -> list[Candidate]:
        if self.street_index is None:
            return []
        out = []
        for sa, score_a in self.street_matches(a):
            for sb, score_b in self.street_matches(b):
                hit = self.street_index.corner(sa, sb)
                if hit is not None:
                    out.append(Candidate(hit[0], hit[1], f"{self._label(sa)} & {self._label(sb)}",
                                         round(min(score_a, score_b), 4), "intersection",
                                         sa, None, unit))
        return out

    def places(self, text: str) -> list[Candidate]:
        key = normalize_text(text)
        if not self._place_keys or not key:
            return []
        k = self._place_keys.get(key)
        if k is not None:
            p = self._places[k]
            return [Candidate(p.lat, p.lon, p.name, 1.0, "place")]
        out = []
        for name, ratio, _ in process.extract(key, self._place_names, scorer=fuzz.ratio,
                                              score_cutoff=FUZZY_CUTOFF, limit=3):
            p = self._places[self._place_keys[name]]
            out.append(Candidate(p.lat, p.lon, p.name, round(ratio / 100 * FUZZY_FACTOR, 4),
                                 "place"))
        return out

    def suggest(self, text: str, *, limit: int = 10) -> list[Candidate]:
        """Completions of a prefix: numbered addresses, streets, corners and places."""
        q = parse_query(text)
        out: list[Candidate] = []
        if q.kind == "intersection":
            if self.street_index is not None:
                for sa, score in self.street_matches(q.street)[:2]:
                    prefix = normalize_street(q.street2)
                    for sb in self.street_index.cross_streets(sa):
                        if sb.startswith(prefix) or base_name(sb).startswith(prefix):
                            hit = self.street_index.corner(sa, sb)
                            if hit is not None:
                                out.append(Candidate(hit[0], hit[1],
                                                     f"{self._label(sa)} & {self._label(sb)}",
                                                     score, "intersection", sa))
                        if len(out) >= limit:
                            break
            return out[:limit]
        prefix = normalize_street(q.street)
        names = self._prefixed(self._names, prefix, limit * 4)
        if q.kind == "address" and q.number is not None:
            for s in names:
                c = self.locate(s, q.number, unit=q.unit)
                if c is not None and c.precision in ("address_point", "interpolated"):
                    out.append(c)
                if len(out) >= limit:
                    break
            return out
        key = normalize_text(q.street)
        for name in self._prefixed(self._place_names, key, limit):
            p = self._places[self._place_keys[name]]
            out.append(Candidate(p.lat, p.lon, p.name, 1.0, "place"))
        for s in names:
            if len(out) >= limit:
                break
            c = self._street_only(s, score=1.0, unit="")
            if c is not None:
                out.append(c)
        return out[:limit]

    @staticmethod
    def _prefixed(sorted_names: list[str], prefix: str, limit: int) -> list[str]:
        if not prefix:
            return []
        k = bisect.bisect_left(sorted_names, prefix)
        out: list[str] = []
        while k < len(sorted_names) and sorted_names[k].startswith(prefix) and len(out) < limit:
            out.append(sorted_names[k])
            k += 1
        return out

    def reverse(self, lat: float, lon: float) -> Reverse:
        """The nearest known address and, with a graph, the corners on either side of it."""
        address = street = None
        dist = None
        if self._tree is not None:
            d, i = self._tree.query([lon * self._kx, lat * EARTH_M_PER_DEG])
            i = int(i)
            street = self.point_street[i]
            address = f"{int(self.number[i])} {self._label(street)}"
            dist = round(float(d), 1)
        cross: tuple[str, ...] = ()
        if self.street_index is not None:
            if street is None:
                street = self.street_index.nearest_street(lat, lon)
            if street is not None:
                cross = tuple(self._label(s) for s in
                              self.street_index.corners_around(street, lat, lon))
        return Reverse(lat, lon, address, dist, self._label(street) if street else None, cross)


class GeocoderRef:
    """This worker's geocoder; replaced whole (never changed in place) when the places or
    address tables change, so a request always reads one consistent index."""

    def __init__(self, current: Geocoder, *, stamp: tuple[Any, ...] | None = None) -> None:
        self.current = current
        self.stamp = stamp    # the tables' state it was built from (incidents.geocoding.service)


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {"lat": c.lat, "lon": c.lon, "label": c.label, "score": c.score,
            "precision": c.precision, "unit": c.unit or None,
            "access_lat": c.access_lat, "access_lon": c.access_lon, "side": c.side}
