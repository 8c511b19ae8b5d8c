"""The routing API refuses bad input with its own error types, and flags positions beyond
the snapping limit in every result that uses them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routing import (
    InvalidKError,
    InvalidLocationError,
    InvalidUnitTypesError,
    Location,
    RoutingError,
    RoutingService,
    UnknownNodeError,
)
from tests.routing.conftest import make_graph
from tests.routing.test_service import GRID, N, svc  # noqa: F401  # svc: the fixture


def test_unknown_node_ids_are_unknown_node_errors(svc):  # noqa: F811
    with pytest.raises(UnknownNodeError) as err:
        svc.nearest_units(node=12345, k=1)
    assert err.value.node_ids == [12345] and "12345" in str(err.value)
    with pytest.raises(UnknownNodeError):
        svc.upsert_unit("X", node=999, unit_type="engine")
    with pytest.raises(UnknownNodeError):
        svc.move_unit("E1", node=-4)
    with pytest.raises(UnknownNodeError):
        svc.eta_table(nodes=[N(0), 777])
    assert isinstance(err.value, RoutingError) and isinstance(err.value, ValueError)
    assert "X" not in svc.unit_ids()


@pytest.mark.parametrize("k", [0, -1, 2.5, "5", None, True, math.nan])
def test_bad_k_is_an_invalid_k_error(svc, k):  # noqa: F811
    with pytest.raises(InvalidKError, match="k must be a positive integer"):
        svc.nearest_units(node=N(4), k=k)


def test_k_may_be_a_numpy_integer(svc):  # noqa: F811
    assert len(svc.nearest_units(node=N(4), k=np.int64(2)).units) == 2


@pytest.mark.parametrize("types", ["engine", b"engine", ["engine", 7], 5])
def test_unit_types_must_be_a_collection_of_strings(svc, types):  # noqa: F811
    with pytest.raises(InvalidUnitTypesError):
        svc.nearest_units(node=N(4), k=3, unit_types=types)


def test_unknown_or_empty_unit_types_are_refused(svc):  # noqa: F811
    with pytest.raises(InvalidUnitTypesError, match=r"unknown unit types \['ladder'\]"):
        svc.nearest_units(node=N(4), k=3, unit_types={"engine", "ladder"})
    with pytest.raises(InvalidUnitTypesError, match="empty"):
        svc.nearest_units(node=N(4), k=3, unit_types=[])
    assert svc.known_unit_types() == {"engine", "medic"}
    # the known ones, as list, tuple, set or frozenset, match as before
    for types in (["engine"], ("engine",), {"engine"}, frozenset({"engine"})):
        assert [u.unit_id for u in svc.nearest_units(node=N(4), k=3, unit_types=types).units] == ["E1"]
    with pytest.raises(InvalidUnitTypesError):
        svc.upsert_unit("X", node=N(1), unit_type="")
    with pytest.raises(RoutingError, match="capabilities must be a collection"):
        svc.nearest_units(node=N(4), k=3, capabilities="als")
    with pytest.raises(RoutingError, match="capabilities must be a collection"):
        svc.upsert_unit("X", node=N(1), unit_type="engine", capabilities="als")


@pytest.mark.parametrize(("lat", "lon"), [(math.nan, -74.0), (40.0, math.nan), (math.inf, -74.0),
                                          (91.0, -74.0), (40.0, -181.0), ("40", -74.0)])
def test_bad_coordinates_are_invalid_location_errors(svc, lat, lon):  # noqa: F811
    with pytest.raises(InvalidLocationError):
        svc.nearest_units(lat=lat, lon=lon, k=1)
    with pytest.raises(InvalidLocationError):
        svc.upsert_unit("X", lat=lat, lon=lon, unit_type="engine")
    with pytest.raises(InvalidLocationError):
        svc.move_unit("E1", lat=lat, lon=lon)
    with pytest.raises(InvalidLocationError):
        svc.route("E1", lat=lat, lon=lon)
    assert "X" not in svc.unit_ids()
    # E1 did not move
    assert svc.nearest_units(node=N(0), k=1).units[0].eta_s == 0.0


def test_units_and_incidents_beyond_the_snap_limit_are_flagged_everywhere():
    """A unit 4,600 km from the road network is not answered with an ordinary-looking ETA:
    every result that uses its position says so."""
    s = RoutingService(make_graph(GRID), snap_limit_m=200.0)
    g = s.graph
    lat0, lon0 = float(g.node_lat[g.node_id(N(4))]), float(g.node_lon[g.node_id(N(4))])
    near = s.upsert_unit("E1", lat=lat0 + 0.0001, lon=lon0, unit_type="engine")
    far = s.upsert_unit("E9", lat=0.0, lon=0.0, unit_type="engine")
    assert not near.beyond_limit and far.beyond_limit and far.distance_m > 4_000_000
    res = s.nearest_units(node=N(8), k=2)
    flags = {u.unit_id: (u.beyond_limit, u.snap_distance_m) for u in res.units}
    assert flags["E1"][0] is False and flags["E1"][1] < 20
    assert flags["E9"][0] is True and flags["E9"][1] == pytest.approx(far.distance_m)
    assert res.incident.beyond_limit is False
    # the incident side: a point 1 km off the grid
    off = s.nearest_units(lat=lat0 + 0.009, lon=lon0, k=1)
    assert off.incident.beyond_limit and off.incident.distance_m > 700
    route = s.route("E9", node=N(8))
    assert route.unit.beyond_limit and not route.incident.beyond_limit
    assert not s.route("E1", node=N(8)).unit.beyond_limit
    table = s.eta_table(nodes=[N(8)], unit_ids=["E1", "E9"])
    assert table.units_beyond_limit.tolist() == [False, True]
    # moving back within reach clears the flag
    s.move_unit("E9", lat=lat0, lon=lon0 + 0.0001)
    assert not {u.unit_id: u for u in s.nearest_units(node=N(8), k=2).units}["E9"].beyond_limit
    with pytest.raises(RoutingError, match="snap_limit_m"):
        RoutingService(make_graph(GRID), snap_limit_m=math.nan)


def test_location_refuses_bool_and_float_ids():
    with pytest.raises(RoutingError):
        Location(node=True)
    with pytest.raises(RoutingError):
        Location(edge=1, frac=math.nan)
