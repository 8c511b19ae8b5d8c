"""`cad serve` with no configuration: embedded PostgreSQL, clean stops, recovery after kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cad import db
from cad.embedded_pg import EmbeddedPostgres
from cad.uow import RequestContext, unit_of_work
from tests.conftest import make_private_dir

READY_WITHIN_S = 20.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve.log"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres" / "pg"

    def start(self, *command: str, ready_within_s: float = READY_WITHIN_S) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAD_")}
        env.update(CAD_DATA_DIR=str(self.data_dir), CAD_PORT=str(self.port), CAD_LOG_FORMAT="json")
        t0 = time.monotonic()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "cad", *(command or ("serve",))],
                                         env=env, stdout=logf, stderr=subprocess.STDOUT)
        deadline = t0 + ready_within_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"cad serve exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready within {ready_within_s}s: {self.log.read_text()[-2000:]}")

    def database_url(self) -> str:
        creds = json.loads((self.data_dir / "postgres" / "embedded-pg.json").read_text())
        port = (self.pgdata / "postmaster.pid").read_text().splitlines()[3]
        return f"postgresql://{creds['user']}:{creds['password']}@127.0.0.1:{port}/{creds['database']}"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except FileNotFoundError:
            return None

    def wait_postmaster_gone(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (self.pgdata / "postmaster.pid").exists():
            assert time.monotonic() < deadline, "the embedded PostgreSQL did not stop"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


@pytest.fixture
def served() -> Iterator[Served]:
    root = make_private_dir("cad-test-serve-")
    s = Served(root)
    try:
        yield s
    finally:
        s.stop()
        pid = s.postmaster_pid()
        if pid:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(root, ignore_errors=True)


async def _write_events(url: str, n: int) -> None:
    pool = await db.create_pool(url, min_size=1, max_size=4)
    try:
        for i in range(n):
            async with unit_of_work(pool, RequestContext.system("test")) as uow:
                uow.emit("test.recorded", aggregate=("test", i), data={"i": i})
    finally:
        await pool.close()


async def _count_events(url: str) -> int:
    conn = await db.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event_log WHERE type = 'test.recorded'"))
    finally:
        await conn.close()


async def test_zero_config_serve_is_ready_and_stops_cleanly(served: Served) -> None:
    took = served.start()
    assert took < READY_WITHIN_S
    out = served.log.read_text()
    assert f"Data directory: {served.pgdata}" in out.replace("\n", "")
    assert f"Serving on http://127.0.0.1:{served.port}" in out
    creds = json.loads((served.data_dir / "postgres" / "embedded-pg.json").read_text())
    assert "cad:***@" in out and creds["password"] not in out
    # The server's pool is the role that owns nothing (0007_db_roles.sql), its password
    # made by the launcher and never printed.
    started = [json.loads(line) for line in out.splitlines() if '"app_started"' in line]
    assert [(e["role"], e["database"].split("@")[0]) for e in started] == [
        ("cad_app", "postgresql://cad_app:***")]
    assert creds["app_password"] not in out
    served.stop()
    assert served.proc is not None and served.proc.returncode in (0, 128 + signal.SIGTERM)
    assert not (served.pgdata / "postmaster.pid").exists()
    assert "database system is shut down" in (served.data_dir / "postgres" / "postgres.log").read_text()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_zero_config_demo_serves_and_signs_in(served: Served, stop_signal: int) -> None:
    """`cad demo` on the embedded cluster, as the README's first minutes run it: the server's
    pool signs in as cad_app with the password only the cluster knows (the demo once
    started its app without it and failed with "password authentication failed")."""
    from cad import demo
    from tests.support import require_shared

    shared = require_shared(demo.STATIONS_SOURCE).parents[1]
    served.start("demo", "--fleet", "0", "--shared-data", str(shared), ready_within_s=180.0)
    deadline = time.monotonic() + 120
    while "Ctrl+C stops the demo." not in (out := served.log.read_text()):  # sample data loaded
        assert served.proc is not None and served.proc.poll() is None, out[-2000:]
        assert time.monotonic() < deadline, out[-2000:]
        time.sleep(0.2)
    password = next(line.split()[-1] for line in out.splitlines()
                    if line.split()[:2] == ["dispatcher", "demo-dispatcher"])
    r = httpx.post(f"http://127.0.0.1:{served.port}/api/v1/auth/login",
                   json={"username": "demo-dispatcher", "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    assert served.proc is not None
    served.proc.send_signal(stop_signal)  # Ctrl+C, as the demo says, or a service manager's stop
    code = served.proc.wait(timeout=60)
    # an exit of the demo's own (its clean-up stops the cluster), not a death by the signal
    assert code in (0, 128 + stop_signal), code
    served.wait_postmaster_gone()


async def test_kill_9_of_the_server_keeps_every_committed_row(served: Served) -> None:
    served.start()
    url = served.database_url()
    await _write_events(url, 50)
    assert served.proc is not None
    served.proc.kill()  # SIGKILL: no clean-up code runs in cad
    served.proc.wait()
    served.wait_postmaster_gone()  # the parent-death signal shut PostgreSQL down cleanly
    served.start()
    assert await _count_events(served.database_url()) == 50


async def test_kill_9_of_server_and_database_recovers(served: Served) -> None:
    served.start()
    await _write_events(served.database_url(), 30)
    pm = served.postmaster_pid()
    assert pm is not None and served.proc is not None
    os.kill(pm, signal.SIGKILL)  # a crash of the database itself: recovery on next start
    served.proc.kill()
    served.proc.wait()
    assert (served.pgdata / "postmaster.pid").exists()  # stale lock file left behind
    served.start()
    assert await _count_events(served.database_url()) == 30
    assert "database system was interrupted" in (
        served.data_dir / "postgres" / "postgres.log").read_text()


def test_stale_pid_file_owned_by_another_process_is_replaced() -> None:
    root = make_private_dir("cad-test-stale-")
    pg = EmbeddedPostgres(root)
    try:
        pg.start()
        pg.stop()
        # A pid file naming a live process that is not a postmaster (the pid was reused).
        pidfile = pg.pgdata / "postmaster.pid"
        pidfile.write_text(f"{os.getpid()}\n{pg.pgdata}\n0\n5432\n\n127.0.0.1\n0 0\nready\n")
        pg.start()
        assert int(pidfile.read_text().splitlines()[0]) != os.getpid()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_data_dir_the_database_account_cannot_enter_is_explained(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root drops to an unprivileged account")
    from cad.embedded_pg import EmbeddedUnavailable

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(EmbeddedUnavailable, match="cannot enter"):
        EmbeddedPostgres(locked / "cad").start()


def test_several_workers_without_redis_are_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAD_")}
    env |= {"CAD_DATA_DIR": str(tmp_path), "CAD_LOG_FORMAT": "json"}
    out = subprocess.run([sys.executable, "-m", "cad", "serve", "--workers", "2"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "CAD_REDIS_URL" in " ".join(out.stderr.split())
    assert not (tmp_path / "postgres").exists()  # refused before starting anything
