"""A running app with a small address file of its own (one invented street, so a generated
house number can be told apart from everything else), publication after 0 s unless a test
asks for the default delay, and helpers that create, close and read back incidents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cad import db
from incidents.geocoding.service import import_addresses
from tests.auth import Api
from tests.support import Apps, RunningApp

STREET = "QUILLFEATHER ST"
# 4801 .. 4899 (odd) on the west side, 4800 .. 4898 on the east: ~9 m apart going north
BLOCK_SOUTH = (37.76000, -122.41000)
STEP_DEG = 0.00008


def address_point(number: int) -> tuple[float, float]:
    lat = BLOCK_SOUTH[0] + (number - 4800) // 2 * STEP_DEG
    lon = BLOCK_SOUTH[1] + (-0.0001 if number % 2 else 0.0001)
    return lat, lon


def write_addresses(path: Path) -> Path:
    lines = ["street,number,lat,lon"]
    for n in range(4800, 4900):
        lat, lon = address_point(n)
        lines.append(f"{STREET},{n},{lat:.6f},{lon:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


async def import_test_addresses(database_url: str, tmp_path: Path) -> None:
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        result = await import_addresses(pool=pool, path=write_addresses(tmp_path / "addr.csv"))
        assert result.total == 100 and result.n_bad == 0
    finally:
        await pool.close()


async def start_public_app(apps: Apps, **overrides: Any) -> RunningApp:
    """The addresses imported, then an app publishing after 0 s unless ``overrides`` say."""
    await import_test_addresses(apps.database_url, apps.tmp_path)
    return await apps.start(**{"public_delay_s": 0.0, **overrides})


@pytest.fixture
async def public_app(apps: Apps) -> RunningApp:
    return await start_public_app(apps)


@pytest.fixture
def public_api(apps: Apps, public_app: RunningApp) -> Api:
    return apps.api(public_app)


async def intake(client: httpx.AsyncClient, *, incident_type: str = "ROBBERY",
                 agency: str = "SFFD", location: dict[str, Any] | None = None,
                 caller: dict[str, Any] | None = None, narrative: str | None = None,
                 close: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"agency": agency, "incident_type": incident_type,
                            "location": location or {"address": f"4817 {STREET}"}}
    if caller is not None:
        body["caller"] = caller
    if narrative is not None:
        body["narrative"] = narrative
    r = await client.post("/api/v1/incidents", json=body)
    assert r.status_code == 201, r.text
    inc: dict[str, Any] = r.json()
    if close:
        r = await client.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "REPORT"})
        assert r.status_code == 200, r.text
    return inc


async def publish(client: httpx.AsyncClient, code: str, *, agency: str = "SFFD",
                  published: bool = True) -> httpx.Response:
    return await client.put(f"/api/v1/publication/{agency}/{code}", json={"published": published})


PUBLIC_ENDPOINTS = ("incidents.geojson", "incidents.csv", "incidents.atom", "requests/{number}",
                    "requests?date={day}", "map", "lookup?number={number}&date={day}")


async def public_outputs(base_url: str, *, agency: str, number: str, day: str
                         ) -> dict[str, httpx.Response]:
    """Every public endpoint's answer, anonymous, for one incident number and day."""
    out: dict[str, httpx.Response] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as anon:
        for ep in PUBLIC_ENDPOINTS:
            out[ep] = await anon.get(f"/public/{agency}/" + ep.format(number=number, day=day))
    return out
