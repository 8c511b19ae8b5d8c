"""`cad serve` with a graph file it cannot use: one line naming the file and the problem, exit
2, before any database or worker starts (not a traceback from each worker's start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cad.settings import REPO_ROOT


def _serve(graph: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAD_GRAPH_PATH": str(graph), "CAD_DATA_DIR": str(tmp_path / "data"),
           # never reached: the graph is checked first
           "CAD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "cad", "serve"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, check=False)


@pytest.mark.parametrize("content", [None, b"not a graph file at all" * 10],
                         ids=["missing", "garbage"])
def test_serve_refuses_an_unusable_graph_in_one_line(tmp_path: Path, content: bytes | None) -> None:
    graph = tmp_path / "broken.cadgraph"
    if content is not None:
        graph.write_bytes(content)
    done = _serve(graph, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cad: CAD_GRAPH_PATH: "), done.stderr
    assert str(graph) in done.stderr.replace("\n", "")
    assert not (tmp_path / "data" / "postgres").exists()  # nothing started
