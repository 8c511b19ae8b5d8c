"""A real server in its own process (``uvicorn cad.app:create_app --factory``), for the tests
that kill it (SIGKILL), restart it on the same port, or run several workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cad.settings import REPO_ROOT

TEST_JWT_SECRET = "ws-gateway-tests-" + "s" * 32  # subprocess servers sign with this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``uvicorn cad.app:create_app --factory`` in its own process, configured by CAD_* env."""

    def __init__(self, database_url: str, data_dir: Path, *, workers: int = 1,
                 redis_url: str | None = None, port: int | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.data_dir = data_dir
        self.env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_DATA_DIR": str(data_dir),
                    "CAD_JWT_SECRET": TEST_JWT_SECRET, "CAD_LOG_FORMAT": "json",
                    "CAD_LOG_LEVEL": "warning", "CAD_DB_POOL_MIN": "1", "CAD_DB_POOL_MAX": "8",
                    "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
        if redis_url:
            self.env["CAD_REDIS_URL"] = redis_url
        else:
            self.env.pop("CAD_REDIS_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "uvicorn", "cad.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
               "--ws-per-message-deflate", "false", "--no-access-log", "--log-level", "warning"]
        logf = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                r = httpx.get(self.base_url + "/readyz", timeout=1.0)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (with several workers, the workers die with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
