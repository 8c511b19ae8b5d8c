"""`cad audit verify --json` piped to another program is one valid JSON document, whatever the
terminal width (it was folded at the width, 80 columns when piped)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from cad.settings import REPO_ROOT
from cad.uow import RequestContext, audit_now


def _verify_json(database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_DATA_DIR": str(data_dir),
           "CAD_LOG_FORMAT": "json", "COLUMNS": "40"}
    return subprocess.run([sys.executable, "-m", "cad", "audit", "verify", "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120,
                          check=False)


async def test_verify_json_is_valid_json_when_piped(database_url: str, pool: asyncpg.Pool,
                                                    tmp_path: Path) -> None:
    ctx = RequestContext(actor="tester-with-a-rather-long-name", request_id="r" * 40)
    for i in range(3):
        await audit_now(pool, ctx, "test.recorded", target=f"thing:{i}", details={"i": i})
    done = await asyncio.to_thread(_verify_json, database_url, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["entries"] == 3
    assert len(result["head_hash"]) == 64
    assert done.stdout.count("\n") == 1  # one line, for line-oriented tools
