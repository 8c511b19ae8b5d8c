"""The address geocoder on hand-drawn data: normalisation, parsing, precision (point,
interpolated on the same side, block, street), scores for near-misses, places, suggestions,
reverse geocoding, ties to street edges and sides; the address-file reader and the import."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cad import db
from incidents.geocoding import repository as geo_repo
from incidents.geocoding.importer import FormatError, parse_file
from incidents.geocoding.index import AddressPoints, Geocoder, Place
from incidents.geocoding.normalize import normalize_street, parse_query
from incidents.geocoding.service import (
    import_addresses,
    load_geocoder,
    refresh_geocoder,
    tie_report,
)
from routing.build import build_graph, haversine_m
from routing.graph import RoadGraph

LAT0, LON0 = 40.0, -74.0
NORTH, SOUTH = LAT0 + 0.0002, LAT0 - 0.0002   # ~22 m either side of the centre line
PER_NUMBER = 0.00001                           # ~0.85 m of street per house number


def _main_st() -> list[tuple[str, int, float, float]]:
    """MAIN ST runs east from LON0: even numbers on the north side, odd on the south, every
    tenth number known (100, 110 ... and 101, 111 ...)."""
    pts = []
    for n in range(100, 200, 10):
        pts.append(("MAIN ST", n, NORTH, LON0 + (n - 100) * PER_NUMBER))
        pts.append(("MAIN ST", n + 1, SOUTH, LON0 + (n + 1 - 100) * PER_NUMBER))
    return pts


def _geocoder(extra: Sequence[tuple[str, int, float, float]] = (), *,
              places: Sequence[Place] = (),
              graph: RoadGraph | None = None) -> Geocoder:
    rows = _main_st() + list(extra)
    return Geocoder(AddressPoints([normalize_street(r[0]) for r in rows], [r[0] for r in rows],
                                  np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                                  np.array([r[3] for r in rows])), places=places, graph=graph)


@pytest.mark.parametrize(("typed", "norm"), [
    ("01ST ST", "1ST ST"), ("First Street", "1ST ST"), ("1st st.", "1ST ST"),
    ("Twenty-Sixth Avenue", "26TH AVE"), ("26th Ave", "26TH AVE"), ("THIRTY SECOND AV", "32ND AVE"),
    ("O'Farrell Street", "OFARRELL ST"), ("o farrell st", "O FARRELL ST"),
    ("South Van Ness Avenue", "S VAN NESS AVE"), ("S. Van Ness Ave", "S VAN NESS AVE"),
    ("Geary Bl", "GEARY BLVD"), ("AVENUE I", "AVE I"), ("St Francis Blvd", "SAINT FRANCIS BLVD"),
    # a directional followed by one word is part of the name, written in full either way
    ("SOUTH PARK", "SOUTH PARK"), ("S Park", "SOUTH PARK"), ("South Park St", "SOUTH PARK ST"),
    ("W Portal Ave", "WEST PORTAL AVE"), ("WEST PORTAL AVENUE", "WEST PORTAL AVE"),
    ("N Point St", "NORTH POINT ST"), ("South Dr", "SOUTH DR"), ("E St", "E ST"),
    ("East Crystal Cove Terrace", "E CRYSTAL COVE TER"),
])
def test_street_names_normalise_one_way(typed: str, norm: str) -> None:
    assert normalize_street(typed) == norm


def test_parse_keeps_the_unit_and_reads_blocks_and_corners() -> None:
    q = parse_query("935 Folsom St Apt 4, San Francisco, CA 94107")
    assert (q.kind, q.number, q.street, q.unit) == ("address", 935, "FOLSOM ST", "4")
    assert parse_query("12A Main St #5").number_suffix == "A"
    assert parse_query("12A Main St #5").unit == "5"
    b = parse_query("0 Block of BALCETA AVE")
    assert (b.kind, b.number, b.street) == ("block", 0, "BALCETA AVE")
    assert parse_query("100 BLOCK MARKET ST").kind == "block"
    # the SFFD files write some blocks "800 Block of BLK WEBSTER ST"
    for typed in ("800 Block of BLK WEBSTER ST", "800 BLK WEBSTER ST", "800 BLK OF WEBSTER ST"):
        q = parse_query(typed)
        assert (q.kind, q.number, q.street) == ("block", 800, "WEBSTER ST"), typed
    i = parse_query("MARKET ST/5TH ST")
    assert (i.kind, i.street, i.street2) == ("intersection", "MARKET ST", "5TH ST")
    assert parse_query("SFO Terminal 2").kind == "name"
    assert parse_query("1ST ST").kind == "name"   # an ordinal street is not a house number


def test_known_number_is_the_address_point() -> None:
    g = _geocoder()
    [c] = g.geocode("110 Main Street")
    assert (c.precision, c.label, c.score) == ("address_point", "110 MAIN ST", 1.0)
    assert (c.lat, c.lon) == (NORTH, LON0 + 10 * PER_NUMBER)


def test_unknown_number_is_interpolated_on_its_own_side() -> None:
    g = _geocoder()
    even = g.geocode("124 MAIN ST")[0]
    assert even.precision == "interpolated"
    assert even.lat == pytest.approx(NORTH)          # between 120 and 130: north side
    assert even.lon == pytest.approx(LON0 + 24 * PER_NUMBER)
    odd = g.geocode("125 MAIN ST")[0]
    assert odd.lat == pytest.approx(SOUTH)           # between 121 and 131: south side
    assert odd.lon == pytest.approx(LON0 + 25 * PER_NUMBER)


def test_number_outside_every_range_is_street_precision() -> None:
    c = _geocoder().geocode("900 MAIN ST")[0]
    assert c.precision == "street"
    assert c.score < 1.0
    assert (c.lat, c.lon) == (NORTH, LON0 + 90 * PER_NUMBER)   # the nearest known: 190


def test_hundred_block_is_the_middle_of_its_known_points() -> None:
    c = _geocoder().geocode("100 Block of MAIN ST")[0]
    assert c.precision == "block"
    assert c.lat == pytest.approx((NORTH + SOUTH) / 2)
    assert c.lon == pytest.approx(LON0 + 91 * PER_NUMBER / 2)


def test_unit_stays_with_the_answer_and_does_not_move_it() -> None:
    g = _geocoder()
    plain, with_unit = g.geocode("110 MAIN ST")[0], g.geocode("110 MAIN ST APT 4B")[0]
    assert (with_unit.lat, with_unit.lon) == (plain.lat, plain.lon)
    assert with_unit.unit == "4B"


def test_missing_suffix_typos_and_ambiguity_are_scored() -> None:
    g = _geocoder([("OAK ST", 5, LAT0 + 0.01, LON0), ("OAK AVE", 5, LAT0 + 0.02, LON0)])
    assert g.geocode("110 MAIN")[0].score == pytest.approx(0.95)   # one MAIN: nearly sure
    typo = g.geocode("110 MIAN ST")[0]
    assert typo.label == "110 MAIN ST" and typo.score < 0.9
    both = g.geocode("5 OAK")
    assert {c.label for c in both} == {"5 OAK ST", "5 OAK AVE"}
    assert all(c.score < 0.9 for c in both)
    assert g.geocode("5 NOWHERE BOULEVARD") == []



def test_a_number_far_beyond_the_street_is_answered_but_must_be_confirmed() -> None:
    # MAIN ST's known numbers run 100-191: a block or two past them is the street's end (the
    # file misses half the points), 99999 is a slip of the keys the dispatcher must confirm.
    g = _geocoder()
    near = g.geocode("390 MAIN ST")[0]
    far = g.geocode("99999 MAIN ST")[0]
    assert near.precision == far.precision == "street"
    assert near.score >= 0.9 > far.score


def test_one_name_on_two_streets_is_not_interpolated() -> None:
    # ELM ST here, and another ELM ST 5 km east whose numbers overlap
    far = LON0 + 0.06
    extra = [("ELM ST", n, LAT0 + 0.005, LON0 + n * PER_NUMBER) for n in (2, 10, 20, 30)]
    extra += [("ELM ST", n, LAT0 + 0.005, far + n * PER_NUMBER) for n in (22, 40, 60)]
    c = _geocoder(extra).geocode("26 ELM ST")[0]
    assert c.precision == "street"


def test_places_and_aliases() -> None:
    hall = Place("city-hall", "City Hall", ("SF CITY HALL",), LAT0 + 0.01, LON0 + 0.01)
    sfo = Place("sfo-t2", "SFO Terminal 2", ("SFO T2",), LAT0 - 0.1, LON0)
    g = _geocoder(places=[hall, sfo])
    [c] = g.geocode("city hall")
    assert (c.precision, c.label, c.score, c.lat) == ("place", "City Hall", 1.0, hall.lat)
    assert g.geocode("sfo t2")[0].label == "SFO Terminal 2"
    near = g.geocode("CTY HALL")[0]
    assert near.label == "City Hall" and near.score < 0.9


def test_suggest_by_prefix() -> None:
    hall = Place("city-hall", "City Hall", (), LAT0 + 0.01, LON0 + 0.01)
    g = _geocoder([("MAPLE ST", 3, LAT0 + 0.03, LON0)], places=[hall])
    assert [c.label for c in g.suggest("MA")] == ["MAIN ST", "MAPLE ST"]
    assert [(c.label, c.precision) for c in g.suggest("124 MA")] == [("124 MAIN ST", "interpolated")]
    assert g.suggest("CIT")[0].label == "City Hall"
    assert g.suggest("ZZ") == []


def test_reverse_names_the_nearest_address() -> None:
    r = _geocoder().reverse(NORTH + 0.00002, LON0 + 30 * PER_NUMBER)
    assert r.address == "130 MAIN ST"
    assert r.distance_m is not None and r.distance_m < 5


def _road(divided: bool) -> RoadGraph:
    """MAIN ST from node 1 (west) to node 2 (east), two-way; with ``divided``, BROAD ST as two
    one-way carriageways 30 m apart 0.01 deg north: 3->4 eastbound (south), 6->5 westbound
    (the graph build keeps the largest strongly connected part: every node is linked)."""
    segs = [(1, 2, 0), (2, 1, 0)]
    lat = {1: LAT0, 2: LAT0, 3: LAT0 + 0.01, 4: LAT0 + 0.01, 5: LAT0 + 0.01027, 6: LAT0 + 0.01027}
    lon = {1: LON0 - 0.001, 2: LON0 + 0.003, 3: LON0, 4: LON0 + 0.002, 5: LON0, 6: LON0 + 0.002}
    if divided:  # joined to MAIN ST and to each other by unnamed two-way links at the ends
        segs += [(3, 4, 1), (6, 5, 1), (4, 6, -1), (6, 4, -1), (3, 5, -1), (5, 3, -1),
                 (2, 3, -1), (3, 2, -1)]
    ids = sorted({a for a, _, _ in segs} | {b for _, b, _ in segs})
    return build_graph(
        tail_ext=np.array([a for a, _, _ in segs]), head_ext=np.array([b for _, b, _ in segs]),
        time_ds=np.full(len(segs), 100), length_m=np.full(len(segs), 300.0),
        road_class=np.zeros(len(segs)), way_id=np.arange(len(segs)),
        node_ext_id=np.array(ids), node_lat=np.array([lat[i] for i in ids]),
        node_lon=np.array([lon[i] for i in ids]), class_names=["test"],
        edge_name=np.array([n for _, _, n in segs]), street_names=["Main St", "Broad St"])


def test_points_tie_to_their_street_edge_and_side() -> None:
    g = _geocoder(graph=_road(divided=False))
    north, south = g.geocode("110 MAIN ST")[0], g.geocode("111 MAIN ST")[0]
    assert north.access_lat == pytest.approx(LAT0) and south.access_lat == pytest.approx(LAT0)
    assert north.access_lon == pytest.approx(north.lon)       # straight across to the road
    assert {north.side, south.side} == {"left", "right"}
    between = g.geocode("124 MAIN ST")[0]
    assert between.access_lat == pytest.approx(LAT0)


def test_divided_road_access_is_the_carriageway_on_the_address_side() -> None:
    graph = _road(divided=True)
    near_south = ("BROAD ST", 10, LAT0 + 0.0098, LON0 + 0.001)    # south of both carriageways
    near_north = ("BROAD ST", 11, LAT0 + 0.0105, LON0 + 0.001)    # north of both
    g = _geocoder([near_south, near_north], graph=graph)
    s, n = g.geocode("10 BROAD ST")[0], g.geocode("11 BROAD ST")[0]
    assert s.access_lat == pytest.approx(LAT0 + 0.01)       # the eastbound carriageway
    assert n.access_lat == pytest.approx(LAT0 + 0.01027)    # the westbound one
    assert s.access_lat is not None and s.access_lon is not None
    assert n.access_lat is not None and n.access_lon is not None
    assert haversine_m(s.access_lat, s.access_lon, n.access_lat, n.access_lon) > 25


# ---------------------------------------------------------------------------- the file reader
def test_reader_reports_bad_rows_by_line(tmp_path: Path) -> None:
    f = tmp_path / "points.csv"
    f.write_text("street,number,lat,lon\n"
                 "MAIN ST,10,40.0,-74.0\n"
                 ",11,40.0,-74.0\n"                    # line 3: no street
                 "MAIN ST,ten,40.0,-74.0\n"            # line 4: no number
                 "MAIN ST,12,north,-74.0\n"            # line 5: no lat
                 "MAIN ST,14,95.0,-74.0\n"             # line 6: out of range
                 "MAIN ST,16\n"                        # line 7: short
                 "Main Street,18A,40.1,-74.1\n")
    r = parse_file(f)
    assert r.format == "shared"
    assert [row.number for row in r.rows] == [10, 18]
    assert r.rows[1].number_suffix == "A" and r.rows[1].street == "MAIN ST"
    assert [line for line, _ in r.bad] == [3, 4, 5, 6, 7]
    assert "number" in r.bad[1][1]


def test_reader_takes_openaddresses_csv_gzipped(tmp_path: Path) -> None:
    f = tmp_path / "oa.csv.gz"
    with gzip.open(f, "wt") as out:
        out.write("LON,LAT,NUMBER,STREET,UNIT,CITY,DISTRICT,REGION,POSTCODE,ID,HASH\n"
                  "-122.4042,37.7794,935,Folsom Street,,San Francisco,,CA,94107,,abc\n"
                  "-122.4042,37.7794,935,Folsom Street,Apt 2,San Francisco,,CA,94107,,abd\n")
    r = parse_file(f)
    assert r.format == "openaddresses" and not r.bad
    assert [(x.street, x.number, x.unit) for x in r.rows] == [("FOLSOM ST", 935, ""),
                                                               ("FOLSOM ST", 935, "APT 2")]


def test_reader_refuses_an_unknown_header(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(FormatError, match="neither"):
        parse_file(f)


async def test_import_is_idempotent_and_updates_a_moved_point(database_url: str,
                                                              tmp_path: Path) -> None:
    f = tmp_path / "points.csv"
    f.write_text("street,number,lat,lon\nMAIN ST,10,40.0,-74.0\nMAIN ST,12,40.0,-74.001\n"
                 "MAIN ST,12,40.0,-74.001\nbad,x,1,1\n")
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        seen: list[str] = []
        first = await import_addresses(pool=pool, path=f, progress=lambda p, d, t: seen.append(p))
        assert (first.changed, first.total, first.n_bad, first.bad[0][0]) == (2, 2, 1, 5)
        assert "load" in seen
        again = await import_addresses(pool=pool, path=f)
        assert (again.changed, again.total) == (0, 2)
        f.write_text("street,number,lat,lon\nMAIN ST,10,40.0,-74.0\nMAIN ST,12,40.0,-74.002\n")
        moved = await import_addresses(pool=pool, path=f)
        assert (moved.changed, moved.total) == (1, 2)
        assert await pool.fetchval("SELECT lon FROM address_points WHERE number = 12") == -74.002
    finally:
        await pool.close()


def test_access_point_is_on_the_address_own_street_not_the_nearest_road() -> None:
    """A MAIN ST house by a corner stands nearer CROSS ST's edge than MAIN ST's: snapping the
    point would route units to CROSS ST; its access point is on MAIN ST."""
    segs = [(1, 2, 0), (2, 1, 0), (2, 7, 1), (7, 2, 1)]
    lat = {1: LAT0, 2: LAT0, 7: LAT0 + 0.002}
    lon = {1: LON0 - 0.001, 2: LON0 + 0.003, 7: LON0 + 0.003}
    ids = [1, 2, 7]
    graph = build_graph(
        tail_ext=np.array([a for a, _, _ in segs]), head_ext=np.array([b for _, b, _ in segs]),
        time_ds=np.full(4, 100), length_m=np.full(4, 300.0), road_class=np.zeros(4),
        way_id=np.arange(4), node_ext_id=np.array(ids), node_lat=np.array([lat[i] for i in ids]),
        node_lon=np.array([lon[i] for i in ids]), class_names=["test"],
        edge_name=np.array([n for _, _, n in segs]), street_names=["Main St", "Cross St"])
    corner_house = ("MAIN ST", 298, LAT0 + 0.00018, LON0 + 0.0029)   # 20 m N of Main, 8 m W of Cross
    c = _geocoder([corner_house], graph=graph).geocode("298 MAIN ST")[0]
    assert c.precision == "address_point"
    assert c.access_lat == pytest.approx(LAT0)                  # on MAIN ST
    assert c.access_lon == pytest.approx(LON0 + 0.0029, abs=1e-7)
    cross_m = haversine_m(c.lat, c.lon, c.lat, LON0 + 0.003)
    main_m = haversine_m(c.lat, c.lon, LAT0, c.lon)
    assert cross_m < main_m                                     # the nearest road is CROSS ST


def test_tie_report_names_streets_the_graph_lacks(tmp_path: Path) -> None:
    f = tmp_path / "points.csv"
    f.write_text("street,number,lat,lon\n"
                 f"MAIN ST,110,{NORTH},{LON0}\nMAIN ST,111,{SOUTH},{LON0}\n"
                 f"ELSEWHERE RD,5,{NORTH},{LON0}\n"
                 f"MAIN ST,112,{LAT0 + 0.01},{LON0}\n")         # 1.1 km from Main St
    rep = tie_report(path=f, graph=_road(divided=False))
    assert (rep.points, rep.tied) == (4, 2)
    assert rep.median_distance_m == pytest.approx(22.2, abs=0.5)
    assert rep.untied_streets == [("ELSEWHERE RD", 1), ("MAIN ST", 1)]


async def test_a_worker_picks_up_imports_and_other_workers_places(database_url: str,
                                                                  tmp_path: Path) -> None:
    """What the refresher (CAD_GEOCODER_REFRESH_S) does each round, called directly."""
    f = tmp_path / "points.csv"
    f.write_text("street,number,lat,lon\nMAIN ST,10,40.0,-74.0\n")
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        await import_addresses(pool=pool, path=f)
        ref = await load_geocoder(pool=pool, graph=None, streets=None)
        assert (ref.current.n_points, ref.current.n_places) == (1, 0)
        assert not await refresh_geocoder(pool=pool, ref=ref)          # nothing changed
        async with pool.acquire() as conn:                              # another worker's edit
            await geo_repo.upsert_place(conn, place_id="hall", name="City Hall", aliases=[],
                                        lat=40.01, lon=-74.0)
        before = ref.current
        assert await refresh_geocoder(pool=pool, ref=ref)
        assert ref.current.geocode("CITY HALL")[0].precision == "place"
        assert ref.current.n_points == 1 and ref.current.lat is before.lat   # points kept
        f.write_text("street,number,lat,lon\nMAIN ST,10,40.0,-74.0\nMAIN ST,12,40.0,-74.001\n")
        await import_addresses(pool=pool, path=f)
        assert await refresh_geocoder(pool=pool, ref=ref)
        assert ref.current.n_points == 2
        assert ref.current.geocode("12 MAIN ST")[0].precision == "address_point"
        assert not await refresh_geocoder(pool=pool, ref=ref)
    finally:
        await pool.close()


async def test_cad_places_import_loads_good_rows_reports_bad_ones_and_is_idempotent(
        database_url: str, tmp_path: Path) -> None:
    f = tmp_path / "places.csv"
    f.write_text("id,name,aliases,lat,lon\n"
                 "city-hall,City Hall,CIVIC CENTER|SF CITY HALL,37.77929,-122.41924\n"   # line 2
                 ",SFO Terminal 2,T2,37.61630,-122.38590\n"                            # 3: id from name
                 "bad-lat,Nowhere,,95.0,-122.0\n"                                      # 4: lat > 90
                 "Bad Id!,Somewhere,,37.7,-122.4\n"                                    # 5: id pattern
                 "no-name,,,37.7,-122.4\n")                                            # 6: empty name
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "COLUMNS": "200",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cad", "places", "import", str(f)], check=False,
                              env=env, capture_output=True, text=True, timeout=120)

    proc = await asyncio.to_thread(run)
    assert proc.returncode == 0, proc.stderr
    assert "5 rows, 3 bad, 2 created, 0 changed; 2 places in the database" in proc.stdout, proc.stdout
    assert "line 4: lat: Input should be less than or equal to 90" in proc.stderr, proc.stderr
    assert "line 5: id: String should match pattern" in proc.stderr, proc.stderr
    assert "line 6: name: String should have at least 1 character" in proc.stderr, proc.stderr
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        ref = await load_geocoder(pool=pool, graph=None, streets=None)
        assert ref.current.geocode("SFO TERMINAL 2")[0].precision == "place"
        assert ref.current.geocode("CIVIC CENTER")[0].label == "City Hall"
        stamp = ref.stamp
        again = await asyncio.to_thread(run)
        assert "0 created, 0 changed; 2 places in the database" in again.stdout, again.stdout
        assert not await refresh_geocoder(pool=pool, ref=ref)     # nothing was written
        assert ref.stamp == stamp
        audits = await pool.fetch("SELECT actor, action, target FROM audit_log "
                                  "WHERE action = 'place.import'")
        assert [tuple(r) for r in audits] == [("cli:places-import", "place.import", "places.csv")]
        f.write_text("id,name,lat,lon\ncity-hall,City Hall,37.7793,-122.4193\n")
        moved = await asyncio.to_thread(run)
        assert "1 created" not in moved.stdout and "1 changed" in moved.stdout, moved.stdout
    finally:
        await pool.close()


def test_a_number_beyond_the_known_ones_walks_along_its_street() -> None:
    """MAIN ST's known numbers end at 190/191 (LON0 + 0.0009); the street runs on to LON0 +
    0.003. Beyond the last number the point is walked along the street's edge at the street's
    own metres per number (0.85 m), capped at the street's end; still street precision."""
    g = _geocoder(graph=_road(divided=False))
    c = g.geocode("250 MAIN ST")[0]
    assert c.precision == "street"
    assert (c.lat, c.lon) == (pytest.approx(LAT0), pytest.approx(LON0 + 0.0015, abs=2e-6))
    end = g.geocode("900 MAIN ST")[0]       # 610 m wanted, the street ends 179 m on
    assert (end.lat, end.lon) == (pytest.approx(LAT0), pytest.approx(LON0 + 0.003, abs=1e-7))
    below = g.geocode("50 MAIN ST")[0]       # west of 100, towards node 1
    assert below.lon == pytest.approx(LON0 - 0.0005, abs=2e-6) and below.precision == "street"
    # without a graph: the nearest known number's point, as before
    plain = _geocoder().geocode("250 MAIN ST")[0]
    assert (plain.precision, plain.lat, plain.lon) == ("street", NORTH, LON0 + 90 * PER_NUMBER)
