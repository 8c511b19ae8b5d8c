"""The per-tick indexes select exactly what filtering every event and position one by one
selects (they exist for speed only)."""

from __future__ import annotations

import random

import orjson

from ws_gateway.events import BoardFilter, Event, EventFilter, TickView, UnitFilter

UNITS = ["E1", "E2", "M3", "L4"]
AGENCIES = ["A", "B", None]


def _events(rnd: random.Random, n: int) -> list[Event]:
    out = []
    for i in range(1, n + 1):
        if rnd.random() < 0.5:
            agg = ("unit", rnd.choice(UNITS))
        else:
            agg = ("incident", str(rnd.randint(1, 5)))
        unit_ids = frozenset(rnd.sample(UNITS, rnd.randint(0, 3)))
        out.append(Event(i, rnd.choice(AGENCIES), agg[0], agg[1], unit_ids, orjson.dumps(i)))
    return out


def test_indexed_selection_equals_naive_filtering() -> None:
    rnd = random.Random(5)
    filters: list[EventFilter] = [BoardFilter(None), BoardFilter(["A"]), BoardFilter(["A", "B"]),
                                  BoardFilter([]), *[UnitFilter(u) for u in UNITS + ["X9"]]]
    for _ in range(200):
        events = _events(rnd, rnd.randint(0, 30))
        positions = [(rnd.choice(AGENCIES), orjson.dumps(k)) for k in range(rnd.randint(0, 30))]
        view = TickView(events, positions)
        for f in filters:
            naive = ([e for e in events if f.events(e)],
                     [j for a, j in positions if f.positions(a)])
            assert f.select(view) == naive, f.key
