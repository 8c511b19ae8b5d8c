"""Settings come from CAD_* variables when the factory runs, never at import; logs are JSON
lines off a TTY and carry the request id."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from pydantic import ValidationError

from cad.settings import Settings
from tests.support import RunningApp


def test_settings_read_cad_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAD_PORT", "9123")
    monkeypatch.setenv("CAD_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("PORT", "1")  # unprefixed variables are not ours
    s = Settings()
    assert s.port == 9123 and s.max_body_bytes == 2048


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAD_PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_nothing_is_configured_at_import() -> None:
    # With a broken environment, importing every package must still succeed: settings,
    # pools and loggers are made by the factory, not at import time.
    env = {**os.environ, "CAD_PORT": "not-a-port", "CAD_DATABASE_URL": "postgresql://nowhere:1/x"}
    code = "import cad.app, cad.cli, cad.db, cad.uow, cad.embedded_pg; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_json_log_lines_off_a_tty() -> None:
    code = ("from cad.logging import configure_logging, get_logger\n"
            "configure_logging(level='info', fmt='auto')\n"
            "get_logger('t').info('unit_moved', unit_id='E1', eta_s=12.5)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    line = json.loads(out.stderr.strip().splitlines()[-1])
    assert line["event"] == "unit_moved" and line["unit_id"] == "E1" and line["eta_s"] == 12.5
    assert line["level"] == "info" and line["timestamp"].endswith("Z")


async def test_access_log_carries_the_request_id(app: RunningApp,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.get("/healthz", headers={"x-request-id": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("event") == "http_request" and x.get("path") == "/healthz"]
    assert access and access[-1]["request_id"] == "trace-42" and access[-1]["status"] == 200
