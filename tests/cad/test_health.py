"""Liveness and readiness against a real database that we stop underneath the app."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import httpx
from pydantic import SecretStr

from cad import db
from cad.embedded_pg import EmbeddedPostgres
from cad.settings import REPO_ROOT, Settings
from tests.conftest import make_private_dir
from tests.support import RunningApp, running_app


async def test_healthz_and_readyz(app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        r = await c.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_readyz_is_503_when_the_database_stops(tmp_path: Path) -> None:
    root = make_private_dir("cad-test-ready-")
    pg = EmbeddedPostgres(root)
    try:
        url = pg.start()
        settings = Settings(database_url=url, data_dir=tmp_path, db_pool_min=1, log_format="json",
                            db_app_password=SecretStr(pg.app_password or ""))
        async with running_app(settings) as app, httpx.AsyncClient(base_url=app.base_url) as c:
            assert (await c.get("/readyz")).status_code == 200
            pg.stop()
            r = await c.get("/readyz")
            assert r.status_code == 503
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["reason"] == "database"
            assert "database" in r.json()["detail"]
            assert (await c.get("/healthz")).status_code == 200  # the process is still alive
            pg.start()
            r = await c.get("/readyz")
            # the pool replaces broken connections once the server is back
            if r.status_code != 200:
                r = await c.get("/readyz")
            assert r.status_code == 200
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_readyz_is_503_when_migrations_are_pending(database_url: str, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", mdir)
    settings = Settings(database_url=database_url, data_dir=tmp_path, migrations_dir=mdir,
                        db_pool_min=1, log_format="json")
    async with running_app(settings) as app:
        (mdir / "9999_later.sql").write_text("CREATE TABLE later (x int);")
        async with httpx.AsyncClient(base_url=app.base_url) as c:
            r = await c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["reason"] == "migrations"
            assert r.json()["pending"] == ["9999_later.sql"]
            conn = await db.connect(database_url)
            try:
                await db.migrate(conn, mdir)
            finally:
                await conn.close()
            assert (await c.get("/readyz")).status_code == 200


async def test_app_start_applies_migrations(empty_database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=empty_database_url, data_dir=tmp_path, db_pool_min=1,
                        log_format="json")
    async with running_app(settings) as app, httpx.AsyncClient(base_url=app.base_url) as c:
        assert (await c.get("/readyz")).status_code == 200
    conn = await asyncpg.connect(empty_database_url)
    try:
        n = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert n == len(list((REPO_ROOT / "migrations").glob("*.sql")))
