"""Builders for the fast tier: the packages' deps over the rolled-back ``tx_pool``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import asyncpg

from cad.security.scope import Scope
from cad.settings import Settings
from cad.uow import RequestContext
from cad.wiring import plausibility
from incidents.deps import IncidentsDeps
from incidents.dispatch.deps import DispatchDeps
from incidents.geocoding.index import AddressPoints, Geocoder, GeocoderRef
from units.deps import UnitsDeps
from units.locator import UnitLocator

CONSOLE = RequestContext(actor="fast-tier", source="console")
# What a console of the agency the tests' data belongs to may see (cad.security.scope).
SFFD = Scope(agencies=frozenset({"SFFD"}))


def deps(tx_pool: Any, tmp_path: Path) -> tuple[UnitsDeps, IncidentsDeps, DispatchDeps]:
    pool = cast(asyncpg.Pool, tx_pool)  # a TxPool: one connection inside the test's transaction
    settings = Settings(database_url="postgresql://unused/", data_dir=tmp_path,
                        timer_sweep_interval_s=0)
    locator = UnitLocator(None, pool=pool, stale_after_s=settings.unit_position_stale_s)
    plausible = plausibility(settings, None)
    return (UnitsDeps(pool=pool, locator=locator, plausible=plausible),
            IncidentsDeps(pool=pool, settings=settings,
                          geocoder=GeocoderRef(Geocoder(AddressPoints.empty())),
                          plausible=plausible),
            DispatchDeps(pool=pool, settings=settings, routing=None, locator=locator,
                         plausible=plausible))
