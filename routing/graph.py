"""The immutable road graph and its on-disk format.

A :class:`RoadGraph` is a directed graph in compressed sparse row (CSR) form with
internal ``int32`` node ids ``0..n-1`` and edge ids ``0..m-1`` (an edge id is the
arc's position in the forward CSR). External ids (OSM node ids, DIMACS ids) are
kept in one array and mapped once, at the boundary, through a sorted index.

Travel times are integer **deciseconds** (``time_ds``), at least 1: integers keep
contraction-hierarchy witness comparisons exact and sums associative, and 0.1 s is
far below what any dispatcher cares about. The public API converts to seconds.

Every edge is a straight segment between its two end nodes (OSM ways are split at
every node, TIGER polylines at every vertex), so node coordinates are the whole
geometry: snapping and route drawing need nothing else.

File format (``*.cadgraph``, version 4; docs/routing.md): a 16-byte magic, an 8-byte
header length, a JSON header (meta, and name, dtype, shape, offset and CRC-32 of every
array), then the arrays, each 64-byte aligned. Loading maps the file read-only
(``mmap``), checks it whole the first time and stamps it (see ``RoadGraph.load``); the
pages come in as queries touch them, and every worker on the machine shares the same
page-cache pages. Optional ``ch_*``
arrays hold the preprocessed contraction hierarchy. Version 1 files (an uncompressed
NumPy ``.npz``) still load, into private memory.

Street names: ``edge_name`` (``int32`` per forward edge) indexes ``street_names``
(stored in ``meta_json`` as a list of strings); -1 means unnamed. One entry may hold
several names separated by ``;`` (OSM's multi-value convention) where coincident
roads were merged onto one segment, e.g. ``"Van Ness Ave;US Hwy 101"``. Both are
optional members: files written before they existed, and DIMACS graphs, load with
every edge unnamed and an empty table.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routing.errors import GraphFileError, GraphFormatWarning, UnknownNodeError
from routing.graph_check import CHECKS_VERSION, MAX_QUERY_ROW, check_members

# 3: every array carries a CRC-32 in the header. 4: the hierarchy's child arcs
# (ch_up_*_down) and, optional in any version, the packed query layout (ch_q_node, ch_q_arc).
# Version 3 loads as it is (routes then unpack by middle nodes); versions 1
# and 2 still load with a GraphFormatWarning: their arrays are validated like any file's,
# only the checksum is absent.
FORMAT_VERSION = 4
_CHECKSUMMED = (3, 4)
_OLD_VERSIONS = (2,)
# A file whose full check passed is not checked again while it keeps its identity (device,
# inode, size, mtime, ctime and header): a stamp in the verified-files directory records it.
# Files changed less than this long ago get no stamp: a write within the same clock tick
# could keep the timestamps (git's "racily clean" problem), so their next load checks again.
_STAMP_MIN_AGE_S = 2.0
_MAGIC = b"CADGRAPH-MMAP-2\n"
_ALIGN = 64

# Arrays of the graph proper, with their dtypes (checked on load).
_GRAPH_ARRAYS: dict[str, Any] = {
    "node_lat": np.float64,
    "node_lon": np.float64,
    "node_ext_id": np.int64,
    "fwd_indptr": np.int64,
    "fwd_head": np.int32,
    "edge_tail": np.int32,
    "edge_time_ds": np.int32,
    "edge_length_m": np.float64,
    "edge_class": np.int16,
    "edge_way_id": np.int64,
    "edge_twin": np.int32,
    "bwd_indptr": np.int64,
    "bwd_tail": np.int32,
    "bwd_edge": np.int32,
}

# Optional arrays, per forward edge: dtype and the fill value when a file lacks them.
_OPTIONAL_EDGE_ARRAYS: dict[str, tuple[Any, int]] = {
    "edge_name": (np.int32, -1),  # index into street_names, -1 = unnamed
}

_CH_ARRAYS: dict[str, Any] = {
    "rank": np.int32,  # rank[node] = contraction order; CH arrays are indexed by rank
    "up_f_indptr": np.int64,
    "up_f_head": np.int32,  # arc rank x -> rank y > x, original direction x->y
    "up_f_time_ds": np.int32,
    "up_f_length_m": np.float32,
    "up_b_indptr": np.int64,
    "up_b_head": np.int32,  # arc rank x -> rank y > x, meaning original y->x
    "up_b_time_ds": np.int32,
    "up_b_length_m": np.float32,
}

# Optional hierarchy arrays: the middle node of each shortcut, or for an original arc
# -2 - its edge id (-1: an original arc of unknown edge), for path unpacking. Files
# without them answer routes with a plain Dijkstra.
_CH_OPTIONAL: dict[str, Any] = {
    "up_f_mid": np.int32,
    "up_b_mid": np.int32,
    # child arcs (routing.route_kernels): two int32 per upward arc, the shortcut's halves
    # or -1 - edge id; routes unpack by them without searching. Without them (files
    # before version 4) routes unpack by the middle nodes.
    "up_f_down": np.int32,
    "up_b_down": np.int32,
    # the query layout (Hierarchy.query_layout); files without it: derived per worker
    "q_node": np.int32,
    "q_arc": np.int32,
}

def query_layout(up_f_indptr: np.ndarray, up_f_head: np.ndarray, up_f_time_ds: np.ndarray,
                 up_b_indptr: np.ndarray, up_b_head: np.ndarray, up_b_time_ds: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The upward arcs packed for a search's access pattern. Node x's block in ``q_arc``
    holds its upward-forward arcs ``[q_node[2x], q_node[2x+1])`` then its upward-backward
    arcs ``[q_node[2x+1], q_node[2x+2])``, each arc a ``(head, time_ds)`` int32 pair
    (``q_arc[2a]``, ``q_arc[2a+1]``), each part in its CSR row's order. A backward search
    stalls on the first part and relaxes the second (a forward one the other way round), so
    a settled node reads one record and one contiguous block instead of six arrays."""
    fp = np.asarray(up_f_indptr, np.int64)
    bp = np.asarray(up_b_indptr, np.int64)
    n = fp.size - 1
    df = np.diff(fp)
    db = np.diff(bp)
    if n and max(int(df.max()), int(db.max())) >= MAX_QUERY_ROW:
        raise ValueError(f"an upward row has {max(int(df.max()), int(db.max()))} arcs, "
                         f"more than the query layout encodes ({MAX_QUERY_ROW - 1})")
    start = np.zeros(n + 1, np.int64)
    np.cumsum(df + db, out=start[1:])
    total = int(start[-1])
    if 2 * total >= 2**31:
        raise ValueError(f"{total} upward arcs: more than the query layout's int32 indexes hold")
    q_node = np.empty(2 * n + 2, np.int32)
    q_node[0:2 * n:2] = start[:-1]
    q_node[1:2 * n:2] = start[:-1] + df
    q_node[2 * n:] = total
    q_arc = np.empty(2 * total, np.int32)
    pos = np.repeat(start[:-1] - fp[:-1], df) + np.arange(fp[-1])
    q_arc[2 * pos] = up_f_head
    q_arc[2 * pos + 1] = up_f_time_ds
    pos = np.repeat(start[:-1] + df - bp[:-1], db) + np.arange(bp[-1])
    q_arc[2 * pos] = up_b_head
    q_arc[2 * pos + 1] = up_b_time_ds
    return q_node, q_arc


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """A contraction hierarchy over a RoadGraph, indexed by its own node numbering.

    ``rank[node]`` is the node's position in the hierarchy's arrays (historically the
    contraction order; graphs built now number highest level first and, within a
    level, along a Hilbert curve: see routing.ch.ch_layout). Upward arcs lead from a
    node to nodes contracted later, whatever their positions; the top of the
    hierarchy, which every query touches, sits in a few contiguous cache lines.
    """

    rank: np.ndarray
    up_f_indptr: np.ndarray
    up_f_head: np.ndarray
    up_f_time_ds: np.ndarray
    up_f_length_m: np.ndarray
    up_b_indptr: np.ndarray
    up_b_head: np.ndarray
    up_b_time_ds: np.ndarray
    up_b_length_m: np.ndarray
    preprocess_s: float = 0.0
    up_f_mid: np.ndarray | None = None  # shortcut middle node, or -2 - edge id
    up_b_mid: np.ndarray | None = None
    up_f_down: np.ndarray | None = None  # child arcs (routing.route_kernels), 2 per arc
    up_b_down: np.ndarray | None = None
    q_node: np.ndarray | None = None  # the query layout (query_layout), stored in the file
    q_arc: np.ndarray | None = None

    def query_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(q_node, q_arc): from the file when it has them (shared pages), else packed once
        for this object (private memory: about 14 MB on NY; files built now carry them)."""
        if self.q_node is None or self.q_arc is None:
            q_node, q_arc = query_layout(self.up_f_indptr, self.up_f_head, self.up_f_time_ds,
                                         self.up_b_indptr, self.up_b_head, self.up_b_time_ds)
            object.__setattr__(self, "q_node", q_node)  # frozen: a derived cache, once
            object.__setattr__(self, "q_arc", q_arc)
        assert self.q_node is not None and self.q_arc is not None
        return self.q_node, self.q_arc

    @property
    def can_unpack(self) -> bool:
        """Whether shortcuts can be expanded into road edges (routes without Dijkstra)."""
        return self.up_f_mid is not None and self.up_b_mid is not None

    @property
    def has_child_arcs(self) -> bool:
        """Whether each upward arc names its two halves (routes unpack without searching)."""
        return self.up_f_down is not None and self.up_b_down is not None

    @property
    def n_up_arcs(self) -> int:
        return int(self.up_f_head.size + self.up_b_head.size)


@dataclass(frozen=True, eq=False)
class RoadGraph:
    """Directed road network as CSR arrays. Immutable; share it freely between threads."""

    node_lat: np.ndarray
    node_lon: np.ndarray
    node_ext_id: np.ndarray
    fwd_indptr: np.ndarray
    fwd_head: np.ndarray
    edge_tail: np.ndarray
    edge_time_ds: np.ndarray
    edge_length_m: np.ndarray
    edge_class: np.ndarray
    edge_way_id: np.ndarray
    edge_twin: np.ndarray  # edge id of head->tail on the same segment, or -1 (one-way)
    bwd_indptr: np.ndarray
    bwd_tail: np.ndarray
    bwd_edge: np.ndarray  # forward edge id of each backward arc
    class_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    hierarchy: Hierarchy | None = None
    edge_name: np.ndarray | None = None  # filled with -1 (unnamed) when not given
    street_names: tuple[str, ...] = ()
    # snapping grid (routing.snap.build_snap_index): arrays and parameters, or None
    snap_index: dict[str, Any] | None = field(default=None, repr=False)
    _ext_order: np.ndarray | None = field(default=None, repr=False)
    _sorted_ext: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.edge_name is None:
            object.__setattr__(self, "edge_name", np.full(self.fwd_head.size, -1, dtype=np.int32))
        edge_name = np.asarray(self.edge_name, dtype=np.int32)
        if edge_name.shape != self.fwd_head.shape:
            raise ValueError(f"edge_name has {edge_name.size} entries for {self.fwd_head.size} edges")
        if edge_name.size and (edge_name.min() < -1 or edge_name.max() >= len(self.street_names)):
            raise ValueError("edge_name refers outside street_names")
        object.__setattr__(self, "edge_name", edge_name)
        object.__setattr__(self, "street_names", tuple(self.street_names))
        for name in (*_GRAPH_ARRAYS, *_OPTIONAL_EDGE_ARRAYS):
            getattr(self, name).setflags(write=False)
        if self._ext_order is None:
            # stable so that duplicate external ids (never expected) resolve to the lowest id
            object.__setattr__(self, "_ext_order", np.argsort(self.node_ext_id, kind="stable"))
        if self._sorted_ext is None:
            # kept, not recomputed per lookup: gathering it is O(n) (0.5 ms on NY)
            object.__setattr__(self, "_sorted_ext", self.node_ext_id[self._ext_order])

    # ---- sizes -------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return int(self.node_lat.size)

    @property
    def n_edges(self) -> int:
        return int(self.fwd_head.size)

    @property
    def edge_head(self) -> np.ndarray:
        return self.fwd_head

    # ---- id mapping at the boundary --------------------------------------------------
    def node_ids(self, ext_ids: Any) -> np.ndarray:
        """Internal node ids for external (OSM / DIMACS) ids; raises UnknownNodeError if absent."""
        ext = np.atleast_1d(np.asarray(ext_ids, dtype=np.int64))
        order, sorted_ext = self._ext_order, self._sorted_ext
        assert order is not None and sorted_ext is not None
        pos = np.searchsorted(sorted_ext, ext)
        pos_c = np.minimum(pos, sorted_ext.size - 1)
        ok = sorted_ext[pos_c] == ext
        if not ok.all():
            raise UnknownNodeError(ext[~ok][:5].tolist())
        return order[pos_c].astype(np.int32)

    def node_id(self, ext_id: int) -> int:
        order, sorted_ext = self._ext_order, self._sorted_ext
        assert order is not None and sorted_ext is not None
        pos = int(sorted_ext.searchsorted(ext_id))
        if pos < sorted_ext.size and sorted_ext[pos] == ext_id:
            return int(order[pos])
        return int(self.node_ids([ext_id])[0])  # raises UnknownNodeError

    def find_edge(self, tail: int, head: int) -> int:
        """Edge id of tail->head, or -1."""
        lo, hi = int(self.fwd_indptr[tail]), int(self.fwd_indptr[tail + 1])
        hits = np.nonzero(self.fwd_head[lo:hi] == head)[0]
        return int(lo + hits[0]) if hits.size else -1

    def edge_street_names(self, edge: int) -> tuple[str, ...]:
        """The street name(s) of an edge; empty when unnamed."""
        i = int(self.edge_name[edge])  # type: ignore[index]  # set in __post_init__
        return tuple(self.street_names[i].split(";")) if i >= 0 else ()

    def with_hierarchy(self, hierarchy: Hierarchy | None) -> RoadGraph:
        kwargs = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "hierarchy"}
        return RoadGraph(**kwargs, hierarchy=hierarchy)

    def with_snap_index(self, snap_index: dict[str, Any] | None) -> RoadGraph:
        """The same graph carrying a snapping grid, saved with it (routing.snap)."""
        kwargs = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "snap_index"}
        return RoadGraph(**kwargs, snap_index=snap_index)

    def summary(self) -> str:
        h = self.hierarchy
        ch = f", CH {h.n_up_arcs:,} upward arcs" if h is not None else ", no CH"
        return f"{self.n_nodes:,} nodes, {self.n_edges:,} edges{ch}"

    # ---- persistence -------------------------------------------------------------------
    def file_members(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays (by file member name) and meta that ``save`` writes."""
        arrays = {name: getattr(self, name) for name in (*_GRAPH_ARRAYS, *_OPTIONAL_EDGE_ARRAYS)}
        meta = dict(self.meta)
        meta["class_names"] = list(self.class_names)
        meta["street_names"] = list(self.street_names)
        if self.hierarchy is not None:
            for name in (*_CH_ARRAYS, *_CH_OPTIONAL):
                a = getattr(self.hierarchy, name)
                if a is not None:
                    arrays["ch_" + name] = a
            meta["ch_preprocess_s"] = self.hierarchy.preprocess_s
        if self.snap_index is not None:
            params = {}
            for name, v in self.snap_index.items():
                if isinstance(v, np.ndarray):
                    arrays["snap_" + name] = v
                else:
                    params[name] = v
            meta["snap_params"] = params
        # the external-id index, so that loading sorts nothing and allocates nothing
        assert self._ext_order is not None and self._sorted_ext is not None
        arrays["ext_order"] = self._ext_order
        arrays["sorted_ext"] = self._sorted_ext
        return arrays, meta

    def save(self, path: str | Path, *, mmap_format: bool = True) -> Path:
        """Write the graph atomically (temp file + rename). ``mmap_format=False`` writes
        the version-1 ``.npz`` (for tools that read it with numpy)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays, meta = self.file_members()
        tmp = path.with_name(path.name + ".tmp")
        if not mmap_format:
            meta["format_version"] = 1
            arrays.pop("ext_order")
            arrays.pop("sorted_ext")
            arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            with open(tmp, "wb") as fh:  # a file object keeps numpy from appending ".npz"
                # numpy's stub types the first keyword argument as allow_pickle: bool
                np.savez(fh, **arrays)  # type: ignore[arg-type]  # see the line above
            tmp.replace(path)
            return path
        return write_graph_file(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path, *, verify_checksum: bool = True) -> RoadGraph:
        """Map a version-4 (or 3, 2) file read-only (shared between processes), or read a
        version-1 ``.npz``. The arrays are checked before anything uses them (see
        routing.graph_check) and against their stored CRC-32 (``verify_checksum=False``
        skips the CRCs). A file that passed both keeps a stamp in the verified-files
        directory (``CAD_GRAPH_STAMP_DIR``; docs/routing.md, "File format"), and its later
        loads, while the file keeps its identity, skip the checks: NY's 90 ms become about
        a millisecond. Any problem raises GraphFileError with one line naming the file and
        what is wrong; never a crash or a wrong answer later."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(_MAGIC))
                if head != _MAGIC:
                    return cls._load_npz(path)
                st = os.fstat(fh.fileno())
                size = st.st_size
                hlen = int.from_bytes(fh.read(8), "little")
                if not 0 < hlen <= size:
                    raise GraphFileError(path, f"header length {hlen} does not fit the file "
                                               f"({size} bytes): truncated or not a graph file")
                header_bytes = fh.read(hlen)
                header = json.loads(header_bytes.decode())
                buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise GraphFileError(path, f"cannot read: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GraphFileError(path, f"header is not valid JSON ({exc})") from exc
        data_start = -(-(len(_MAGIC) + 8 + hlen) // _ALIGN) * _ALIGN
        if not isinstance(header, dict) or not isinstance(header.get("meta"), dict) \
                or not isinstance(header.get("arrays"), dict):
            raise GraphFileError(path, "header lacks its meta or arrays table")
        meta = header["meta"]
        version = meta.get("format_version")
        if version in _OLD_VERSIONS:
            warnings.warn(f"{path}: graph format {version} has no checksum; rebuild with "
                          "`cad graph build` to get one", GraphFormatWarning, stacklevel=2)
        elif version not in _CHECKSUMMED:
            raise GraphFileError(path, f"graph format {version}, expected {FORMAT_VERSION}; "
                                       "rebuild with `cad graph build`")
        stamp = _stamp(path, st, header_bytes) if version in _CHECKSUMMED else None
        verified = stamp is not None and _stamp_holds(stamp)
        raw: dict[str, np.ndarray] = {}
        for name, spec in header["arrays"].items():
            try:
                dt = np.dtype(spec["dtype"])
                shape = [int(x) for x in spec["shape"]]
                offset = int(spec["offset"])
            except (KeyError, TypeError, ValueError) as exc:
                raise GraphFileError(path, f"array {name}: bad header entry ({exc})") from exc
            if dt.hasobject or min(shape, default=0) < 0 or offset < 0:
                raise GraphFileError(path, f"array {name}: bad header entry")
            count = int(np.prod(shape, dtype=np.int64))
            if data_start + offset + count * dt.itemsize > size:
                raise GraphFileError(path, f"array {name} runs past the end of the file "
                                           "(truncated)")
            if count == 0:
                raw[name] = np.empty(shape, dt)
                continue
            a = np.frombuffer(buf, dtype=dt, count=count, offset=data_start + offset)
            if verify_checksum and not verified and version in _CHECKSUMMED:
                want = spec.get("crc32")
                if want != _crc32(a):
                    raise GraphFileError(path, f"array {name} fails its checksum (corrupt or "
                                               "edited); rebuild with `cad graph build`")
            raw[name] = a.reshape(shape)
        graph = cls._from_members(raw, meta, path, check=not verified)
        if stamp is not None and verify_checksum and not verified:
            _write_stamp(stamp, st)
        return graph

    @classmethod
    def _load_npz(cls, path: str | Path) -> RoadGraph:
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                if "meta_json" not in z.files:
                    raise GraphFileError(path, "not a graph file (no meta_json member)")
                meta = json.loads(bytes(z["meta_json"]).decode())
                if not isinstance(meta, dict) or meta.get("format_version") != 1:
                    version = meta.get("format_version") if isinstance(meta, dict) else None
                    raise GraphFileError(path, f"graph format {version}, expected "
                                               f"{FORMAT_VERSION}; rebuild with `cad graph build`")
                raw = {name: z[name] for name in z.files if name != "meta_json"}
        except GraphFileError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            # np.load raises ValueError for what is neither .npy nor .npz
            raise GraphFileError(path, f"not a readable graph file ({exc})") from exc
        warnings.warn(f"{path}: graph format 1 has no checksum; rebuild with `cad graph build` "
                      "to get one", GraphFormatWarning, stacklevel=3)
        return cls._from_members(raw, meta, path)

    @classmethod
    def _from_members(cls, raw: dict[str, np.ndarray], meta: dict[str, Any],
                      path: str | Path, *, check: bool = True) -> RoadGraph:
        if not isinstance(meta.get("class_names"), list) \
                or not isinstance(meta.get("street_names", []), list):
            raise GraphFileError(path, "meta lacks its class_names or street_names list")
        if check:  # not when a stamp says this very file passed (RoadGraph.load)
            check_members(path, raw, meta, graph_dtypes=_GRAPH_ARRAYS, ch_dtypes=_CH_ARRAYS,
                          ch_optional=_CH_OPTIONAL)
        arrays: dict[str, Any] = {name: raw[name] for name in _GRAPH_ARRAYS}
        for name, (dt, fill) in _OPTIONAL_EDGE_ARRAYS.items():
            arrays[name] = (raw[name] if name in raw
                            else np.full(arrays["fwd_head"].size, fill, dtype=dt))
        hierarchy = None
        if "ch_rank" in raw:
            hierarchy = Hierarchy(
                **{n: raw["ch_" + n] for n in _CH_ARRAYS},
                **{n: raw["ch_" + n] for n in _CH_OPTIONAL if "ch_" + n in raw},
                preprocess_s=_number(meta.get("ch_preprocess_s", 0.0)),
            )
        meta = dict(meta)
        snap_index: dict[str, Any] | None = None
        if "snap_params" in meta:
            snap_index = dict(meta.pop("snap_params"))
            for name, a in raw.items():
                if name.startswith("snap_"):
                    snap_index[name[5:]] = a
        class_names = tuple(str(c) for c in meta.pop("class_names"))
        street_names = tuple(str(s) for s in meta.pop("street_names", ()))
        try:
            return cls(**arrays, class_names=class_names, meta=meta, hierarchy=hierarchy,
                       street_names=street_names, snap_index=snap_index,
                       _ext_order=raw.get("ext_order"), _sorted_ext=raw.get("sorted_ext"))
        except (TypeError, ValueError) as exc:  # checked above; a last line of defence
            raise GraphFileError(path, f"inconsistent graph ({exc})") from exc


def _number(v: Any) -> float:
    """A meta value that is only informative (e.g. the preprocessing time): NaN when odd."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")


def stamp_dir() -> Path | None:
    """Where stamps of fully checked graph files live: ``CAD_GRAPH_STAMP_DIR`` (``off``
    disables them), else ``$XDG_CACHE_HOME/cad/graph-verified`` (``~/.cache/...``)."""
    env = os.environ.get("CAD_GRAPH_STAMP_DIR")
    if env is not None:
        return None if env.strip() in ("", "off") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cad" / "graph-verified"


def _stamp(path: str | Path, st: os.stat_result, header: bytes) -> dict[str, Any] | None:
    """What identifies this file as the one checked: the open file's device, inode, size,
    mtime and ctime (a write through the file system changes them; ctime cannot be set back
    from user space), its header's hash (every array's CRC), and the checks' version."""
    d = stamp_dir()
    if d is None:
        return None
    real = os.path.realpath(path)
    return {"file": real, "stamp": str(d / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".json")),
            "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "header_sha256": hashlib.sha256(header).hexdigest(),
            "checks": CHECKS_VERSION, "format": FORMAT_VERSION}


def _stamp_holds(stamp: dict[str, Any]) -> bool:
    try:
        with open(stamp["stamp"], encoding="utf-8") as fh:
            return bool(json.load(fh) == stamp)
    except (OSError, ValueError):
        return False


def _write_stamp(stamp: dict[str, Any], st: os.stat_result) -> None:
    """Record a fully checked file, unless it changed too recently to tell a later write
    within the same clock tick apart (_STAMP_MIN_AGE_S). Best effort: an unwritable
    directory only means the next load checks again."""
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _STAMP_MIN_AGE_S * 1e9:
        return
    target = Path(stamp["stamp"])
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamp), encoding="utf-8")
        tmp.replace(target)
    except OSError:
        pass


def _crc32(a: np.ndarray) -> int:
    # numpy's stubs do not declare the buffer protocol for ndarray
    view = memoryview(np.ascontiguousarray(a))  # type: ignore[arg-type]  # see the line above
    return zlib.crc32(view.cast("B")) if a.nbytes else 0


def write_graph_file(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write arrays and meta as a current-version graph file, each array with its CRC-32,
    atomically (temp file + rename). ``RoadGraph.save`` goes through here; the tests use it
    to write deliberately inconsistent files."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    meta = {**meta, "format_version": FORMAT_VERSION}
    table: dict[str, dict[str, Any]] = {}
    blobs: list[tuple[int, np.ndarray]] = []
    off = 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        table[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": off,
                       "crc32": _crc32(a)}
        blobs.append((off, a))
        off += -(-a.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({"meta": meta, "arrays": table}).encode()
    data_start = -(-(len(_MAGIC) + 8 + len(header)) // _ALIGN) * _ALIGN
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC)
        fh.write(len(header).to_bytes(8, "little"))
        fh.write(header)
        for at, a in blobs:
            fh.seek(data_start + at)
            fh.write(a.tobytes())
        fh.truncate(data_start + off)
    tmp.replace(path)  # atomic: a worker never sees a half-written graph
    return path


def is_graph_file(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            if fh.read(len(_MAGIC)) == _MAGIC:
                return True
    except OSError:
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return "meta_json.npy" in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
