"""Graph files are checked whole on load: every corruption gives one GraphFileError naming
the file and the problem, never a crash or a silently wrong answer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from routing.errors import GraphFileError, GraphFormatWarning
from routing.graph import RoadGraph, write_graph_file
from routing.testdata import REPO_ROOT, small_graph

Arrays = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def members() -> tuple[Arrays, dict]:
    arrays, meta = small_graph().file_members()
    return {k: np.array(v) for k, v in arrays.items()}, meta


def _set(name: str, pos: int, value: float) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        a[name][pos] = value
    return f


def _bump(name: str, pos: int) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        a[name][pos] += 1
    return f


def _shorten(name: str) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        a[name] = a[name][:-1]
    return f


def _swap(name: str, i: int, j: int) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        a[name][[i, j]] = a[name][[j, i]]
    return f


def _drop(name: str) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        del a[name]
    return f


def _retype(name: str, dtype: type) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        a[name] = a[name].astype(dtype)
    return f


def _dup_rank(a: Arrays) -> None:
    a["ch_rank"][1] = a["ch_rank"][0]


def _twin_wrong(a: Arrays) -> None:
    twin = a["edge_twin"]
    i = int(np.nonzero(twin >= 0)[0][0])
    twin[i] = (twin[i] + 1) % twin.size


def _tail_disagrees(a: Arrays) -> None:
    a["edge_tail"][0] = a["edge_tail"][-1]


def _bwd_tail_disagrees(a: Arrays) -> None:
    a["bwd_tail"][0] = (a["bwd_tail"][0] + 1) % a["node_lat"].size


def _sorted_ext_disagrees(a: Arrays) -> None:
    a["sorted_ext"][0] = a["sorted_ext"][0] - 1000


def _indptr_decreases(a: Arrays) -> None:
    p = a["fwd_indptr"]
    p[1], p[2] = p[2], p[1]


# (id, corruption, words the error must contain). Every one of these files unpacks cleanly
# and carries valid checksums over its (wrong) arrays: only the structural checks catch them.
CASES: list[tuple[str, Callable[[Arrays], None], str]] = [
    ("fwd_head out of range", _set("fwd_head", 3, 10_000), "fwd_head holds 10000"),
    ("fwd_head negative", _set("fwd_head", 0, -1), "fwd_head holds -1"),
    ("ch_up_f_head out of range", _set("ch_up_f_head", 0, 10_000), "ch_up_f_head holds 10000"),
    ("ch_up_b_head negative", _set("ch_up_b_head", 0, -7), "ch_up_b_head holds -7"),
    ("negative edge time", _set("edge_time_ds", 2, -50), "edge_time_ds holds -50"),
    ("zero edge time", _set("edge_time_ds", 2, 0), "at least 1 decisecond"),
    ("negative shortcut time", _set("ch_up_f_time_ds", 1, -50), "ch_up_f_time_ds holds -50"),
    ("NaN edge length", _set("edge_length_m", 1, np.nan), "edge_length_m holds nan"),
    ("negative edge length", _set("edge_length_m", 1, -3.0), "finite and non-negative"),
    ("infinite shortcut length", _set("ch_up_b_length_m", 0, np.inf), "ch_up_b_length_m holds inf"),
    ("shortened fwd_indptr", _shorten("fwd_indptr"), "fwd_indptr has"),
    ("shortened edge_tail", _shorten("edge_tail"), "edge_tail has"),
    ("shortened ch_up_b_indptr", _shorten("ch_up_b_indptr"), "ch_up_b_indptr has"),
    ("shortened ch_up_f_time_ds", _shorten("ch_up_f_time_ds"), "ch_up_f_time_ds has"),
    ("shortened node_lon", _shorten("node_lon"), "node_lon has"),
    ("shortened snap_cell_start", _shorten("snap_cell_start"), "snap_cell_start has"),
    ("fwd_indptr decreasing", _indptr_decreases, "fwd_indptr decreases"),
    ("fwd_indptr wrong end", _set("fwd_indptr", -1, 5), "fwd_indptr runs from 0 to 5"),
    ("edge_tail disagrees", _tail_disagrees, "edge_tail disagrees with fwd_indptr"),
    ("bwd_edge out of range", _set("bwd_edge", 0, 99_999), "bwd_edge holds 99999"),
    ("bwd_tail disagrees", _bwd_tail_disagrees, "backward CSR"),
    ("twin not the reverse", _twin_wrong, "edge_twin"),
    ("twin out of range", _set("edge_twin", 0, 99_999), "edge_twin holds 99999"),
    ("edge_class out of range", _set("edge_class", 0, 4), "edge_class holds 4"),
    ("edge_name out of range", _set("edge_name", 0, 7), "edge_name holds 7"),
    ("rank not a permutation", _dup_rank, "ch_rank is not a permutation"),
    ("rank out of range", _set("ch_rank", 0, 10_000), "ch_rank holds 10000"),
    ("mid out of range", _set("ch_up_f_mid", 0, 10_000), "ch_up_f_mid holds 10000"),
    ("child arc out of range", _set("ch_up_f_down", 0, 10_000), "ch_up_f_down holds 10000"),
    ("second half out of range", _set("ch_up_b_down", 1, 10_000), "ch_up_b_down holds 10000"),
    ("child edge id out of range", _set("ch_up_b_down", 0, -99_999), "ch_up_b_down holds -99999"),
    ("shortened child arcs", _shorten("ch_up_f_down"), "ch_up_f_down has"),
    ("NaN node latitude", _set("node_lat", 0, np.nan), "node coordinates"),
    ("ext index disagrees", _sorted_ext_disagrees, "external-id index"),
    ("snap segment out of range", _set("snap_seg_edge", 0, 99_999), "snap_seg_edge holds 99999"),
    ("snap cell item out of range", _set("snap_cell_items", 0, 99_999), "snap_cell_items holds 99999"),
    ("snap coordinate NaN", _set("snap_x0", 0, np.nan), "snap_x0 holds non-finite"),
    ("head array of the wrong dtype", _retype("fwd_head", np.int64), "fwd_head has dtype int64"),
    ("missing array", _drop("bwd_edge"), "array bwd_edge is missing"),
    ("missing hierarchy array", _drop("ch_up_b_time_ds"), "ch_up_b_time_ds is missing"),
    # the query layout (graph.Hierarchy.query_layout): the nearest-K kernel trusts it
    ("query arc head out of range", _set("ch_q_arc", 0, 10_000), "ch_q_arc (heads) holds 10000"),
    ("query arc head negative", _set("ch_q_arc", 2, -1), "ch_q_arc (heads) holds -1"),
    ("query arc time zero", _set("ch_q_arc", 1, 0), "at least 1 decisecond"),
    ("query node record off its row", _bump("ch_q_node", 1), "ch_q_node does not match"),
    ("query node record past the end", _set("ch_q_node", -1, 10_000), "ch_q_node does not match"),
    ("shortened ch_q_arc", _shorten("ch_q_arc"), "ch_q_arc has"),
    ("query node record of the wrong dtype", _retype("ch_q_node", np.int64), "ch_q_node has dtype"),
]


def _write_corrupt(path: Path, members: tuple[Arrays, dict],
                   corrupt: Callable[[Arrays], None]) -> Path:
    arrays = {k: v.copy() for k, v in members[0].items()}
    corrupt(arrays)
    return write_graph_file(path, arrays, members[1])


@pytest.mark.parametrize(("corrupt", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_corruption_is_one_clear_error(tmp_path, members, corrupt, words) -> None:
    path = _write_corrupt(tmp_path / "bad.cadgraph", members, corrupt)
    with pytest.raises(GraphFileError) as err:
        RoadGraph.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and words in msg, msg
    assert "\n" not in msg
    assert err.value.path == str(path)


def test_the_uncorrupted_members_load(tmp_path, members) -> None:
    """The control: the same writer with nothing changed gives a file that loads and answers."""
    g = RoadGraph.load(_write_corrupt(tmp_path / "ok.cadgraph", members, lambda a: None))
    assert g.n_nodes == 16 and g.hierarchy is not None and g.snap_index is not None


def test_crash_prone_files_fail_cleanly_in_a_subprocess(tmp_path, members) -> None:
    """Out-of-range hierarchy heads and shortened indices used to crash the process (a
    segmentation fault) or answer wrongly once a query touched them. Load and query them in a
    child process, so a crash fails this test instead of killing pytest."""
    crashy = [c for c in CASES if c[0] in ("ch_up_f_head out of range", "ch_up_b_head negative",
                                           "fwd_head out of range", "shortened ch_up_b_indptr",
                                           "negative shortcut time", "mid out of range",
                                           "child arc out of range",
                                           "query arc head out of range",
                                           "query node record past the end")]
    files = [str(_write_corrupt(tmp_path / f"bad{i}.cadgraph", members, c[1]))
             for i, c in enumerate(crashy)]
    script = textwrap.dedent("""
        import json, sys
        from routing import GraphFileError, RoutingService
        out = []
        for path in sys.argv[1:]:
            try:
                svc = RoutingService.from_file(path)
            except GraphFileError as exc:
                out.append(str(exc))
                continue
            svc.upsert_unit("E1", node=0)
            for n in (1, 12, 33):
                svc.nearest_units(node=n, k=1)
                svc.route("E1", node=n)
            out.append("answered")
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True,
                          timeout=240, cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, f"child exited {proc.returncode}: {proc.stderr[-2000:]}"
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(errors) == len(crashy)
    for (_, _, words), path, msg in zip(crashy, files, errors, strict=True):
        assert msg.startswith(f"{path}: ") and words in msg, msg


def test_checksum_mismatch_names_the_array(tmp_path) -> None:
    path = small_graph().save(tmp_path / "g.cadgraph")
    header = json.loads(path.read_bytes()[24:24 + int.from_bytes(path.read_bytes()[16:24], "little")])
    spec = header["arrays"]["edge_time_ds"]
    data_start = -(-(24 + int.from_bytes(path.read_bytes()[16:24], "little")) // 64) * 64
    raw = bytearray(path.read_bytes())
    at = data_start + spec["offset"]
    # a plausible edit: one travel time 5 s shorter, still positive
    old = int.from_bytes(raw[at:at + 4], "little", signed=True)
    raw[at:at + 4] = (old - 1).to_bytes(4, "little", signed=True)
    path.write_bytes(bytes(raw))
    with pytest.raises(GraphFileError, match=r"array edge_time_ds fails its checksum"):
        RoadGraph.load(path)
    # skipping the checksum (a caller's explicit choice) loads the plausible edit
    assert int(RoadGraph.load(path, verify_checksum=False).edge_time_ds[0]) == old - 1


def test_truncated_file_and_unknown_version(tmp_path) -> None:
    path = small_graph().save(tmp_path / "g.cadgraph")
    data = path.read_bytes()
    cut = tmp_path / "cut.cadgraph"
    cut.write_bytes(data[: len(data) - 200])
    with pytest.raises(GraphFileError, match=r"runs past the end of the file \(truncated\)"):
        RoadGraph.load(cut)
    garbage = tmp_path / "garbage.cadgraph"
    garbage.write_bytes(data[:16] + (10**12).to_bytes(8, "little") + b"{")
    with pytest.raises(GraphFileError, match="header length"):
        RoadGraph.load(garbage)
    arrays, meta = small_graph().file_members()
    future = write_graph_file(tmp_path / "future.cadgraph", arrays, meta)
    raw = future.read_bytes().replace(b'"format_version": 4', b'"format_version": 9')
    future.write_bytes(raw)
    with pytest.raises(GraphFileError, match=r"graph format 9, expected 4; rebuild with `cad graph build`"):
        RoadGraph.load(future)
    with pytest.raises(GraphFileError, match="cannot read"):
        RoadGraph.load(tmp_path / "absent.cadgraph")
    not_graph = tmp_path / "notes.txt"
    not_graph.write_text("hello")
    with pytest.raises(GraphFileError, match="not a readable graph file"):
        RoadGraph.load(not_graph)


def test_version_2_files_load_with_a_warning_and_are_still_checked(tmp_path) -> None:
    """Version 2 (no checksums) is accepted with a GraphFormatWarning; its arrays are
    validated like any file's."""
    arrays, meta = small_graph().file_members()
    v2 = write_graph_file(tmp_path / "v2.cadgraph", arrays, meta)
    v2.write_bytes(v2.read_bytes().replace(b'"format_version": 4', b'"format_version": 2'))
    with pytest.warns(GraphFormatWarning, match="rebuild with `cad graph build`"):
        g = RoadGraph.load(v2)
    assert g.n_nodes == 16
    bad = {k: np.array(v) for k, v in arrays.items()}
    bad["edge_time_ds"][0] = -50
    v2bad = write_graph_file(tmp_path / "v2bad.cadgraph", bad, meta)
    v2bad.write_bytes(v2bad.read_bytes().replace(b'"format_version": 4', b'"format_version": 2'))
    with pytest.warns(GraphFormatWarning), pytest.raises(GraphFileError, match="edge_time_ds holds -50"):
        RoadGraph.load(v2bad)


def test_graph_info_prints_one_line_not_a_traceback(tmp_path, members) -> None:
    bad = _write_corrupt(tmp_path / "bad.cadgraph", members, _set("ch_up_f_head", 0, 10_000))
    good = small_graph().save(tmp_path / "good.cadgraph")
    outs = {}
    for path in (bad, good, tmp_path / "absent.cadgraph"):
        outs[path.name] = subprocess.run([sys.executable, "-m", "cad", "graph", "info", str(path)],
                                         capture_output=True, text=True, timeout=240, cwd=REPO_ROOT,
                                         check=False)
    r = outs["bad.cadgraph"]
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip().splitlines() == [
        f"error: {bad}: array ch_up_f_head holds 10000, outside [0, 16)"]
    absent = outs["absent.cadgraph"]
    assert absent.returncode == 1 and "Traceback" not in absent.stderr
    assert absent.stderr.strip().startswith(f"error: {tmp_path / 'absent.cadgraph'}: cannot read")
    ok = outs["good.cadgraph"]
    assert ok.returncode == 0, ok.stderr
    assert "16 nodes" in ok.stderr


def test_version_3_files_route_by_middle_nodes(tmp_path) -> None:
    """A version-3 file (no child arcs) loads without a warning and answers routes by its
    middle nodes: the same ETAs and edges as the child arcs give."""
    import warnings

    from routing import RoutingService

    arrays, meta = small_graph().file_members()
    assert "ch_up_f_down" in arrays and "ch_up_b_down" in arrays
    v4 = write_graph_file(tmp_path / "v4.cadgraph", arrays, meta)
    v3_arrays = {k: v for k, v in arrays.items() if not k.endswith("_down")}
    v3 = write_graph_file(tmp_path / "v3.cadgraph", v3_arrays, meta)
    v3.write_bytes(v3.read_bytes().replace(b'"format_version": 4', b'"format_version": 3'))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = RoadGraph.load(v3)
    assert old.hierarchy is not None and not old.hierarchy.has_child_arcs
    new = RoadGraph.load(v4)
    assert new.hierarchy is not None and new.hierarchy.has_child_arcs
    svcs = [RoutingService(g) for g in (old, new)]
    for svc in svcs:
        for i, n in enumerate((0, 5, 11)):
            svc.upsert_unit(f"E{i}", node=int(old.node_ext_id[n]))
    for i in range(3):
        for n in range(16):
            ext = int(old.node_ext_id[n])
            a, b = (svc.route(f"E{i}", node=ext) for svc in svcs)
            assert a.eta_s == b.eta_s and a.coords_lonlat == b.coords_lonlat


def _stamped(tmp_path, monkeypatch) -> Path:
    """A graph file old enough to be stamped, and a stamp directory of its own."""
    import time

    import routing.graph as graph_mod

    monkeypatch.setenv("CAD_GRAPH_STAMP_DIR", str(tmp_path / "stamps"))
    monkeypatch.setattr(graph_mod, "_STAMP_MIN_AGE_S", 0.0)
    path = small_graph().save(tmp_path / "g.cadgraph")
    time.sleep(0.05)  # later writes get other timestamps than the file's first ones
    return path


def test_a_checked_file_is_stamped_and_not_checked_again(tmp_path, monkeypatch) -> None:
    import routing.graph as graph_mod

    path = _stamped(tmp_path, monkeypatch)
    calls: list[int] = []
    real_check = graph_mod.check_members

    def counting_check(*args: object, **kwargs: object) -> None:
        calls.append(1)
        real_check(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(graph_mod, "check_members", counting_check)
    RoadGraph.load(path)
    assert calls == [1] and len(list((tmp_path / "stamps").iterdir())) == 1
    g = RoadGraph.load(path)  # the stamp holds: no structural check, no CRC
    assert calls == [1] and g.n_nodes == 16
    RoadGraph.load(path, verify_checksum=False)
    assert calls == [1]


def test_a_stamped_file_changed_in_place_is_checked_again(tmp_path, monkeypatch) -> None:
    """The stamp names the file's identity (inode, size, mtime, ctime, header): a byte
    changed in place after the stamp was written is caught by the checksum again."""
    path = _stamped(tmp_path, monkeypatch)
    RoadGraph.load(path)
    assert len(list((tmp_path / "stamps").iterdir())) == 1
    header_len = int.from_bytes(path.read_bytes()[16:24], "little")
    header = json.loads(path.read_bytes()[24:24 + header_len])
    at = -(-(24 + header_len) // 64) * 64 + header["arrays"]["ch_up_f_down"]["offset"]
    with open(path, "r+b") as fh:  # in place: same inode, same size
        fh.seek(at)
        old = int.from_bytes(fh.read(4), "little", signed=True)
        fh.seek(at)
        fh.write((old + 1).to_bytes(4, "little", signed=True))
    with pytest.raises(GraphFileError, match="array ch_up_f_down fails its checksum"):
        RoadGraph.load(path)


def test_a_fresh_file_gets_no_stamp(tmp_path, monkeypatch) -> None:
    """Written less than _STAMP_MIN_AGE_S ago: a write in the same clock tick could keep
    its timestamps, so it is checked in full at every load until it is older."""
    monkeypatch.setenv("CAD_GRAPH_STAMP_DIR", str(tmp_path / "stamps"))
    path = small_graph().save(tmp_path / "g.cadgraph")
    RoadGraph.load(path)
    assert not (tmp_path / "stamps").exists()
    monkeypatch.setenv("CAD_GRAPH_STAMP_DIR", "off")
    RoadGraph.load(path)


def test_query_layout_round_trip_and_files_without_it(tmp_path, members) -> None:
    """Built graphs carry the query layout; loading maps it from the file as written. A file
    without it (written before it existed) loads, derives the same layout and answers the
    same."""
    from routing import RoutingService
    from routing.graph import query_layout

    g = RoadGraph.load(_write_corrupt(tmp_path / "ok.cadgraph", members, lambda a: None))
    h = g.hierarchy
    assert h is not None and h.q_node is not None and h.q_arc is not None
    want = query_layout(h.up_f_indptr, h.up_f_head, h.up_f_time_ds, h.up_b_indptr, h.up_b_head,
                        h.up_b_time_ds)
    assert np.array_equal(h.q_node, want[0]) and np.array_equal(h.q_arc, want[1])
    assert np.array_equal(h.q_arc, members[0]["ch_q_arc"])

    def drop_layout(a: Arrays) -> None:
        del a["ch_q_node"], a["ch_q_arc"]

    old = RoadGraph.load(_write_corrupt(tmp_path / "old.cadgraph", members, drop_layout))
    assert old.hierarchy is not None and old.hierarchy.q_node is None
    answers = []
    for graph in (g, old):
        svc = RoutingService(graph)
        for i, node in enumerate((0, 13, 33, 30)):
            svc.upsert_unit(f"E{i}", node=node)
        answers.append([[(u.unit_id, u.eta_s, u.distance_m) for u in
                         svc.nearest_units(node=n, k=3).units] for n in (1, 12, 23, 32)])
    assert answers[0] == answers[1]
    assert old.hierarchy.q_node is not None and np.array_equal(old.hierarchy.q_arc, h.q_arc)
