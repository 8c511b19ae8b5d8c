"""Readers for road data: OSM (.osm, .osm.bz2, .osm.pbf, place name), TIGER/Line, DIMACS.

Each reader returns a RoadGraph (largest strongly connected component, no
hierarchy yet). External node ids: OSM node ids, DIMACS ids, and for TIGER (which
has no node ids) a sequential number per vertex.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from routing.build import build_graph, haversine_m, travel_time_ds
from routing.graph import RoadGraph
from routing.speeds import (
    OSM_FALLBACK_KMH,
    OSM_SPEEDS_KMH,
    TIGER_SPEEDS_KMH,
    merged_speeds,
    parse_maxspeed_kmh,
)

Progress = Callable[[str], None]

DRIVABLE_HIGHWAYS = frozenset(OSM_SPEEDS_KMH)
_YES = frozenset({"yes", "true", "1"})
_NO_ACCESS = frozenset({"no"})
_NOT_FOR_CARS = frozenset({"no"})


def _noop(_: str) -> None:
    pass


def _intern_names(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    """Street names -> (index per value, -1 when missing; the table of distinct names).

    Missing means None, NaN (pandas) or blank. Lists (osmnx merges) are joined by ";"."""
    table: dict[str, int] = {}
    codes = np.full(len(values), -1, dtype=np.int32)
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple)):
            v = ";".join(str(x).strip() for x in v if isinstance(x, str) and x.strip())
        if not isinstance(v, str):
            continue  # None / NaN
        v = v.strip()
        if not v:
            continue
        j = table.get(v)
        if j is None:
            j = table[v] = len(table)
        codes[i] = j
    return codes, list(table)


# ---------------------------------------------------------------------------------- OSM
def _oneway_code(oneway: Any, highway: str, junction: Any) -> int:
    """+1 forward only, -1 backward only, 0 both ways."""
    ow = str(oneway).strip().lower() if oneway is not None else ""
    if ow in ("nan", "none"):
        ow = ""
    if ow in _YES:
        return 1
    if ow in ("-1", "reverse"):
        return -1
    if ow == "no":
        return 0
    jn = str(junction).strip().lower() if junction is not None else ""
    if jn in ("roundabout", "circular") or highway == "motorway":
        return 1  # implied one-way (OSM convention)
    return 0  # unknown, "reversible", "alternating": emergency vehicles may use both ways


def _segments_to_graph(
    *,
    u: np.ndarray,
    v: np.ndarray,
    length_m: np.ndarray,
    highway: list[str],
    maxspeed: list[Any],
    oneway: np.ndarray,
    way_id: np.ndarray,
    node_ext_id: np.ndarray,
    node_lat: np.ndarray,
    node_lon: np.ndarray,
    speeds_kmh: Mapping[str, float] | None,
    meta: dict[str, Any],
    name: list[Any] | None = None,
) -> RoadGraph:
    speeds = merged_speeds(OSM_SPEEDS_KMH, speeds_kmh)
    fallback = speeds.get("default", OSM_FALLBACK_KMH)
    class_names = sorted(set(highway))
    class_idx = {c: i for i, c in enumerate(class_names)}
    road_class = np.array([class_idx[h] for h in highway], dtype=np.int16)
    cache: dict[tuple[str, Any], float] = {}
    speed = np.empty(len(highway), dtype=np.float64)
    for i, (h, ms) in enumerate(zip(highway, maxspeed)):
        key = (h, ms if isinstance(ms, str) else repr(ms))
        s = cache.get(key)
        if s is None:
            parsed = parse_maxspeed_kmh(ms)
            s = parsed if parsed is not None else speeds.get(h, fallback)
            cache[key] = s
        speed[i] = s
    t = travel_time_ds(length_m, speed)
    fw = oneway >= 0
    bw = oneway <= 0
    tails = np.concatenate([u[fw], v[bw]])
    heads = np.concatenate([v[fw], u[bw]])
    meta = dict(meta)
    meta["speeds_kmh"] = speeds
    name_code, street_names = _intern_names(name if name is not None else [None] * len(highway))
    return build_graph(
        tail_ext=tails,
        head_ext=heads,
        time_ds=np.concatenate([t[fw], t[bw]]),
        length_m=np.concatenate([length_m[fw], length_m[bw]]),
        road_class=np.concatenate([road_class[fw], road_class[bw]]),
        way_id=np.concatenate([way_id[fw], way_id[bw]]),
        node_ext_id=node_ext_id,
        node_lat=node_lat,
        node_lon=node_lon,
        class_names=class_names,
        meta=meta,
        edge_name=np.concatenate([name_code[fw], name_code[bw]]),
        street_names=street_names,
    )


def load_osm_pbf(path: str | Path, *, speeds_kmh: Mapping[str, float] | None = None,
                 progress: Progress = _noop) -> RoadGraph:
    """OSM PBF through pyrosm's "driving+service" network (ways split at every node)."""
    import pyrosm  # heavy import, only when needed

    progress("reading PBF (pyrosm)")
    osm = pyrosm.OSM(str(path))
    nodes, edges = osm.get_network(network_type="driving+service", nodes=True)
    if edges is None or len(edges) == 0:
        raise ValueError(f"{path}: no drivable ways")
    edges = edges[edges["highway"].isin(DRIVABLE_HIGHWAYS)]
    if "area" in edges.columns:
        edges = edges[edges["area"].astype(str).str.lower() != "yes"]
    for col in ("access", "motor_vehicle", "motorcar"):
        if col in edges.columns:
            edges = edges[~edges[col].astype(str).str.lower().isin(_NO_ACCESS)]
    progress("assembling arcs")
    highway = edges["highway"].astype(str).tolist()
    junction = edges["junction"].tolist() if "junction" in edges.columns else [None] * len(edges)
    oneway_col = edges["oneway"].tolist() if "oneway" in edges.columns else [None] * len(edges)
    oneway = np.array([_oneway_code(o, h, j) for o, h, j in zip(oneway_col, highway, junction)],
                      dtype=np.int8)
    maxspeed = edges["maxspeed"].tolist() if "maxspeed" in edges.columns else [None] * len(edges)
    names = edges["name"].tolist() if "name" in edges.columns else None
    return _segments_to_graph(
        u=edges["u"].to_numpy(np.int64),
        v=edges["v"].to_numpy(np.int64),
        length_m=edges["length"].to_numpy(np.float64),
        highway=highway,
        maxspeed=maxspeed,
        oneway=oneway,
        way_id=edges["id"].to_numpy(np.int64),
        node_ext_id=nodes["id"].to_numpy(np.int64),
        node_lat=nodes["lat"].to_numpy(np.float64),
        node_lon=nodes["lon"].to_numpy(np.float64),
        speeds_kmh=speeds_kmh,
        meta={"source": str(path), "source_kind": "osm.pbf"},
        name=names,
    )


def load_osm_xml(path: str | Path, *, speeds_kmh: Mapping[str, float] | None = None,
                 progress: Progress = _noop) -> RoadGraph:
    """OSM XML (.osm or .osm.bz2/.gz), streamed. Ways referencing nodes missing from a
    bounding-box-clipped file keep only their segments with both ends present."""
    path = Path(path)
    opener: Callable[..., Any]
    if path.suffix == ".bz2":
        opener = bz2.open
    elif path.suffix == ".gz":
        opener = gzip.open
    else:
        opener = open
    node_ids: list[int] = []
    lats: list[float] = []
    lons: list[float] = []
    seg_u: list[int] = []
    seg_v: list[int] = []
    seg_way: list[int] = []
    seg_hw: list[str] = []
    seg_ms: list[Any] = []
    seg_ow: list[int] = []
    seg_name: list[str | None] = []
    progress("parsing OSM XML")
    with opener(path, "rb") as fh:
        for _, elem in ET.iterparse(fh, events=("end",)):
            tag = elem.tag
            if tag == "node":
                node_ids.append(int(elem.get("id")))
                lats.append(float(elem.get("lat")))
                lons.append(float(elem.get("lon")))
                elem.clear()
            elif tag == "way":
                tags = {t.get("k"): t.get("v") for t in elem.iter("tag")}
                hw = tags.get("highway")
                if (hw in DRIVABLE_HIGHWAYS and tags.get("area") != "yes"
                        and tags.get("access") not in _NO_ACCESS
                        and tags.get("motor_vehicle") not in _NOT_FOR_CARS
                        and tags.get("motorcar") not in _NOT_FOR_CARS):
                    refs = [int(nd.get("ref")) for nd in elem.iter("nd")]
                    ow = _oneway_code(tags.get("oneway"), hw, tags.get("junction"))
                    wid = int(elem.get("id"))
                    ms = tags.get("maxspeed")
                    nm = tags.get("name")
                    for a, b in itertools.pairwise(refs):
                        seg_u.append(a)
                        seg_v.append(b)
                        seg_way.append(wid)
                        seg_hw.append(hw)
                        seg_ms.append(ms)
                        seg_ow.append(ow)
                        seg_name.append(nm)
                elem.clear()
            elif tag == "relation":
                elem.clear()
    if not seg_u:
        raise ValueError(f"{path}: no drivable ways")
    progress("assembling arcs")
    nid = np.array(node_ids, dtype=np.int64)
    lat = np.array(lats)
    lon = np.array(lons)
    u = np.array(seg_u, dtype=np.int64)
    v = np.array(seg_v, dtype=np.int64)
    order = np.argsort(nid)
    snid = nid[order]

    def idx(x: np.ndarray) -> np.ndarray:
        p = np.minimum(np.searchsorted(snid, x), snid.size - 1)
        return np.where(snid[p] == x, order[p], -1)

    iu, iv = idx(u), idx(v)
    ok = (iu >= 0) & (iv >= 0)
    iu_ok, iv_ok = iu[ok], iv[ok]
    length = haversine_m(lat[iu_ok], lon[iu_ok], lat[iv_ok], lon[iv_ok])
    okl = np.nonzero(ok)[0]
    return _segments_to_graph(
        u=u[ok], v=v[ok], length_m=length,
        highway=[seg_hw[i] for i in okl], maxspeed=[seg_ms[i] for i in okl],
        oneway=np.array(seg_ow, dtype=np.int8)[ok], way_id=np.array(seg_way, dtype=np.int64)[ok],
        node_ext_id=nid, node_lat=lat, node_lon=lon, speeds_kmh=speeds_kmh,
        meta={"source": str(path), "source_kind": "osm.xml"}, name=[seg_name[i] for i in okl],
    )


def load_place(place: str, *, speeds_kmh: Mapping[str, float] | None = None,
               progress: Progress = _noop) -> RoadGraph:
    """Download a place's network with osmnx (needs internet), unsimplified, drive+service."""
    import osmnx as ox

    progress(f"downloading {place!r} with osmnx")
    highway_re = "|".join(sorted(DRIVABLE_HIGHWAYS))
    g = ox.graph_from_place(
        place, simplify=False, retain_all=True,
        network_type=None,  # type: ignore[arg-type]  # osmnx: None = custom_filter alone
        custom_filter=f'["highway"~"^({highway_re})$"]["area"!~"yes"]["access"!~"^no$"]',
    )
    progress("assembling arcs")
    # osmnx already expanded one-ways into directed arcs; keep them as forward-only.
    rows = list(g.edges(data=True))
    nodes = list(g.nodes(data=True))
    hw = [d.get("highway") for _, _, d in rows]
    hw = [h[0] if isinstance(h, list) else str(h) for h in hw]
    ms = [d.get("maxspeed") for _, _, d in rows]
    ms = [m[0] if isinstance(m, list) else m for m in ms]
    wid = [d.get("osmid", -1) for _, _, d in rows]
    wid = [w[0] if isinstance(w, list) else w for w in wid]
    return _segments_to_graph(
        u=np.array([a for a, _, _ in rows], dtype=np.int64),
        v=np.array([b for _, b, _ in rows], dtype=np.int64),
        length_m=np.array([float(d.get("length", 0.0)) for _, _, d in rows]),
        highway=hw, maxspeed=ms, oneway=np.ones(len(rows), dtype=np.int8),
        way_id=np.array(wid, dtype=np.int64),
        node_ext_id=np.array([n for n, _ in nodes], dtype=np.int64),
        node_lat=np.array([d["y"] for _, d in nodes]), node_lon=np.array([d["x"] for _, d in nodes]),
        speeds_kmh=speeds_kmh, meta={"source": place, "source_kind": "osmnx.place"},
        name=[d.get("name") for _, _, d in rows],
    )


# -------------------------------------------------------------------------------- TIGER
def load_tiger(path: str | Path, *, speeds_kmh: Mapping[str, float] | None = None,
               time_factor: float = 1.0, progress: Progress = _noop) -> RoadGraph:
    """US Census TIGER/Line "roads" shapefile (zip). Undirected: no one-way data exists.

    Every polyline vertex is a node (coordinates rounded to 1e-7 degrees). Freeway
    (S1100) vertices get their own nodes so overpasses do not join the streets below;
    they are joined to other roads only where a ramp (S1630) touches the same vertex.
    ``time_factor`` multiplies all travel times (calibration; see docs/routing.md).
    """
    import shapefile  # pyshp

    speeds = merged_speeds(TIGER_SPEEDS_KMH, speeds_kmh)
    progress("reading TIGER shapefile")
    reader = shapefile.Reader(str(path))
    fields = [f[0] for f in reader.fields[1:]]
    i_mtfcc = fields.index("MTFCC")
    i_lid = fields.index("LINEARID")
    i_name = fields.index("FULLNAME") if "FULLNAME" in fields else -1
    feats: list[tuple[str, int, str, list[tuple[int, int]]]] = []
    for sr in reader.iterShapeRecords():
        mtfcc = sr.record[i_mtfcc]
        if mtfcc not in speeds:
            continue
        pts = [(round(x * 1e7), round(y * 1e7)) for x, y in sr.shape.points]
        # polylines may have several parts; split at part boundaries
        parts = list(sr.shape.parts) + [len(pts)]
        lid = int(sr.record[i_lid])
        fullname = sr.record[i_name] if i_name >= 0 else ""
        for a, b in itertools.pairwise(parts):
            feats.append((mtfcc, lid, fullname, pts[a:b]))
    ramp_pts = {p for m, _, _, pts in feats if m == "S1630" for p in pts}
    node_of: dict[tuple[int, int, bool], int] = {}
    node_lon: list[float] = []
    node_lat: list[float] = []

    def node(p: tuple[int, int], freeway: bool) -> int:
        key = (p[0], p[1], freeway and p not in ramp_pts)
        i = node_of.get(key)
        if i is None:
            i = node_of[key] = len(node_lon)
            node_lon.append(p[0] / 1e7)
            node_lat.append(p[1] / 1e7)
        return i

    class_names = sorted(speeds)
    cidx = {c: i for i, c in enumerate(class_names)}
    us: list[int] = []
    vs: list[int] = []
    cls: list[int] = []
    wids: list[int] = []
    seg_name: list[str] = []
    for mtfcc, lid, fullname, pts in feats:
        fw = mtfcc == "S1100"
        ids = [node(p, fw) for p in pts]
        for a, b in itertools.pairwise(ids):
            us.append(a)
            vs.append(b)
            cls.append(cidx[mtfcc])
            wids.append(lid)
            seg_name.append(fullname)
    progress("assembling arcs")
    u = np.array(us, dtype=np.int64)
    v = np.array(vs, dtype=np.int64)
    lat = np.array(node_lat)
    lon = np.array(node_lon)
    length = haversine_m(lat[u], lon[u], lat[v], lon[v])
    c = np.array(cls, dtype=np.int16)
    speed = np.array([speeds[class_names[i]] for i in range(len(class_names))])[c]
    t = travel_time_ds(length * time_factor, speed)
    name_code, street_names = _intern_names(seg_name)
    return build_graph(
        tail_ext=np.concatenate([u, v]), head_ext=np.concatenate([v, u]),
        time_ds=np.concatenate([t, t]), length_m=np.concatenate([length, length]),
        road_class=np.concatenate([c, c]), way_id=np.concatenate([wids, wids]),
        node_ext_id=np.arange(lat.size, dtype=np.int64), node_lat=lat, node_lon=lon,
        class_names=class_names,
        meta={"source": str(path), "source_kind": "tiger", "speeds_kmh": speeds,
              "time_factor": time_factor},
        edge_name=np.concatenate([name_code, name_code]), street_names=street_names,
    )


# ------------------------------------------------------------------------------- DIMACS
def _read_text(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _dimacs_lines(data: bytes, prefix: bytes, ncols: int) -> np.ndarray:
    lines = [ln for ln in data.splitlines() if ln.startswith(prefix)]
    if not lines:
        return np.zeros((0, ncols), dtype=np.int64)
    body = b"\n".join(ln[len(prefix):] for ln in lines)
    arr = np.loadtxt(io.BytesIO(body), dtype=np.int64, ndmin=2) if len(lines) < 1000 else \
        np.array(body.split(), dtype=np.int64).reshape(-1, ncols)
    return arr.reshape(-1, ncols)


def load_dimacs(gr_path: str | Path, co_path: str | Path, *, time_unit_s: float = 0.1,
                progress: Progress = _noop) -> RoadGraph:
    """DIMACS 9th challenge .gr (arcs ``a u v w``) and .co (``v id lon*1e6 lat*1e6``).

    Arc weights are taken as travel times of ``time_unit_s`` seconds each (default
    0.1 s, i.e. the weights are used as deciseconds unchanged). Lengths are the
    straight-line distance between the end nodes.
    """
    progress("reading DIMACS")
    arcs = _dimacs_lines(_read_text(Path(gr_path)), b"a ", 3)
    co = _dimacs_lines(_read_text(Path(co_path)), b"v ", 3)
    node_ext = co[:, 0]
    lon = co[:, 1] / 1e6
    lat = co[:, 2] / 1e6
    order = np.argsort(node_ext)
    pos = order[np.searchsorted(node_ext[order], arcs[:, 0])]
    pos2 = order[np.searchsorted(node_ext[order], arcs[:, 1])]
    length = haversine_m(lat[pos], lon[pos], lat[pos2], lon[pos2])
    scale = time_unit_s / 0.1
    t = np.maximum(np.rint(arcs[:, 2] * scale), 1).astype(np.int64)
    progress("assembling arcs")
    return build_graph(
        tail_ext=arcs[:, 0], head_ext=arcs[:, 1], time_ds=t, length_m=length,
        road_class=np.zeros(arcs.shape[0], dtype=np.int16), way_id=np.full(arcs.shape[0], -1),
        node_ext_id=node_ext, node_lat=lat, node_lon=lon, class_names=["dimacs"],
        meta={"source": str(gr_path), "source_kind": "dimacs", "time_unit_s": time_unit_s},
    )


def load_any(source: str | Path, *, coords: str | Path | None = None,
             speeds_kmh: Mapping[str, float] | None = None, tiger_time_factor: float = 1.0,
             dimacs_time_unit_s: float = 0.1, progress: Progress = _noop) -> RoadGraph:
    """Dispatch on the file name."""
    name = str(source).lower()
    if name.endswith((".osm.pbf", ".pbf")):
        return load_osm_pbf(source, speeds_kmh=speeds_kmh, progress=progress)
    if name.endswith((".osm", ".osm.bz2", ".osm.gz", ".xml", ".xml.bz2")):
        return load_osm_xml(source, speeds_kmh=speeds_kmh, progress=progress)
    if name.endswith((".zip", ".shp")):
        return load_tiger(source, speeds_kmh=speeds_kmh, time_factor=tiger_time_factor,
                          progress=progress)
    if name.endswith((".gr", ".gr.gz")):
        if coords is None:
            raise ValueError("DIMACS .gr needs --coords FILE.co[.gz]")
        return load_dimacs(source, coords, time_unit_s=dimacs_time_unit_s, progress=progress)
    raise ValueError(f"don't know how to read {source!r} (expected .osm, .osm.bz2, .osm.pbf, "
                     ".zip (TIGER), .gr(.gz))")


__all__ = [
    "DRIVABLE_HIGHWAYS",
    "load_any",
    "load_dimacs",
    "load_osm_pbf",
    "load_osm_xml",
    "load_place",
    "load_tiger",
]
