"""Suite-wide fixtures: one PostgreSQL server per run (CAD_TEST_DATABASE_URL or the embedded
launcher), a migrated template database, and a fresh database per test cloned from it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from cad import db
from cad.embedded_pg import EmbeddedPostgres, with_database
from cad.settings import REPO_ROOT, Settings
from tests.support import Apps, RunningApp, running_app

# Fixtures of the dispatch workflow (road graph, stations, role clients), used by units,
# incidents, dispatch and app-wide tests alike.
pytest_plugins = ("tests.dispatch_fixtures",)

MIGRATIONS = REPO_ROOT / "migrations"


def _with_db(url: str, name: str) -> str:
    return with_database(url, name)


def make_private_dir(prefix: str) -> Path:
    """A temp dir the unprivileged PostgreSQL account can enter (mkdtemp makes 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Fill numba's cache once, before any test (and any xdist worker) starts, outside
    pytest-timeout's per-test limit: on a cold cache compiling every routing kernel takes
    about 3 minutes of CPU on a 2-core machine, more when it is busy, and a fixture doing it
    ran into the 300 s limit of the first test of each worker. Under pytest-xdist only the
    controller does it; the workers' ``routing_kernels_compiled`` then only loads."""
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "routing.warmup"], capture_output=True,
                          text=True, check=False)
    line = (proc.stdout.strip().splitlines() or [""])[-1]
    print(f"routing kernel cache ready in {time.perf_counter() - t0:.1f} s: {line}"
          if proc.returncode == 0 else
          f"routing warm-up child failed (exit {proc.returncode}); the fixture will compile:\n"
          f"{proc.stderr[-2000:]}", file=sys.stderr)


@pytest.fixture(scope="session", autouse=True)
def routing_kernels_compiled() -> None:
    """Every routing kernel in numba's cache (NUMBA_CACHE_DIR, tests/__init__.py) before the
    first test, as after a deployed server's first start: servers started by tests then load
    them in under a second instead of the first one compiling (~40 s on a cold cache) against
    its deadline. Under pytest-xdist each worker runs this: the first compiles (in a child,
    under a file lock), the other waits for it and loads."""
    from routing.warmup import warm_routing_kernels

    report = asyncio.run(warm_routing_kernels())
    # On a cold cache (a fresh CI machine) this is the server's cold start: compiled in a
    # child process, only loaded here.
    assert report.compiled_in_process == 0 and not report.error, report
    # the cache the servers that tests start use too (they inherit the environment)
    assert report.cache_dir == os.environ["NUMBA_CACHE_DIR"], report


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("CAD_TEST_DATABASE_URL")
    if url:
        yield url
        return
    root = make_private_dir("cad-test-pg-")
    embedded = EmbeddedPostgres(root)
    try:
        url = embedded.start()
        # Apps under test log in as cad_app (cad.db.server_url); this cluster asks for its
        # password, which Settings read from the environment as the server's workers do.
        os.environ["CAD_DB_APP_PASSWORD"] = embedded.app_password or ""
        yield url
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(_with_db(url, "postgres"))


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    name = f"cad_tpl_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        admin = await _admin(pg_server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await db.connect(_with_db(pg_server_url, name))
        try:
            await db.migrate(conn, MIGRATIONS)
        finally:
            await conn.close()

    asyncio.run(create())
    yield name

    async def drop() -> None:
        admin = await _admin(pg_server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


async def create_test_database(server_url: str, template: str | None) -> str:
    name = f"cad_t_{uuid.uuid4().hex[:12]}"
    admin = await _admin(server_url)
    try:
        tpl = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{tpl}')
    finally:
        await admin.close()
    return name


async def drop_test_database(server_url: str, name: str) -> None:
    admin = await _admin(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class DatabaseDropper:
    """Drops the tests' databases on a thread of its own, so no test waits for it: a DROP
    DATABASE waits for a checkpoint, 1.7-3.7 s measured on the shared 2-core machine (a
    create from the template takes 0.3 s), and most tests make a database. Drops queued
    together run together and share one checkpoint. At most ``MAX_BACKLOG`` databases wait
    to be dropped (a teardown waits beyond that); the session's end waits for them all and
    fails on any drop that failed."""

    MAX_BACKLOG = 8

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._queue: list[str] = []
        self._busy = 0
        self._errors: list[str] = []
        self._closing = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="test-db-dropper", daemon=True)
        self._thread.start()

    def drop(self, name: str) -> None:
        with self._cv:
            self._cv.wait_for(lambda: len(self._queue) + self._busy < self.MAX_BACKLOG)
            self._queue.append(name)
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                names, self._queue = self._queue, []
                self._busy = len(names)
            results = asyncio.run(self._drop_all(names))
            with self._cv:
                self._errors += [f"{n}: {r!r}" for n, r in zip(names, results, strict=True) if r]
                self._busy = 0
                self._cv.notify_all()

    async def _drop_all(self, names: list[str]) -> list[BaseException | None]:
        return await asyncio.gather(*(drop_test_database(self.server_url, n) for n in names),
                                    return_exceptions=True)

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join()
        assert not self._errors, f"test databases not dropped: {self._errors}"


@pytest.fixture(scope="session")
def database_dropper(pg_server_url: str) -> Iterator[DatabaseDropper]:
    dropper = DatabaseDropper(pg_server_url)
    yield dropper
    dropper.close()


@contextlib.asynccontextmanager
async def _fresh_database(server_url: str, template: str | None,
                          dropper: DatabaseDropper) -> AsyncIterator[str]:
    name = await create_test_database(server_url, template)
    try:
        yield _with_db(server_url, name)
    finally:
        dropper.drop(name)


@pytest.fixture(scope="session")
def clone_database(pg_server_url: str, database_dropper: DatabaseDropper
                   ) -> Callable[[str], contextlib.AbstractAsyncContextManager[str]]:
    """``async with clone_database(template) as url``: a database of its own cloned from
    ``template`` (a module's own template with data every test of it reads, say), dropped in
    the background afterwards."""
    return lambda template: _fresh_database(pg_server_url, template, database_dropper)


@pytest.fixture
async def database_url(pg_server_url: str, template_db: str,
                       database_dropper: DatabaseDropper) -> AsyncIterator[str]:
    """A fresh, fully migrated database for this test alone."""
    async with _fresh_database(pg_server_url, template_db, database_dropper) as url:
        yield url


@pytest.fixture
async def empty_database_url(pg_server_url: str,
                             database_dropper: DatabaseDropper) -> AsyncIterator[str]:
    """A fresh database with no schema at all."""
    async with _fresh_database(pg_server_url, None, database_dropper) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database_url, min_size=1, max_size=20)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                    db_pool_min=1, db_pool_max=10)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[RunningApp]:
    async with running_app(settings) as running:
        yield running


@pytest.fixture
async def apps(database_url: str, tmp_path: Path) -> AsyncIterator[Apps]:
    """Start apps on this test's database (``await apps.start(**settings)``) and role clients on
    them (``apps.api(app)``); everything is stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:
        yield Apps(database_url, tmp_path, stack)


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis (CAD_TEST_REDIS_URL, default redis://127.0.0.1:6379/0); skips when there
    is none, fails instead under CAD_REQUIRE_REDIS=1."""
    import redis

    url = os.environ.get("CAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        msg = f"Redis at {url} is not reachable ({type(exc).__name__})"
        if os.environ.get("CAD_REQUIRE_REDIS") == "1":
            pytest.fail(msg + "; CAD_REQUIRE_REDIS=1 makes this a failure")
        pytest.skip(msg)
    return url


@pytest.fixture
async def auth_headers(app: RunningApp):
    """Factory: ``await auth_headers("dispatcher")`` -> {"Authorization": "Bearer ..."} for a
    new user of that role on the ``app`` fixture (field_unit: ``unit_id=...``)."""
    from tests.auth import AuthHeaders

    return AuthHeaders(app)


# --- the fast tier: service functions on one connection, every test rolled back ----------------
class TxPool:
    """A stand-in for the connection pool that hands out one connection inside an open
    transaction: the services' own transactions become savepoints of it, and the test's
    rollback undoes everything they wrote. Service-level tests run in milliseconds this way,
    against the same PostgreSQL, schema and triggers as the end-to-end tier."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn

    async def fetchval(self, *args: object) -> object:
        return await self.conn.fetchval(*args)

    async def fetch(self, *args: object) -> list[asyncpg.Record]:
        return await self.conn.fetch(*args)

    async def fetchrow(self, *args: object) -> asyncpg.Record | None:
        return await self.conn.fetchrow(*args)

    async def execute(self, *args: object) -> str:
        return await self.conn.execute(*args)


@pytest.fixture(scope="session")
def fast_database_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """One migrated database for the whole fast tier (tests roll back, so it stays empty)."""
    name = asyncio.run(create_test_database(pg_server_url, template_db))
    yield _with_db(pg_server_url, name)
    asyncio.run(drop_test_database(pg_server_url, name))


@pytest.fixture
async def tx_pool(fast_database_url: str) -> AsyncIterator[TxPool]:
    conn = await db.connect(fast_database_url)
    tx = conn.transaction(isolation="read_committed")
    await tx.start()
    try:
        yield TxPool(conn)
    finally:
        await tx.rollback()
        await conn.close()
