"""The routing service face: one object per worker process.

It holds the current graph (with its contraction hierarchy), a snapper and a unit
index, maps the app's world (unit ids, unit-type and capability strings, lat/lon,
OSM/DIMACS node ids) to the kernels' internal ids, and answers queries:

* :meth:`RoutingService.nearest_units` - the K best available matching units, by ETA;
* :meth:`RoutingService.route` - ETA and lon/lat geometry from one unit to a point;
* :meth:`RoutingService.eta_table` - units x points ETA matrix for coverage analysis;
* unit updates (:meth:`upsert_unit`, :meth:`move_unit`, :meth:`set_unit_available`,
  :meth:`remove_unit`) are applied to the index at once (tens of microseconds);
* :meth:`swap_graph` installs a rebuilt graph; queries already running finish on the
  old one, the next query sees the new one with every unit re-placed.

Thread safety: every public method may be called from any thread. Queries take the
lock of the graph state they started on; updates and swaps are serialised.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routing.calibration import class_times
from routing.ch import build_hierarchy
from routing.errors import (
    InvalidKError,
    InvalidLocationError,
    InvalidUnitTypesError,
    RoutingError,
)
from routing.graph import RoadGraph
from routing.index import Seed, UnitIndex, incident_seeds, unit_sources
from routing.snap import Snapper, SnapResult, a_snap_move

DEFAULT_SNAP_LIMIT_M = 200.0
_MAX_BITS = 62  # int64 bitmasks, sign bit kept clear


@dataclass(frozen=True)
class Location:
    """Where something is. Exactly one of: ``lat``+``lon``; ``node`` (external id: OSM
    or DIMACS); ``edge``+``frac`` (internal edge id of the current graph, for tests)."""

    lat: float | None = None
    lon: float | None = None
    node: int | None = None
    edge: int | None = None
    frac: float = 0.0

    def __post_init__(self) -> None:
        kinds = sum([self.lat is not None or self.lon is not None, self.node is not None,
                     self.edge is not None])
        if kinds != 1 or ((self.lat is None) != (self.lon is None)):
            raise RoutingError("give exactly one of lat+lon, node, or edge(+frac)")
        if self.lat is not None and self.lon is not None:
            for name, v, lim in (("lat", self.lat, 90.0), ("lon", self.lon, 180.0)):
                if (type(v) is not float and (isinstance(v, bool) or not isinstance(v, numbers.Real))) \
                        or not math.isfinite(v) or abs(v) > lim:
                    raise InvalidLocationError(f"{name} must be a finite number within "
                                               f"[-{lim:g}, {lim:g}], got {v!r}")
        for name, i in (("node", self.node), ("edge", self.edge)):
            if i is not None and type(i) is not int \
                    and (isinstance(i, bool) or not isinstance(i, numbers.Integral)):
                raise RoutingError(f"{name} must be an integer id, got {i!r}")
        if self.edge is not None and not (math.isfinite(self.frac) and 0.0 <= self.frac <= 1.0):
            raise RoutingError("frac must be within [0, 1]")


@dataclass(frozen=True)
class Placement:
    """How a location landed on the graph. ``distance_m`` is from the given point to
    the road (0 for nodes and edge positions); ``beyond_limit`` flags points farther
    from any drivable road than the service's snap limit."""

    node: int  # internal node id when placed at a node, else -1
    edge: int  # internal edge id (tail->head) when on an edge, else -1
    frac: float
    twin: int
    distance_m: float
    beyond_limit: bool


@dataclass(frozen=True)
class UnitEta:
    """One unit's answer. ``beyond_limit``: the unit's own position is farther than the
    snap limit from any road (``snap_distance_m`` away), so its ETA starts from a road it
    may not be near; callers must show that, not an ordinary-looking ETA."""

    unit_id: Hashable
    eta_s: float
    distance_m: float
    beyond_limit: bool = False
    snap_distance_m: float = 0.0


@dataclass(frozen=True)
class NearestUnits:
    units: list[UnitEta]
    incident: Placement


@dataclass(frozen=True, eq=False)
class Route:
    """A route for the console. ``lonlat``: the polyline, a read-only (points, 2) float
    array of lon, lat; serializers turn it into JSON lists in one numpy call, which costs
    less than building the Python pairs of ``coords_lonlat`` (hundreds of points on a
    city graph). Compared by identity (a field is an array)."""

    unit_id: Hashable
    eta_s: float
    distance_m: float
    lonlat: np.ndarray
    incident: Placement
    unit: Placement  # where the unit stands; its beyond_limit flags an off-road position

    @property
    def coords_lonlat(self) -> list[tuple[float, float]]:
        """The polyline as (lon, lat) pairs."""
        xy = self.lonlat
        return list(zip(xy[:, 0].tolist(), xy[:, 1].tolist()))


@dataclass(frozen=True)
class RouteClassTimes:
    unit_id: Hashable
    eta_s: float
    class_time_s: dict[str, float]  # seconds on each road class driven; sums to eta_s


@dataclass(frozen=True)
class EtaTable:
    unit_ids: list[Hashable]
    eta_s: np.ndarray  # [unit, point], inf when unreachable
    distance_m: np.ndarray
    points: list[Placement]
    units_beyond_limit: np.ndarray  # bool per unit: its position is beyond the snap limit


@dataclass
class _Unit:
    unit_id: Hashable
    slot: int
    location: Location
    available: bool
    unit_type: str
    capabilities: frozenset[str]
    placement: Placement | None = None


class _State:
    """Everything tied to one graph: replaced as a whole on swap."""

    def __init__(self, graph: RoadGraph, snap_limit_m: float, capacity: int):
        self.graph = graph
        self.snapper = Snapper(graph, limit_m=snap_limit_m)
        self.index = UnitIndex(graph, capacity=capacity)
        self.lock = threading.Lock()
        self.slot_ids: dict[int, Hashable] = {}  # index slot -> unit id, kept with the index

    def place(self, loc: Location) -> Placement:
        g = self.graph
        if loc.node is not None:
            n = g.node_id(int(loc.node))
            return Placement(n, -1, 0.0, -1, 0.0, False)
        if loc.edge is not None:
            e = int(loc.edge)
            if not 0 <= e < g.n_edges:
                raise RoutingError(f"edge {e} not in graph")
            return Placement(-1, e, float(loc.frac), int(g.edge_twin[e]), 0.0, False)
        assert loc.lat is not None and loc.lon is not None
        try:
            e, f, tw, d, beyond = self.snapper.snap_one(float(loc.lat), float(loc.lon))
        except ValueError as exc:
            raise RoutingError(str(exc)) from exc
        return Placement(-1, e, f, tw, d, beyond)

    def unit_seeds(self, p: Placement) -> list[Seed]:
        if p.edge < 0:
            return [Seed(p.node, 0.0, 0.0)]
        return unit_sources(self.graph, p.edge, p.frac)

    def incident_seeds(self, p: Placement) -> list[Seed]:
        if p.edge < 0:
            return [Seed(p.node, 0.0, 0.0)]
        return incident_seeds(self.graph, p.edge, p.frac)

    def point_lonlat(self, p: Placement) -> tuple[float, float]:
        g = self.graph
        if p.edge < 0:
            return (float(g.node_lon[p.node]), float(g.node_lat[p.node]))
        a, b = int(g.edge_tail[p.edge]), int(g.fwd_head[p.edge])
        f = p.frac
        return (float(g.node_lon[a] + f * (g.node_lon[b] - g.node_lon[a])),
                float(g.node_lat[a] + f * (g.node_lat[b] - g.node_lat[a])))


class RoutingService:
    """Per-worker routing: load a graph, keep units placed, answer ETA queries."""

    def __init__(self, graph: RoadGraph, *, snap_limit_m: float = DEFAULT_SNAP_LIMIT_M,
                 build_hierarchy_if_missing: bool = True):
        if not (math.isfinite(snap_limit_m) and snap_limit_m > 0):
            raise RoutingError(f"snap_limit_m must be a positive number, got {snap_limit_m!r}")
        self.snap_limit_m = float(snap_limit_m)
        self._build_ch = build_hierarchy_if_missing
        self._mutate = threading.RLock()
        self._units: dict[Hashable, _Unit] = {}
        self._type_bits: dict[str, int] = {}
        self._cap_bits: dict[str, int] = {}
        self._state = self._new_state(graph)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> RoutingService:
        return cls(RoadGraph.load(path), **kwargs)

    def _new_state(self, graph: RoadGraph) -> _State:
        if graph.hierarchy is None and self._build_ch:
            graph = graph.with_hierarchy(build_hierarchy(graph))
        return _State(graph, self.snap_limit_m, max(64, 2 * len(getattr(self, "_units", ()))))

    @property
    def graph(self) -> RoadGraph:
        return self._state.graph

    # ---- strings -> bits ---------------------------------------------------------------
    @staticmethod
    def _bit(table: dict[str, int], name: str, what: str) -> int:
        b = table.get(name)
        if b is None:
            if len(table) >= _MAX_BITS:
                raise RoutingError(f"more than {_MAX_BITS} distinct {what}s")
            b = table[name] = len(table)
        return 1 << b

    def _caps_mask(self, caps: Iterable[str], create: bool) -> int | None:
        mask = 0
        for c in caps:
            if c in self._cap_bits:
                mask |= 1 << self._cap_bits[c]
            elif create:
                mask |= self._bit(self._cap_bits, c, "capabilit")
            else:
                return None  # nobody has it
        return mask

    def _refresh_ties(self, st: _State) -> None:
        # ties are broken by unit id; ids of mixed types order by type name first
        order = sorted(self._units.values(), key=lambda u: (type(u.unit_id).__name__, u.unit_id))
        for i, u in enumerate(order):
            st.index.set_tie(u.slot, i)

    # ---- units --------------------------------------------------------------------------
    def upsert_unit(self, unit_id: Hashable, *, location: Location | None = None,
                    lat: float | None = None, lon: float | None = None, node: int | None = None,
                    available: bool = True, unit_type: str = "unit",
                    capabilities: Iterable[str] = ()) -> Placement:
        """Create or replace a unit. Returns where it was placed on the graph."""
        if not isinstance(unit_type, str) or not unit_type:
            raise InvalidUnitTypesError(f"unit_type must be a non-empty string, got {unit_type!r}")
        capabilities = _strings(capabilities, "capabilities", RoutingError)
        loc = location or Location(lat=lat, lon=lon, node=node)
        with self._mutate:
            st = self._state
            placement = st.place(loc)
            caps = frozenset(capabilities)
            type_bits = self._bit(self._type_bits, unit_type, "unit type")
            cap_bits = self._caps_mask(caps, create=True)
            assert cap_bits is not None
            u = self._units.get(unit_id)
            new = u is None
            with st.lock:
                if u is None:
                    u = _Unit(unit_id, st.index.new_slot(), loc, available, unit_type, caps)
                    self._units[unit_id] = u
                    st.slot_ids[u.slot] = unit_id
                u.location, u.available, u.unit_type, u.capabilities = loc, available, unit_type, caps
                u.placement = placement
                st.index.set_unit(u.slot, st.unit_seeds(placement), available=available,
                                  type_bits=type_bits, cap_bits=cap_bits,
                                  tie_key=int(st.index.u_tie[u.slot]))
                if new:
                    self._refresh_ties(st)
            return placement

    def move_unit(self, unit_id: Hashable, *, location: Location | None = None,
                  lat: float | None = None, lon: float | None = None,
                  node: int | None = None) -> Placement:
        """New position (AVL fix). Reflected in the very next query."""
        if (type(lat) is float and type(lon) is float and location is None and node is None
                and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # (NaN fails these)
            return self._move_lat_lon(unit_id, lat, lon)
        loc = location or Location(lat=lat, lon=lon, node=node)
        with self._mutate:
            u = self._get(unit_id)
            st = self._state
            placement = st.place(loc)
            with st.lock:
                st.index.move(u.slot, node=placement.node, edge=placement.edge,
                              frac=placement.frac)
                u.location, u.placement = loc, placement
            return placement

    def _move_lat_lon(self, unit_id: Hashable, lat: float, lon: float) -> Placement:
        """move_unit's AVL path: a fix as two plain floats, already checked (the Location
        and Placement objects are made without their checks: a fix is 10-20 µs in all)."""
        with self._mutate:
            u = self._units.get(unit_id)
            if u is None:
                raise RoutingError(f"unknown unit {unit_id!r}")
            st = self._state
            sn = st.snapper
            ia = st.index.ctx_address
            if ia and sn.ctx_address:  # snap and move in one kernel call
                with st.lock:
                    e, f, tw, d, cnt = a_snap_move(sn.ctx_address, ia, u.slot, lat, lon)
                    if cnt < 0:  # the unit's rows must widen first
                        st.index.move(u.slot, edge=e, frac=f)
                    u.location = _latlon_location(lat, lon)
                    u.placement = p = _placement(e, f, tw, d, d > sn.limit_m)
                return p
            e, f, tw, d = sn.snap_one_checked(lat, lon)
            with st.lock:
                st.index.move_edge(u.slot, e, f)
                u.location = _latlon_location(lat, lon)
                u.placement = p = _placement(e, f, tw, d, d > sn.limit_m)
            return p

    def set_unit_available(self, unit_id: Hashable, available: bool) -> None:
        with self._mutate:
            u = self._get(unit_id)
            st = self._state
            with st.lock:
                st.index.set_available(u.slot, available)
                u.available = available

    def remove_unit(self, unit_id: Hashable) -> None:
        with self._mutate:
            u = self._get(unit_id)
            st = self._state
            with st.lock:
                st.index.remove(u.slot)
                st.slot_ids.pop(u.slot, None)
                del self._units[unit_id]

    def unit_ids(self) -> list[Hashable]:
        return list(self._units)

    def _get(self, unit_id: Hashable) -> _Unit:
        try:
            return self._units[unit_id]
        except KeyError:
            raise RoutingError(f"unknown unit {unit_id!r}") from None

    # ---- queries ------------------------------------------------------------------------
    def locate(self, *, location: Location | None = None, lat: float | None = None,
               lon: float | None = None, node: int | None = None) -> Placement:
        return self._state.place(location or Location(lat=lat, lon=lon, node=node))

    def snap(self, lat: Sequence[float] | np.ndarray, lon: Sequence[float] | np.ndarray) -> SnapResult:
        """Vectorised snapping of many points to the current graph."""
        return self._state.snapper.snap(np.asarray(lat, float), np.asarray(lon, float))

    def nearest_units(self, *, location: Location | None = None, lat: float | None = None,
                      lon: float | None = None, node: int | None = None, k: int = 5,
                      unit_types: Iterable[str] | None = None,
                      capabilities: Iterable[str] = ()) -> NearestUnits:
        """The ``k`` available units with ``unit_type`` in ``unit_types`` (any type when
        None) holding every capability in ``capabilities``, fastest first; ties by unit id."""
        # exact-type fast paths first: an ABC isinstance costs about a microsecond
        if type(k) is not int and (isinstance(k, bool) or not isinstance(k, numbers.Integral)) \
                or k < 1:
            raise InvalidKError(f"k must be a positive integer, got {k!r}")
        type_mask = self._types_mask(unit_types)
        if capabilities != ():
            capabilities = _strings(capabilities, "capabilities", RoutingError)
        loc = location or Location(lat=lat, lon=lon, node=node)
        st = self._state
        placement = st.place(loc)
        caps_req = self._caps_mask(capabilities, create=False)
        if caps_req is None:
            return NearestUnits([], placement)
        seeds = st.incident_seeds(placement)
        with st.lock:
            slots, eta_ds, length_m = st.index.nearest(seeds, k=int(k), type_mask=type_mask,
                                                       caps_req=caps_req)
            ids = [st.slot_ids[s] for s in slots.tolist()]
            out = []
            for uid, t, ln in zip(ids, eta_ds.tolist(), length_m.tolist()):
                p = self._units[uid].placement
                assert p is not None
                out.append(UnitEta(uid, t / 10.0, ln, p.beyond_limit, p.distance_m))
        return NearestUnits(out, placement)

    def known_unit_types(self) -> frozenset[str]:
        """Unit types this service has seen (placed units', current or past)."""
        return frozenset(self._type_bits)

    def _types_mask(self, unit_types: Iterable[str] | None) -> int:
        if unit_types is None:
            return -1
        types = _strings(unit_types, "unit_types", InvalidUnitTypesError)
        unknown = sorted(t for t in types if t not in self._type_bits)
        if unknown:
            raise InvalidUnitTypesError(f"unknown unit types {unknown} (known: "
                                        f"{sorted(self._type_bits)})")
        if not types:
            raise InvalidUnitTypesError("unit_types is empty (None means any type)")
        mask = 0
        for t in types:
            mask |= 1 << self._type_bits[t]
        return mask

    def route(self, unit_id: Hashable, *, location: Location | None = None,
              lat: float | None = None, lon: float | None = None,
              node: int | None = None) -> Route:
        """ETA, route distance and lon/lat polyline from a unit to a point (for the MDT)."""
        loc = location or Location(lat=lat, lon=lon, node=node)
        st = self._state
        placement = st.place(loc)
        seeds = st.incident_seeds(placement)
        x1, y1 = st.point_lonlat(placement)
        with st.lock:
            u = self._get(unit_id)
            unit_placement = u.placement
            assert unit_placement is not None
            x0, y0 = st.point_lonlat(unit_placement)
            # the polyline (start, the source node, every driven edge's head, end; repeated
            # points dropped) comes from the route kernel itself; copied before the lock
            # goes, as the next route reuses its workspace
            eta_ds, length_m, xy = st.index.route_line(u.slot, seeds, x0, y0, x1, y1)
            lonlat = xy.copy()
        if not math.isfinite(eta_ds):
            raise RoutingError(f"no route from {unit_id!r}")
        lonlat.flags.writeable = False
        return Route(unit_id, float(eta_ds) / 10.0, float(length_m), lonlat, placement,
                     unit_placement)

    def route_class_times(self, unit_id: Hashable, *, location: Location | None = None,
                          lat: float | None = None, lon: float | None = None,
                          node: int | None = None) -> RouteClassTimes:
        """The fastest route's ETA from a unit to a point, split by road class (for
        calibration per road class; routing.calibration.class_times)."""
        loc = location or Location(lat=lat, lon=lon, node=node)
        st = self._state
        seeds = st.incident_seeds(st.place(loc))
        with st.lock:
            u = self._get(unit_id)
            eta_ds, _length_m, edges, src, reached = st.index.path(u.slot, seeds)
            on_own_edge = u.placement.edge if u.placement is not None else -1
        if not np.isfinite(eta_ds):
            raise RoutingError(f"no route from {unit_id!r}")
        if src is None:  # the point lies ahead on the unit's own edge
            partial = [(on_own_edge, float(eta_ds))]
        else:
            partial = [(src.edge, src.t_ds)] + ([(reached.edge, reached.t_ds)] if reached else [])
        eta_s = float(eta_ds) / 10.0
        return RouteClassTimes(unit_id, eta_s, class_times(st.graph, edges, partial=partial,
                                                           total_s=eta_s))

    def eta_table(self, *, lat: Sequence[float] | None = None, lon: Sequence[float] | None = None,
                  nodes: Sequence[int] | None = None,
                  unit_ids: Sequence[Hashable] | None = None) -> EtaTable:
        """Travel times from units (all, or ``unit_ids``; availability ignored) to points."""
        st = self._state
        if nodes is not None:
            places = [st.place(Location(node=int(n))) for n in nodes]
        else:
            if lat is None or lon is None:
                raise RoutingError("give lat+lon arrays or nodes")
            s = st.snapper.snap(np.asarray(lat, float), np.asarray(lon, float))
            places = [Placement(-1, int(s.edge[i]), float(s.frac[i]), int(s.twin[i]),
                                float(s.distance_m[i]), bool(s.beyond_limit[i])) for i in range(len(s))]
        seeds = [st.incident_seeds(p) for p in places]
        with st.lock:
            ids = list(self._units) if unit_ids is None else list(unit_ids)
            units = [self._get(i) for i in ids]
            slots = np.array([u.slot for u in units], dtype=np.int64)
            beyond = np.array([u.placement is not None and u.placement.beyond_limit for u in units],
                              dtype=bool)
            t, ln = st.index.table(seeds)
        return EtaTable(ids, t[slots] / 10.0, ln[slots], places, beyond)

    # ---- graph swap -------------------------------------------------------------------------
    def swap_graph(self, graph: RoadGraph) -> None:
        """Install a rebuilt graph. Units are re-placed from their last given location
        (edge positions are carried over as lat/lon). Queries in flight finish on the old
        graph; unit updates wait until the swap is done."""
        with self._mutate:
            old = self._state
            new = self._new_state(graph)
            for u in self._units.values():
                loc = u.location
                if loc.edge is not None:
                    assert u.placement is not None
                    lo, la = old.point_lonlat(u.placement)
                    loc = Location(lat=la, lon=lo)
                placement = new.place(loc)
                u.slot = new.index.new_slot()
                new.slot_ids[u.slot] = u.unit_id
                u.location, u.placement = loc, placement
                new.index.set_unit(
                    u.slot, new.unit_seeds(placement), available=u.available,
                    type_bits=1 << self._type_bits[u.unit_type],
                    cap_bits=self._caps_mask(u.capabilities, create=True) or 0, tie_key=0)
            self._refresh_ties(new)
            self._state = new  # one reference assignment: atomic for readers


def _latlon_location(lat: float, lon: float) -> Location:
    """Location(lat=lat, lon=lon) for coordinates already checked (no __post_init__)."""
    loc: Location = object.__new__(Location)
    loc.__dict__.update(lat=lat, lon=lon, node=None, edge=None, frac=0.0)
    return loc


def _placement(edge: int, frac: float, twin: int, distance_m: float, beyond: bool) -> Placement:
    """Placement(-1, edge, frac, twin, distance_m, beyond) without the dataclass's frozen
    __init__ (one object.__setattr__ per field)."""
    p: Placement = object.__new__(Placement)
    p.__dict__.update(node=-1, edge=edge, frac=frac, twin=twin, distance_m=distance_m,
                      beyond_limit=beyond)
    return p


def _strings(values: Iterable[str], what: str, error: type[RoutingError]) -> frozenset[str]:
    """A set of strings from a collection of them; a bare string (which would iterate as
    its letters) or a non-string member is refused."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise error(f"{what} must be a collection of strings (e.g. {{'engine'}}), got {values!r}")
    out = frozenset(values)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise error(f"{what} must hold strings, got {bad[0]!r}")
    return out
