"""The installable package: migrations shipped as package data and found through
importlib.resources (never through the checkout), py.typed in every package, and a wheel
that holds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from cad import db
from cad.settings import REPO_ROOT, Settings

MIGRATIONS = REPO_ROOT / "migrations"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _packages() -> list[str]:
    """The top-level packages the wheel ships (pyproject's find patterns, "cad*" -> cad)."""
    return [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]


def test_shipped_migrations_are_the_top_level_folder() -> None:
    shipped = db.shipped_migrations()
    assert shipped.is_dir()
    on_disk = {p.name: p.read_text() for p in MIGRATIONS.glob("*.sql")}
    assert on_disk, "no migrations in the checkout"
    assert {e.name: e.read_text() for e in shipped.iterdir() if e.name.endswith(".sql")} == on_disk
    assert db.load_migrations() == db.load_migrations(MIGRATIONS)
    # cad/migrations is a link into the top-level folder, not a second copy that could drift
    assert (REPO_ROOT / "cad" / "migrations").resolve() == MIGRATIONS.resolve()


async def test_default_settings_apply_the_shipped_migrations(empty_database_url: str,
                                                             tmp_path: Path) -> None:
    settings = Settings(database_url=empty_database_url, data_dir=tmp_path)
    assert settings.migrations_dir is None  # = shipped with the package
    conn = await db.connect(empty_database_url)
    try:
        applied = await db.migrate(conn, settings.migrations_dir)
        assert applied == sorted(p.name for p in MIGRATIONS.glob("*.sql"))
        assert await db.pending_migrations(conn) == []
    finally:
        await conn.close()


def test_every_package_has_py_typed_and_ships_it() -> None:
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in _packages():
        assert (REPO_ROOT / package / "py.typed").is_file(), f"{package}/py.typed is missing"
        assert "py.typed" in package_data.get(package, []), f"{package}: py.typed not shipped"


def _source_copy(dest: Path) -> Path:
    """The checkout without build leftovers: a stale build/ would leak deleted modules into
    the wheel, and __pycache__ holds numba caches."""
    shutil.copytree(REPO_ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "*.cadgraph", ".data", ".venv*"))
    return dest


@pytest.mark.slow
def test_wheel_ships_migrations_and_py_typed_and_they_resolve_installed(tmp_path: Path) -> None:
    src = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist),
                            str(src)], check=False, capture_output=True, text=True,
                           timeout=280)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in MIGRATIONS.glob("*.sql"):
            assert zf.read(f"cad/migrations/{path.name}") == path.read_bytes()
        for package in _packages():
            assert f"{package}/py.typed" in names
        # The console's own files (cad.console); its libraries come from their packages.
        console = REPO_ROOT / "cad" / "console" / "static"
        for path in console.iterdir():
            assert zf.read(f"cad/console/static/{path.name}") == path.read_bytes()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "cad = cad.__main__:main" in zf.read(entry_points).decode()
    assert not {n.split("/")[0] for n in names} & {"tests", "benchmarks", "migrations", "docs"}

    # Installed (not editable) into its own directory, imported from elsewhere: the
    # migrations come from the installed package, not from this checkout.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = ("import cad, cad.db as d; print(cad.__file__); "
             "print(','.join(m.name for m in d.load_migrations()))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert Path(out[0]).is_relative_to(site)
    assert out[1].split(",") == sorted(p.name for p in MIGRATIONS.glob("*.sql"))
