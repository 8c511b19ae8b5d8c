"""Street-name geocoding on the road graph's names: a hand-drawn graph, the San Francisco
TIGER graph, and incident intake over HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from incidents.geocode import StreetIndex, normalize_street
from incidents.geocoding.index import AddressPoints, Geocoder
from routing.build import build_graph, haversine_m
from routing.graph import RoadGraph
from tests.dispatch_fixtures import Api

# Market St at 5th St, downtown San Francisco (surveyed from the map, not from the graph).
MARKET_5TH = (37.7837, -122.4075)


# ------------------------------------------------------------------------ hand-drawn graph
def _grid_graph() -> RoadGraph:
    """A 3x3 grid, node id = 10*row + col, ~100 m apart; rows and columns are streets.

    row 0: "Main St"    (0 - 1 - 2)      col 0: "1st Ave" (0 - 10 - 20)
    row 1: "1st St"     (10 - 11 - 12)   col 2: "Oak Ave"  (2 - 12 - 22)
    row 2: unnamed      (20 - 21 - 22)   col 1: "Elm St;State Rte 9" (1 - 11 - 21)
    """
    names = ["Main St", "1st St", "1st Ave", "Oak Ave", "Elm St;State Rte 9", "Nowhere Rd"]
    segs = [(0, 1, 0), (1, 2, 0), (10, 11, 1), (11, 12, 1), (20, 21, -1), (21, 22, -1),
            (0, 10, 2), (10, 20, 2), (2, 12, 3), (12, 22, 3), (1, 11, 4), (11, 21, 4)]
    tails = [a for a, b, _ in segs] + [b for a, b, _ in segs]
    heads = [b for a, b, _ in segs] + [a for a, b, _ in segs]
    name = [n for _, _, n in segs] * 2
    ids = np.array(sorted(set(tails)), dtype=np.int64)
    return build_graph(
        tail_ext=np.array(tails), head_ext=np.array(heads), time_ds=np.full(len(tails), 100),
        length_m=np.full(len(tails), 100.0), road_class=np.zeros(len(tails)),
        way_id=np.arange(len(tails)), node_ext_id=ids, node_lat=40.0 + (ids // 10) * 0.0009,
        node_lon=-74.0 + (ids % 10) * 0.0012, class_names=["test"],
        edge_name=np.array(name), street_names=names)


def _at(g: RoadGraph, hit, ext_id: int) -> bool:
    n = g.node_id(ext_id)
    return hit is not None and (hit.lat, hit.lon) == (g.node_lat[n], g.node_lon[n])


def test_normalize_street_spellings():
    assert normalize_street("5th Street") == normalize_street("FIFTH ST") == "5TH ST"
    assert normalize_street("Van Ness Avenue") == "VAN NESS AVE"


def test_intersections_on_a_hand_drawn_grid():
    g = _grid_graph()
    idx = StreetIndex.from_graph(g)
    assert idx is not None
    assert _at(g, idx.intersection("MAIN ST & OAK AVE"), 2)
    assert _at(g, idx.intersection("oak avenue / main street"), 2)
    assert _at(g, idx.intersection("1st Street and Elm"), 11)
    # a segment carrying two names belongs to both streets
    assert _at(g, idx.intersection("State Rte 9 & Main St"), 1)
    assert _at(g, idx.intersection("Elm St @ Main"), 1)
    # "1st" alone is 1st St or 1st Ave: the other street decides
    assert _at(g, idx.intersection("1st & Oak Ave"), 12)  # only 1st St meets Oak Ave
    assert _at(g, idx.intersection("Main St & 1st"), 0)  # only 1st Ave meets Main St
    assert _at(g, idx.intersection("1st & Elm St"), 11)
    assert _at(g, idx.intersection("1st St & 1st Ave"), 10)
    assert idx.intersection("Main St & 1st St") is None  # parallel streets never meet
    assert idx.intersection("Main St & Main St") is None
    assert idx.intersection("Main St & Nowhere Rd") is None  # name no longer on any edge
    assert idx.intersection("Main St & Pine St") is None
    assert idx.intersection("Main St") is None
    # without address points a numbered address is only located to its street, and says so
    geo = Geocoder(AddressPoints.empty(), graph=g, streets=idx)
    [hit] = geo.geocode("200 Main Street")
    assert (hit.label, hit.precision) == ("200 Main St", "street")
    main_nodes = {g.node_id(x) for x in (0, 1, 2)}
    assert any((hit.lat, hit.lon) == (g.node_lat[n], g.node_lon[n]) for n in main_nodes)
    assert geo.geocode("12 Pine St") == []


def test_graph_without_names_has_no_street_index():
    g = _grid_graph()
    bare = build_graph(tail_ext=g.node_ext_id[g.edge_tail], head_ext=g.node_ext_id[g.fwd_head],
                       time_ds=g.edge_time_ds, length_m=g.edge_length_m, road_class=g.edge_class,
                       way_id=g.edge_way_id, node_ext_id=g.node_ext_id, node_lat=g.node_lat,
                       node_lon=g.node_lon, class_names=g.class_names)
    assert StreetIndex.from_graph(bare) is None


# ---------------------------------------------------------------------- San Francisco graph
@pytest.fixture(scope="module")
def sf_index(sf_graph_path: Path) -> StreetIndex:
    idx = StreetIndex.from_graph(RoadGraph.load(sf_graph_path))
    assert idx is not None, "the SF graph built by `cad graph build` has no street names"
    return idx


@pytest.mark.parametrize("text", ["MARKET ST & 5TH ST", "5TH ST & MARKET ST",
                                  "5th Street / Market Street", "Market and 5th",
                                  "market st at fifth st"])
def test_sf_market_and_5th(sf_index: StreetIndex, text: str):
    hit = sf_index.intersection(text)
    assert hit is not None, text
    assert haversine_m(hit.lat, hit.lon, *MARKET_5TH) < 150, hit
    assert set(hit.label.split(" & ")) == {"Market St", "5th St"}


def test_sf_other_corners_and_misses(sf_index: StreetIndex):
    # Van Ness Ave shares its segments with US 101 in TIGER; the corner must still be found.
    hit = sf_index.intersection("VAN NESS AVE & MARKET ST")
    assert hit is not None and haversine_m(hit.lat, hit.lon, 37.7752, -122.4193) < 150
    assert sf_index.intersection("MARKET ST & 5TH AVE") is None  # 5th Ave is in the Richmond
    assert sf_index.intersection("MARKET ST & NOSUCH ST") is None
    assert sf_index.intersection("NOSUCH ST & 5TH ST") is None


def test_sf_address_without_address_points_is_street_precision(sf_index: StreetIndex):
    geo = Geocoder(AddressPoints.empty(), graph=sf_index.graph, streets=sf_index)
    hit = geo.geocode("1 MARKET ST")[0]
    assert "Market St" in hit.label and hit.precision == "street"
    g = sf_index.graph
    market = [i for i, n in enumerate(g.street_names) if "Market St" in n.split(";")]
    on_market = np.isin(g.edge_name, market)
    ends = np.union1d(g.edge_tail[on_market], g.fwd_head[on_market])
    d = min(haversine_m(float(g.node_lat[e]), float(g.node_lon[e]), hit.lat, hit.lon) for e in ends)
    assert d < 1.0
    assert geo.geocode("1 NOSUCH ST") == []


# ------------------------------------------------------------------------------------ HTTP
async def test_incident_at_an_intersection_over_http(sf_api: Api):
    disp = await sf_api.as_("dispatcher")
    r = await disp.post("/api/v1/incidents", json={
        "agency": "SFFD", "incident_type": "MED", "location": {"intersection": "MARKET ST & 5TH ST"}})
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["location_source"] == "intersection"
    assert haversine_m(inc["lat"], inc["lon"], *MARKET_5TH) < 150
    assert "Market St" in inc["location_text"] and "5th St" in inc["location_text"]

    r = await disp.post("/api/v1/incidents", json={
        "agency": "SFFD", "incident_type": "MED", "location": {"intersection": "MARKET ST & NOSUCH ST"}})
    assert r.status_code == 422, r.text
    assert "body.location.intersection" in [e["field"] for e in r.json()["errors"]], r.json()
