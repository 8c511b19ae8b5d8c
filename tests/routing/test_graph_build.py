"""Graph building: reduction, components, file format, parsers."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest

from routing.build import build_graph, travel_time_ds
from routing.errors import GraphFormatWarning, UnknownNodeError
from routing.graph import RoadGraph, is_graph_file
from routing.loaders import _oneway_code, load_dimacs, load_osm_xml
from routing.speeds import OSM_SPEEDS_KMH, parse_maxspeed_kmh, parse_speed_overrides
from tests.routing.conftest import make_graph


def test_parallel_arcs_keep_the_fastest_and_self_loops_go():
    g = make_graph([(0, 1, 50), (0, 1, 20), (0, 1, 30), (1, 0, 10), (1, 1, 5)], with_ch=False)
    assert g.n_edges == 2
    e = g.find_edge(g.node_id(0), g.node_id(1))
    assert g.edge_time_ds[e] == 20
    assert g.edge_twin[e] == g.find_edge(g.node_id(1), g.node_id(0))


def test_largest_strongly_connected_component_only():
    # 0<->1<->2 strongly connected; 3 only reachable (one-way in), 4-5 a separate pair
    arcs = [(0, 1, 1), (1, 0, 1), (1, 2, 1), (2, 1, 1), (2, 3, 1), (4, 5, 1), (5, 4, 1)]
    g = make_graph(arcs, largest_scc=True, with_ch=False)
    assert sorted(g.node_ext_id.tolist()) == [0, 1, 2]
    with pytest.raises(UnknownNodeError):
        g.node_ids([3])


def test_one_way_has_no_twin():
    g = make_graph([(0, 1, 5), (1, 2, 5), (2, 0, 5)], with_ch=False)
    assert (g.edge_twin == -1).all()


def test_csr_forward_and_backward_agree():
    rng = np.random.default_rng(3)
    arcs = [(int(a), int(b), int(w)) for a, b, w in rng.integers(0, 40, size=(300, 3)) if a != b]
    g = make_graph([(a, b, w + 1) for a, b, w in arcs], with_ch=False)
    fwd = {(int(g.edge_tail[e]), int(g.fwd_head[e])) for e in range(g.n_edges)}
    bwd = set()
    for v in range(g.n_nodes):
        for a in range(g.bwd_indptr[v], g.bwd_indptr[v + 1]):
            e = g.bwd_edge[a]
            assert g.fwd_head[e] == v and g.edge_tail[e] == g.bwd_tail[a]
            bwd.add((int(g.bwd_tail[a]), v))
    assert fwd == bwd


def test_save_load_roundtrip_with_hierarchy(tmp_path):
    g = make_graph([(0, 1, 5), (1, 2, 7), (2, 0, 3), (1, 0, 4)])
    path = g.save(tmp_path / "g.cadgraph")
    h = RoadGraph.load(path)
    for name in ("fwd_indptr", "fwd_head", "edge_time_ds", "edge_length_m", "node_ext_id",
                 "bwd_edge", "edge_twin"):
        np.testing.assert_array_equal(getattr(g, name), getattr(h, name))
    assert h.hierarchy is not None
    np.testing.assert_array_equal(g.hierarchy.up_f_head, h.hierarchy.up_f_head)
    assert h.class_names == g.class_names
    with pytest.raises(ValueError):  # arrays are frozen
        h.fwd_head[0] = 3


def test_weights_are_validated():
    with pytest.raises(ValueError):
        build_graph(tail_ext=[0], head_ext=[1], time_ds=[0], length_m=[1.0], road_class=[0],
                    way_id=[0], node_ext_id=[0, 1], node_lat=[0, 0], node_lon=[0, 0],
                    class_names=["x"])
    with pytest.raises(ValueError):
        build_graph(tail_ext=[0], head_ext=[1], time_ds=[3], length_m=[np.nan], road_class=[0],
                    way_id=[0], node_ext_id=[0, 1], node_lat=[0, 0], node_lon=[0, 0],
                    class_names=["x"])


def test_zero_length_edges_get_a_positive_time():
    assert travel_time_ds(np.array([0.0, 13.9]), np.array([50.0, 50.0])).tolist() == [1, 10]


@pytest.mark.parametrize("raw,kmh", [
    ("50", 50.0), ("30 mph", 30 * 1.609344), ("50;70", 50.0), ("nan", None), (float("nan"), None),
    (None, None), ("RU:urban", None), ("signals", None), ("none", None), (60.0, 60.0)])
def test_maxspeed_parsing(raw, kmh):
    got = parse_maxspeed_kmh(raw)
    assert got == (pytest.approx(kmh) if kmh is not None else None)


def test_oneway_codes():
    assert _oneway_code("yes", "residential", None) == 1
    assert _oneway_code("-1", "residential", None) == -1
    assert _oneway_code(None, "residential", "roundabout") == 1
    assert _oneway_code(None, "motorway", None) == 1
    assert _oneway_code("no", "motorway", None) == 0
    assert _oneway_code("nan", "residential", None) == 0


def test_speed_overrides():
    assert parse_speed_overrides(["residential=35", "service = 15"]) == {
        "residential": 35.0, "service": 15.0}
    with pytest.raises(ValueError):
        parse_speed_overrides(["residential"])
    assert OSM_SPEEDS_KMH["service"] > 0


OSM_XML = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6">
  <node id="1" lat="60.0000" lon="24.0000"/>
  <node id="2" lat="60.0000" lon="24.0018"/>
  <node id="3" lat="60.0009" lon="24.0018"/>
  <node id="4" lat="60.0009" lon="24.0000"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="yes"/><tag k="maxspeed" v="36"/></way>
  <way id="11"><nd ref="3"/><nd ref="4"/><nd ref="1"/><tag k="highway" v="service"/></way>
  <way id="12"><nd ref="1"/><nd ref="3"/><tag k="highway" v="footway"/></way>
  <way id="13"><nd ref="4"/><nd ref="999"/><tag k="highway" v="primary"/></way>
</osm>
"""


def test_osm_xml_one_ways_speeds_and_clipped_ways(tmp_path):
    p = tmp_path / "tiny.osm"
    p.write_text(OSM_XML)
    g = load_osm_xml(p)
    assert sorted(g.node_ext_id.tolist()) == [1, 2, 3, 4]
    n = {int(x): i for i, x in enumerate(g.node_ext_id)}
    e12 = g.find_edge(n[1], n[2])
    assert e12 >= 0 and g.find_edge(n[2], n[1]) == -1  # one-way respected
    assert g.find_edge(n[1], n[3]) == -1  # footway dropped
    # maxspeed 36 km/h = 10 m/s -> deciseconds = length_m
    assert g.edge_time_ds[e12] == round(g.edge_length_m[e12])
    e34 = g.find_edge(n[3], n[4])
    assert g.edge_twin[e34] >= 0
    speed_kmh = g.edge_length_m[e34] / (g.edge_time_ds[e34] / 10) * 3.6
    assert speed_kmh == pytest.approx(OSM_SPEEDS_KMH["service"], rel=0.01)


def test_dimacs_reader(tmp_path):
    gr = tmp_path / "t.gr.gz"
    co = tmp_path / "t.co"
    with gzip.open(gr, "wt") as fh:
        fh.write("c test\np sp 3 5\na 1 2 10\na 2 3 20\na 3 1 30\na 2 1 11\na 1 2 12\n")
    co.write_text("p aux sp co 3\nv 1 -74000000 40000000\nv 2 -74001000 40000000\n"
                  "v 3 -74001000 40001000\n")
    g = load_dimacs(gr, co)
    assert g.n_nodes == 3 and g.n_edges == 4
    assert g.edge_time_ds[g.find_edge(g.node_id(1), g.node_id(2))] == 10
    assert g.node_lon[g.node_id(2)] == pytest.approx(-74.001)


def test_real_extracts_build_and_load_fast(real_graph, tmp_path):
    g = real_graph("liechtenstein.osm.pbf")
    assert 13_000 < g.n_nodes < 16_000
    path = g.save(tmp_path / "li.cadgraph")
    t0 = time.perf_counter()
    h = RoadGraph.load(path)
    assert time.perf_counter() - t0 < 1.0
    assert h.n_edges == g.n_edges and h.hierarchy is not None


def test_tiger_sf_freeways_do_not_touch_streets_below(real_graph):
    g = real_graph("tl_2017_06075_roads.zip")
    assert 25_000 < g.n_nodes < 30_000
    assert (g.edge_twin >= 0).all()  # TIGER has no one-way data
    cls = {c: i for i, c in enumerate(g.class_names)}
    fw = g.edge_class == cls["S1100"]
    street = np.isin(g.edge_class, [cls["S1200"], cls["S1400"]])
    fw_nodes = set(g.edge_tail[fw].tolist()) | set(g.fwd_head[fw].tolist())
    st_nodes = set(g.edge_tail[street].tolist()) | set(g.fwd_head[street].tolist())
    # only a handful of freeway vertices also carry a street (where a ramp joins)
    assert len(fw_nodes & st_nodes) <= 10


def test_osm_bz2_west_oakland(real_graph):
    g = real_graph("West-Oakland.osm.bz2")
    assert g.n_nodes > 50 and g.hierarchy is not None


# ------------------------------------------------------------------------- street names
def _named(arcs: list[tuple[int, int, int, int]], names: list[str], *, largest_scc: bool = False
           ) -> RoadGraph:
    """Graph from (tail, head, time_ds, name index) arcs on a 100 m grid."""
    ids = np.array(sorted({a[0] for a in arcs} | {a[1] for a in arcs}), dtype=np.int64)
    t = np.array([a[2] for a in arcs], dtype=np.int64)
    return build_graph(
        tail_ext=np.array([a[0] for a in arcs]), head_ext=np.array([a[1] for a in arcs]),
        time_ds=t, length_m=t * 10.0, road_class=np.zeros(len(arcs)), way_id=np.arange(len(arcs)),
        node_ext_id=ids, node_lat=40.0 + (ids // 10) * 0.0009, node_lon=-74.0 + (ids % 10) * 0.0012,
        class_names=["test"], largest_scc=largest_scc,
        edge_name=np.array([a[3] for a in arcs]), street_names=names)


def _name_of(g: RoadGraph, tail_ext: int, head_ext: int) -> tuple[str, ...]:
    e = g.find_edge(g.node_id(tail_ext), g.node_id(head_ext))
    assert e >= 0
    return g.edge_street_names(e)


def test_names_follow_edges_through_renumbering_and_scc():
    names = ["Zeta St", "Alpha Ave", "Unused Rd", "Cut Off Ln"]
    # 5 -> 0 is one-way in, so node 5 (and "Cut Off Ln") leave with the SCC cut;
    # arcs are given in an order unlike the CSR order so that renumbering shows.
    arcs = [(2, 1, 4, 1), (1, 2, 4, 1), (0, 1, 3, 0), (1, 0, 3, 0), (5, 0, 2, 3), (2, 0, 9, -1),
            (0, 2, 9, -1)]
    g = _named(arcs, names, largest_scc=True)
    assert sorted(g.node_ext_id.tolist()) == [0, 1, 2]
    assert g.street_names == ("Zeta St", "Alpha Ave")  # unused names dropped, order kept
    assert _name_of(g, 0, 1) == _name_of(g, 1, 0) == ("Zeta St",)
    assert _name_of(g, 1, 2) == _name_of(g, 2, 1) == ("Alpha Ave",)
    assert _name_of(g, 0, 2) == ()
    assert g.edge_name.dtype == np.int32 and g.edge_name.size == g.n_edges
    for e in range(g.n_edges):  # every edge's name equals the name its input arc had
        t, h = int(g.node_ext_id[g.edge_tail[e]]), int(g.node_ext_id[g.fwd_head[e]])
        src = next(a for a in arcs if a[0] == t and a[1] == h)
        assert g.edge_street_names(e) == ((names[src[3]],) if src[3] >= 0 else ())


def test_parallel_arcs_merge_their_names():
    names = ["US Hwy 101", "Van Ness Ave", "Market St"]
    arcs = [(0, 1, 5, 0), (0, 1, 5, 1), (1, 0, 5, 1), (1, 0, 5, 0), (1, 0, 7, 1),
            (1, 2, 3, 2), (2, 1, 3, -1), (2, 1, 3, 2), (2, 0, 4, -1), (0, 2, 4, -1)]
    g = _named(arcs, names)
    assert g.n_edges == 6
    assert set(_name_of(g, 0, 1)) == set(_name_of(g, 1, 0)) == {"US Hwy 101", "Van Ness Ave"}
    assert _name_of(g, 1, 2) == ("Market St",)
    assert _name_of(g, 2, 1) == ("Market St",)  # an unnamed duplicate does not erase a name


def test_names_roundtrip_and_old_files_load_unnamed(tmp_path):
    g = _named([(0, 1, 5, 0), (1, 0, 5, 0), (1, 2, 5, 1), (2, 1, 5, 1), (2, 0, 5, -1),
                (0, 2, 5, -1)], ["Market St", "5th St"])
    h = RoadGraph.load(g.save(tmp_path / "g.cadgraph"))
    np.testing.assert_array_equal(h.edge_name, g.edge_name)
    assert h.street_names == ("Market St", "5th St")
    assert "street_names" not in h.meta
    with pytest.raises(ValueError):
        h.edge_name[0] = 1
    # A file written before names existed: no edge_name member, no street_names in meta.
    old = tmp_path / "old.cadgraph"
    with np.load(g.save(tmp_path / "g1.cadgraph", mmap_format=False)) as z:
        members = {k: z[k] for k in z.files if k not in ("edge_name",)}
    meta = json.loads(bytes(members["meta_json"]).decode())
    del meta["street_names"]
    members["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(old, "wb") as fh:
        np.savez(fh, **members)
    with pytest.warns(GraphFormatWarning, match="no checksum"):
        o = RoadGraph.load(old)
    assert o.street_names == () and o.edge_name.shape == (o.n_edges,) and (o.edge_name == -1).all()
    np.testing.assert_array_equal(o.fwd_head, g.fwd_head)


def test_graph_file_is_memory_mapped_and_shared(tmp_path):
    """Version-2 files are mapped read-only: arrays are views of the file's pages (shared
    between workers), nothing is copied, and the external-id index comes from the file."""
    import mmap

    g = make_graph([(0, 1, 5), (1, 2, 7), (2, 0, 4), (1, 0, 5)])
    path = g.save(tmp_path / "g.cadgraph")
    assert is_graph_file(path)
    h = RoadGraph.load(path)
    for a in (h.fwd_head, h.node_lat, h.hierarchy.up_f_head, h.hierarchy.up_b_mid,
              h._sorted_ext):
        base = a
        while getattr(base, "base", None) is not None:
            base = base.base
        if isinstance(base, memoryview):
            base = base.obj
        assert isinstance(base, mmap.mmap)
        assert not a.flags.writeable
    np.testing.assert_array_equal(h.hierarchy.up_f_mid, g.hierarchy.up_f_mid)
    assert h.node_id(2) == g.node_id(2)
    with pytest.warns(GraphFormatWarning, match="no checksum"):
        old = RoadGraph.load(g.save(tmp_path / "v1.cadgraph", mmap_format=False))
    np.testing.assert_array_equal(old.hierarchy.up_b_head, g.hierarchy.up_b_head)


def test_snap_index_travels_in_the_file(tmp_path):
    """A graph saved with its snapping grid maps it back, and snaps exactly as a grid
    built afresh."""
    from routing.snap import Snapper, build_snap_index

    g = make_graph([(0, 1, 5), (1, 2, 7), (2, 0, 4), (1, 0, 5), (2, 13, 3), (13, 2, 3)])
    h = RoadGraph.load(g.with_snap_index(build_snap_index(g)).save(tmp_path / "g.cadgraph"))
    assert h.snap_index is not None and not h.snap_index["x0"].flags.writeable
    rng = np.random.default_rng(3)
    lat = 40.0 + rng.random(50) * 0.003
    lon = -74.0 + rng.random(50) * 0.004
    a, b = Snapper(h).snap(lat, lon), Snapper(g).snap(lat, lon)
    np.testing.assert_array_equal(a.edge, b.edge)
    np.testing.assert_array_equal(a.frac, b.frac)
    np.testing.assert_array_equal(a.distance_m, b.distance_m)


def test_names_must_index_the_table():
    with pytest.raises(ValueError):
        _named([(0, 1, 5, 2), (1, 0, 5, 0)], ["A St", "B St"])


def test_osm_xml_names(tmp_path):
    p = tmp_path / "tiny.osm"
    p.write_text(OSM_XML.replace('<tag k="oneway" v="yes"/>',
                                 '<tag k="oneway" v="yes"/><tag k="name" v="Goss Street"/>'))
    g = load_osm_xml(p)
    n = {int(x): i for i, x in enumerate(g.node_ext_id)}
    assert g.street_names == ("Goss Street",)
    assert g.edge_street_names(g.find_edge(n[1], n[2])) == ("Goss Street",)
    assert g.edge_street_names(g.find_edge(n[2], n[3])) == ("Goss Street",)
    assert g.edge_street_names(g.find_edge(n[3], n[4])) == ()  # way 11 has no name tag


def test_dimacs_has_no_names(tmp_path):
    gr, co = tmp_path / "t.gr", tmp_path / "t.co"
    gr.write_text("p sp 2 2\na 1 2 10\na 2 1 10\n")
    co.write_text("v 1 -74000000 40000000\nv 2 -74001000 40000000\n")
    g = load_dimacs(gr, co)
    assert g.street_names == () and (g.edge_name == -1).all()


def test_real_extracts_carry_street_names(real_graph):
    sf = real_graph("tl_2017_06075_roads.zip")
    named = {n for entry in sf.street_names for n in entry.split(";")}
    assert {"Market St", "5th St", "Van Ness Ave", "US Hwy 101"} <= named
    assert (sf.edge_name >= 0).mean() > 0.9
    # Van Ness Ave is also US 101; the shared segments keep both names.
    assert any(set(e.split(";")) >= {"Van Ness Ave", "US Hwy 101"} for e in sf.street_names)
    li = real_graph("liechtenstein.osm.pbf")
    assert (li.edge_name >= 0).mean() > 0.3 and "Landstrasse" in li.street_names
    wo = real_graph("West-Oakland.osm.bz2")
    assert "Mandela Parkway" in wo.street_names or "9th Street" in wo.street_names
