"""Migrations: ordered, recorded with checksums, edited ones refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cad import db
from cad.settings import REPO_ROOT

MIGRATIONS = REPO_ROOT / "migrations"


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, target)
    return target


async def test_applies_every_migration_to_an_empty_database(empty_database_url: str) -> None:
    conn = await db.connect(empty_database_url)
    try:
        applied = await db.migrate(conn, MIGRATIONS)
        expected = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
        assert applied == expected
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        assert [r["name"] for r in rows] == expected
        for r in rows:
            assert r["checksum"] == db.Migration(0, "", (MIGRATIONS / r["name"]).read_text()).checksum
        assert await conn.fetchval("SELECT to_regclass('event_log') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('audit_log') IS NOT NULL")
        assert await db.migrate(conn, MIGRATIONS) == []  # idempotent
        assert await db.pending_migrations(conn, MIGRATIONS) == []
    finally:
        await conn.close()


async def test_new_migration_is_applied_in_order(empty_database_url: str, tmp_path: Path) -> None:
    mdir = _copy_migrations(tmp_path)
    conn = await db.connect(empty_database_url)
    try:
        await db.migrate(conn, mdir)
        (mdir / "9998_second.sql").write_text("CREATE TABLE second_t (x int);")
        (mdir / "9997_first.sql").write_text("CREATE TABLE first_t (x int);")
        assert await db.pending_migrations(conn, mdir) == ["9997_first.sql", "9998_second.sql"]
        assert await db.migrate(conn, mdir) == ["9997_first.sql", "9998_second.sql"]
    finally:
        await conn.close()


async def test_edited_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    mdir = _copy_migrations(tmp_path)
    conn = await db.connect(empty_database_url)
    try:
        await db.migrate(conn, mdir)
        first = min(mdir.glob("*.sql"))
        first.write_text(first.read_text() + "\n-- sneaky edit\n")
        with pytest.raises(db.MigrationError, match=f"{first.name} was edited after it was applied"):
            await db.migrate(conn, mdir)
        with pytest.raises(db.MigrationError, match="edited"):
            await db.pending_migrations(conn, mdir)
    finally:
        await conn.close()


async def test_unknown_applied_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    mdir = _copy_migrations(tmp_path)
    conn = await db.connect(empty_database_url)
    try:
        (mdir / "9999_later.sql").write_text("SELECT 1;")
        await db.migrate(conn, mdir)
        (mdir / "9999_later.sql").unlink()
        with pytest.raises(db.MigrationError, match="does not know"):
            await db.migrate(conn, mdir)
    finally:
        await conn.close()


async def test_failed_migration_is_not_recorded(empty_database_url: str, tmp_path: Path) -> None:
    mdir = _copy_migrations(tmp_path)
    (mdir / "9999_broken.sql").write_text("CREATE TABLE half (x int); SELECT no_such_function();")
    conn = await db.connect(empty_database_url)
    try:
        with pytest.raises(Exception, match="no_such_function"):
            await db.migrate(conn, mdir)
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await db.pending_migrations(conn, mdir) == ["9999_broken.sql"]
    finally:
        await conn.close()


def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_Init.sql").write_text("SELECT 1;")
    with pytest.raises(db.MigrationError, match="NNNN_lowercase_name"):
        db.load_migrations(tmp_path)


async def test_a_command_on_a_database_behind_this_version_says_what_to_run(
        empty_database_url: str, tmp_path: Path) -> None:
    """An upgrade whose `cad db migrate` has not run yet: a command working on the database
    (here `cad db prune`) stops before doing anything, naming the migrations missing and the
    command that applies them, instead of failing midway on a missing column (it did:
    UndefinedColumnError on contact_erased_at, 2026-11-30)."""
    import asyncio
    import os
    import sys

    mdir = _copy_migrations(tmp_path)
    newest = max(mdir.glob("*.sql"))
    newest.unlink()
    conn = await db.connect(empty_database_url)
    try:
        await db.migrate(conn, mdir)
    finally:
        await conn.close()
    env = {**os.environ, "CAD_DATABASE_URL": empty_database_url, "CAD_LOG_FORMAT": "json"}
    env.pop("CAD_MIGRATIONS_DIR", None)

    async def prune() -> tuple[int | None, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cad", "db", "prune", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, errs = await asyncio.wait_for(proc.communicate(), timeout=120)
        return proc.returncode, out, errs

    code, stdout, stderr = await prune()
    err = " ".join(stderr.decode().split())
    assert code == 3, err
    assert newest.name in err and "run `cad db migrate` first" in err
    assert "Traceback" not in err and b"pruned" not in stdout
    conn = await db.connect(empty_database_url)
    try:  # and once migrated, the same command runs
        assert await db.migrate(conn) == [newest.name]
    finally:
        await conn.close()
    code, stdout, stderr = await prune()
    assert code == 0, stderr.decode()
    assert b"pruned" in stdout
