"""Test helpers shared across the suite: a real app on a real port, shared data lookup."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI

from cad.app import create_app, runtime_of
from cad.security.runtime import SecurityRuntime
from cad.security.state import SecurityState
from cad.settings import REPO_ROOT, Settings
from cad.wiring import Runtime
from ws_gateway.gateway import Gateway

if TYPE_CHECKING:
    from tests.auth import Api


@dataclass
class RunningApp:
    base_url: str
    app: FastAPI
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool

    @property
    def gateway(self) -> Gateway:
        gw = self.runtime.gateway
        assert gw is not None, "the gateway starts with the app"
        return gw

    @property
    def security_state(self) -> SecurityState:
        return self.runtime.security

    @property
    def security(self) -> SecurityRuntime:
        rt = self.runtime.security.runtime
        assert rt is not None, "security starts with the app"
        return rt


@contextlib.asynccontextmanager
async def running_app(settings: Settings, *, extra_routers: Iterable[APIRouter] = (),
                      policy_overrides: Mapping[tuple[str, str], Any] | None = None,
                      ) -> AsyncIterator[RunningApp]:
    """Serve the real app with uvicorn on a free loopback port for the duration of the block.
    ``policy_overrides``: access rules for the routes of ``extra_routers`` (cad.security.policy)."""
    app = create_app(settings, extra_routers=extra_routers, policy_overrides=policy_overrides)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False,
                            lifespan="on", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    started = asyncio.Event()
    original_startup = server.startup

    async def startup(sockets: list | None = None) -> None:
        await original_startup(sockets=sockets)
        started.set()

    server.startup = startup  # type: ignore[method-assign]  # hook uvicorn's start-up signal
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED, timeout=60)
    if waiter not in done:
        waiter.cancel()
        if task.done():
            task.result()  # re-raise the start-up error
        raise RuntimeError("app did not start (lifespan start-up failed; see log)")
    if server.should_exit:
        await task
        raise RuntimeError("app start-up failed (see log)")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningApp(f"http://127.0.0.1:{port}", app, settings)
    finally:
        server.should_exit = True
        await task


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """The settings of an app under test: JSON logs, a pool of 20, no timer sweep; ``overrides``
    win (``data_dir`` included, ``tmp_path`` by default)."""
    base: dict[str, Any] = {"database_url": database_url, "data_dir": tmp_path, "log_format": "json",
                            "db_pool_min": 1, "db_pool_max": 20, "timer_sweep_interval_s": 0}
    base.update(overrides)
    return Settings(**base)


class Apps:
    """The running apps of one test (the ``apps`` fixture): each started on the test's database
    with :func:`make_settings`, and the role clients on them; all closed, clients first, then
    apps in reverse order, when the test ends. An app fixture is then one line::

        @pytest.fixture
        async def sf_app(apps: Apps, sf_graph_path: Path) -> RunningApp:
            return await apps.start(graph_path=sf_graph_path)
    """

    def __init__(self, database_url: str, tmp_path: Path, stack: contextlib.AsyncExitStack) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self._stack = stack

    async def start(self, **overrides: Any) -> RunningApp:
        """An app serving until the test ends (``overrides``: Settings fields)."""
        settings = make_settings(self.database_url, self.tmp_path, **overrides)
        return await self._stack.enter_async_context(running_app(settings))

    def api(self, running: RunningApp) -> Api:
        """Role clients (``await api.as_("dispatcher")``) on ``running``, closed at the end."""
        from tests.auth import Api

        api = Api(running)
        self._stack.push_async_callback(api.close)
        return api


@contextlib.contextmanager
def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A directory ``name`` shared by every pytest-xdist worker of this run (the run's base temp
    dir; without xdist this process's own), held under an exclusive lock for the block: the
    first worker to come makes what belongs in it, the others wait and find it made."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/popen-gwK -> pytest-N, this run's alone
    path = base / name
    path.mkdir(exist_ok=True)
    with open(base / f"{name}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield path


def shared_data_dir() -> Path:
    return Path(os.environ.get("CAD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(relative: str) -> Path:
    """Path of a file in the shared data folder; skip (or fail under CAD_REQUIRE_SHARED_DATA=1)."""
    path = shared_data_dir() / relative
    if not path.exists():
        msg = (f"shared data file {path} is absent (set CAD_SHARED_DATA to the folder holding "
               f"road/ and calls/)")
        if os.environ.get("CAD_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(msg + "; CAD_REQUIRE_SHARED_DATA=1 makes this a failure")
        pytest.skip(msg)
    return path
