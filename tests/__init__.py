"""The test suite. Imported before any conftest, hence before anything imports numba, which
reads ``NUMBA_CACHE_DIR`` once, when it is imported: set here, the pytest process, the
warm-up child it starts and every server a test starts (inheriting the environment) share
one numba kernel cache for the run. Set later (it once was, in tests/conftest.py after
``tests.support`` had imported numba), the pytest process compiled beside the sources while
the servers and children compiled again, cold, into this directory."""

import os
import tempfile
from pathlib import Path

from cad.settings import routing_sources_digest

# One numba kernel cache for this run and every server it starts: `cad serve` would otherwise
# compile the routing kernels into each test's throw-away data directory (~40 s a server).
# Its subdirectory is named by the routing sources (cad.settings.routing_sources_digest), so a
# kernel compiled against another version of a module it calls is never loaded.
os.environ.setdefault("NUMBA_CACHE_DIR",
                      str(Path(tempfile.gettempdir()) / f"cad-test-numba-cache-{os.getuid()}"
                          / routing_sources_digest()))
# Stamps of fully checked graph files (routing.graph, "File format" in docs/routing.md) go to
# a directory of the test run, not the user's ~/.cache.
os.environ.setdefault("CAD_GRAPH_STAMP_DIR",
                      str(Path(tempfile.gettempdir()) / f"cad-test-graph-stamps-{os.getuid()}"))
