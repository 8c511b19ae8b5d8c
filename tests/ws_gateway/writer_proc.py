"""A separate writer process for the crash test: each commit of the unit of work is one
dispatch or status change (one event), the way the domain actions write them.

    python -m tests.ws_gateway.writer_proc DATABASE_URL COUNT PAUSE_S
Prints the committed event ids, one per line, as it goes.
"""

from __future__ import annotations

import asyncio
import sys

from cad import db
from cad.uow import RequestContext, unit_of_work

UNITS = ["E1", "E2", "M3", "L4"]
STATUSES = ["dispatched", "en_route", "on_scene", "available_on_radio"]


async def main(url: str, count: int, pause_s: float) -> None:
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        for i in range(count):
            unit = UNITS[i % len(UNITS)]
            ctx = RequestContext(actor="writer", source="console", agency="A")
            async with unit_of_work(pool, ctx) as uow:
                if i % 3 == 0:
                    uow.emit("incident.units_dispatched", aggregate=("incident", 100 + i // 3),
                             data={"unit_ids": [unit, UNITS[(i + 1) % len(UNITS)]], "seq": i})
                else:
                    uow.emit("unit.status_changed", aggregate=("unit", unit),
                             data={"status": STATUSES[i % len(STATUSES)], "seq": i})
            print(uow.event_ids[0], flush=True)
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
