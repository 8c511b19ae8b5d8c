"""Fill an incident's response plan with the nearest available matching units by road ETA,
and explain every pick and every shortfall."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from cad.errors import Conflict, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, retry_transient, unit_of_work
from incidents.dispatch import repository as repo
from incidents.dispatch.deps import DispatchDeps
from incidents.geocoding.service import describe
from routing.build import haversine_m
from units import repository as unit_repo
from units.locator import Position, utcnow
from units.status import AVAILABLE, UnitStatus

# Extra candidates asked of the routing index per slot type, beyond what the slot needs:
# some may turn out unavailable in the database (another worker's change not yet applied
# here) or already picked for another slot.
CANDIDATE_MARGIN = 4
# Runners-up shown per slot type: the next nearest free units after the picks.
RUNNERS_UP = 3
MAX_REFRESH_ROUNDS = 3


@dataclass
class Slot:
    unit_type: str
    capabilities: list[str]
    index: int  # position in the plan, for stable output


@dataclass
class Candidate:
    unit_id: str
    unit_type: str
    eta_s: float
    distance_m: float
    position: Position
    off_road: bool = False  # the position is beyond the snapping limit (routing core's flag)
    snap_distance_m: float | None = None


@dataclass
class Plan:
    id: int | None
    name: str
    slots: list[Slot] = field(default_factory=list)


def _plan_from(row: dict[str, Any] | None) -> Plan:
    """Slots of the chosen plan (the most specific match: zone beats type beats priority)."""
    if row is None:
        return Plan(None, "no plan: one nearest unit", [Slot("engine", [], 0)])
    slots: list[Slot] = []
    for s in row["slots"]:
        for _ in range(int(s["count"])):
            slots.append(Slot(s["unit_type"], list(s.get("capabilities") or []), len(slots)))
    return Plan(row["id"], row["name"], slots)


def _position_note(p: Position) -> str:
    if p.source == "avl":
        return f"position from AVL fix {p.age_s:.0f} s old"
    if p.source == "station":
        if p.stale and p.age_s is not None:
            return f"position: home station (last AVL fix {p.age_s:.0f} s old is stale)"
        return "position: home station (no AVL fix)"
    return f"position: stale AVL fix {p.age_s:.0f} s old (no home station)"


def _off_road_note(snap_distance_m: float | None, limit_m: float) -> str:
    d = snap_distance_m or 0.0
    far = f"{d / 1000:,.1f} km" if d >= 1000 else f"{d:.0f} m"
    return (f"; WARNING: position {far} from the nearest road (beyond the {limit_m:.0f} m "
            "snapping limit): ETA unreliable, check the unit's location")


class _Finder:
    """Candidate units for a set of unit types, nearest first, availability re-checked in the
    database (the per-worker routing index may lag another worker's commit)."""

    def __init__(self, deps: DispatchDeps, conn: asyncpg.Connection, lat: float, lon: float,
                 agencies: frozenset[str]) -> None:
        self.deps = deps
        self.agencies = agencies  # whose units may serve the incident (own + mutual aid)
        self.conn = conn
        self.lat, self.lon = lat, lon
        self.now = utcnow()
        self.method = "road_network" if deps.routing is not None else "straight_line_estimate"
        settings = deps.settings
        # Calibrated per hour of day (`cad graph calibrate`) where the hour is known, else the
        # one overall factor.
        hour = self.now.astimezone(ZoneInfo(settings.analytics_timezone)).hour
        self.factor = settings.eta_hour_factors.get(hour, settings.eta_calibration_factor)

    async def candidates(self, groups: list[tuple[list[str], list[str], int]]) -> list[list[Candidate]]:
        """For each (unit types, capabilities, how many) group: candidates, nearest first.
        All groups are checked against the database in one query."""
        routing = self.deps.routing
        if routing is None:
            return [await self._straight_line(types, caps) for types, caps, _ in groups]
        locator = self.deps.locator
        await locator.settle()  # changes seen in the event log are in the index first
        out: list[list[Candidate]] = [[] for _ in groups]
        # The index knows no agencies: when other agencies' units crowd out the nearest K,
        # ask again for more.
        ks = [want for _, _, want in groups]
        for _ in range(MAX_REFRESH_ROUNDS):
            # the routing core refuses types it has never seen (a typo is not "none free"):
            # a plan's type with no unit placed on this worker has no candidates
            known = routing.known_unit_types()
            found = []
            for (types, caps, _), k in zip(groups, ks, strict=True):
                usable = [t for t in types if t in known]
                found.append(routing.nearest_units(lat=self.lat, lon=self.lon, k=k, unit_types=usable,
                                                   capabilities=caps).units if usable else [])
            ids = sorted({str(u.unit_id) for units in found for u in units})
            rows = {r["id"]: r for r in await unit_repo.units_with_stations(self.conn, ids)
                    } if ids else {}
            stale_index: set[str] = set()
            widen = False
            for g, units in enumerate(found):
                out[g] = []
                foreign = 0
                for u in units:
                    r = rows.get(str(u.unit_id))
                    if r is not None and r["agency"] not in self.agencies:
                        foreign += 1  # another agency's unit, and no mutual aid with it
                        continue
                    if r is None or not r["active"] or UnitStatus(r["status"]) not in AVAILABLE:
                        stale_index.add(str(u.unit_id))
                        continue
                    pos = locator.position(r, now=self.now)
                    indexed = locator.indexed.get(r["id"])
                    if pos is None or indexed is None or (pos.lat, pos.lon) != (indexed.lat, indexed.lon):
                        stale_index.add(r["id"])  # e.g. its fix went stale: re-place at station
                        continue
                    out[g].append(Candidate(r["id"], r["unit_type"], u.eta_s * self.factor,
                                            u.distance_m, pos, u.beyond_limit, u.snap_distance_m))
                if foreign and len(units) == ks[g] and len(out[g]) < groups[g][2]:
                    ks[g] *= 4
                    widen = True
            if not stale_index and not widen:
                break
            if stale_index:
                await locator.refresh(self.conn, sorted(stale_index))
        return out

    async def _straight_line(self, types: list[str], caps: list[str]) -> list[Candidate]:
        rows = await unit_repo.available_with_stations(
            self.conn, statuses=[s.value for s in AVAILABLE], unit_types=types, capabilities=caps)
        speed_ms = self.deps.settings.fallback_speed_kmh / 3.6
        out = []
        for r in rows:
            if r["agency"] not in self.agencies:
                continue
            pos = self.deps.locator.position(r, now=self.now)
            if pos is None:
                continue
            d = float(haversine_m(pos.lat, pos.lon, self.lat, self.lon))
            out.append(Candidate(r["id"], r["unit_type"], d / speed_ms * self.factor, d, pos))
        out.sort(key=lambda c: (c.eta_s, c.unit_id))
        return out


async def _explain_shortfall(conn: asyncpg.Connection, slot: Slot, types: list[str],
                             picked: set[str], agencies: frozenset[str]) -> str:
    rows = await unit_repo.roster_of_types(conn, unit_types=types, capabilities=slot.capabilities,
                                           agencies=sorted(agencies))
    kinds = " or ".join(types)
    need = f" with {', '.join(slot.capabilities)}" if slot.capabilities else ""
    if not rows:
        return f"no {kinds} unit{need} exists in the roster"
    parts = []
    for r in rows[:8]:
        if r["id"] in picked:
            parts.append(f"{r['id']} already picked for another slot")
        elif UnitStatus(r["status"]) in AVAILABLE:
            parts.append(f"{r['id']} available but has no known position on the road network")
        elif r["current_incident"]:
            parts.append(f"{r['id']} {r['status']} on incident {r['current_incident']}")
        else:
            parts.append(f"{r['id']} {r['status']}")
    more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
    return f"no available {kinds}{need}: " + "; ".join(parts) + more


def _describe(deps: DispatchDeps, pos: Position) -> str | None:
    """'935 FOLSOM ST (between FALMOUTH ST and 5TH ST)': a unit's position as a dispatcher
    reads it, or None when the geocoder knows neither addresses nor streets."""
    ref = deps.geocoder
    if ref is None or (ref.current.n_points == 0 and ref.current.street_index is None):
        return None
    return describe(ref.current.reverse(pos.lat, pos.lon))


def _explain(deps: DispatchDeps, method: str, stype: str, cand: Candidate, what: str, *,
             describe_position: bool = True) -> dict[str, Any]:
    """A candidate as the API shows it (a pick or a runner-up), with the reason in words.
    Runners-up skip the reverse-geocoded description: up to three more reverse lookups per
    slot type on the dispatch hot path (benchmarks/dispatch_bench.py) for a line the
    dispatcher reads for the picks."""
    sub = cand.unit_type != stype
    why = (f"{what} available {cand.unit_type}"
           + (f" (substitutes for {stype})" if sub else "")
           + (" by road ETA" if method == "road_network" else " by straight-line estimate")
           + f": {cand.eta_s:.0f} s, {cand.distance_m / 1000:.2f} km; "
           + _position_note(cand.position)
           + (_off_road_note(cand.snap_distance_m, deps.settings.snap_limit_m) if cand.off_road else ""))
    return {"slot_type": stype, "unit_id": cand.unit_id,
            "unit_type": cand.unit_type, "substitute": sub,
            "eta_s": round(cand.eta_s, 1), "distance_m": round(cand.distance_m, 1),
            "position_source": cand.position.source,
            "position_age_s": None if cand.position.age_s is None else round(cand.position.age_s, 1),
            "stale_position": cand.position.stale, "off_road": cand.off_road,
            "position_description": _describe(deps, cand.position) if describe_position else None,
            "snap_distance_m": None if cand.snap_distance_m is None else round(cand.snap_distance_m, 1),
            "reason": why}


@retry_transient
async def recommend(*, deps: DispatchDeps, ctx: RequestContext, scope: Scope,
                    incident_id: int) -> dict[str, Any]:
    """Candidates are units of the incident's agency and of those the caller may call on for
    mutual aid (``scope.unit_agencies_for``)."""
    async with unit_of_work(deps.pool, ctx) as uow:
        conn = uow.conn
        uow.audit("incident.recommend", target=f"incident:{incident_id}")
        ctx_row = await repo.recommend_context(conn, incident_id, scope=scope)
        if ctx_row is None:
            raise NotFound(f"incident {incident_id} does not exist")
        inc = ctx_row
        if inc["status"] == "closed":
            raise Conflict(f"incident {incident_id} is closed")
        plan = _plan_from(ctx_row["plan"])
        subs: dict[str, list[str]] = defaultdict(list)
        for slot_type, unit_type in ctx_row["substitutions"]:
            subs[slot_type].append(unit_type)
        # Units already on the incident fill slots first.
        assigned = ctx_row["assigned"]
        open_slots = list(plan.slots)
        already: list[dict[str, Any]] = []
        for a in assigned:
            for slot in open_slots:
                if a["unit_type"] == slot.unit_type or a["unit_type"] in subs.get(slot.unit_type, []):
                    open_slots.remove(slot)
                    already.append({"slot_type": slot.unit_type, "unit_id": a["id"]})
                    break

        serving = scope.unit_agencies_for(inc["agency"])
        # A geocoded address is reached at its access point: where it meets its street's edge
        # on its own side (the right carriageway of a divided road), not the nearest node.
        to_lat, to_lon = ((inc["access_lat"], inc["access_lon"]) if inc["access_lat"] is not None
                          else (inc["lat"], inc["lon"]))
        finder = _Finder(deps, conn, to_lat, to_lon, serving)
        by_type: dict[tuple[str, tuple[str, ...]], list[Slot]] = defaultdict(list)
        for slot in open_slots:
            by_type[(slot.unit_type, tuple(slot.capabilities))].append(slot)
        keys = list(by_type)
        found = await finder.candidates([
            ([stype, *subs.get(stype, [])], list(caps), len(open_slots) + CANDIDATE_MARGIN)
            for stype, caps in keys])
        pools: dict[tuple[str, tuple[str, ...]], list[Candidate]] = dict(zip(keys, found))

        # Scarcest slot types choose first, so a quint is not spent on an engine slot when
        # it is the only thing that can fill a ladder slot; each slot takes its nearest.
        picked: set[str] = set()
        picks: list[dict[str, Any]] = []
        shortfalls: list[dict[str, Any]] = []
        order = sorted(by_type, key=lambda k: (len(pools[k]) - len(by_type[k]), k))
        for key in order:
            stype, caps = key
            slots = by_type[key]
            free = [c for c in pools[key] if c.unit_id not in picked]
            for slot, cand in zip(slots, free):
                picked.add(cand.unit_id)
                picks.append({"slot": slot.index, **_explain(deps, finder.method, stype, cand, "nearest")})
            unfilled = len(slots) - min(len(slots), len(free))
            if unfilled:
                types = [stype, *subs.get(stype, [])]
                shortfalls.append({"slot_type": stype, "capabilities": list(caps), "needed": len(slots),
                                   "filled": len(slots) - unfilled,
                                   "reason": await _explain_shortfall(conn, slots[0], types, picked,
                                                                      serving)})
        picks.sort(key=lambda p: (p["eta_s"] if math.isfinite(p["eta_s"]) else 1e18, p["unit_id"]))
        # Runners-up: per slot type, the next nearest units no slot took (a dispatcher's
        # alternatives; dispatching one instead of a pick is an override).
        runners_up: list[dict[str, Any]] = []
        for key in keys:
            stype, _caps = key
            rank = 0
            for cand in pools[key]:
                if cand.unit_id in picked or any(r["unit_id"] == cand.unit_id for r in runners_up):
                    continue
                rank += 1
                runners_up.append({"rank": rank, **_explain(deps, finder.method, stype, cand,
                                                            f"runner-up {rank}: next nearest",
                                                            describe_position=False)})
                if rank == RUNNERS_UP:
                    break
        rec_id = await repo.insert_recommendation(
            conn, incident_id=incident_id, created_by=ctx.actor, plan_id=plan.id,
            eta_method=finder.method, picks=picks, shortfalls=shortfalls)
        incident_place = (deps.routing.locate(lat=inc["lat"], lon=inc["lon"])
                          if deps.routing is not None and inc["lat"] is not None else None)
        result = {"id": rec_id, "incident_id": incident_id,
                  "plan": {"id": plan.id, "name": plan.name, "slots": [s.unit_type for s in plan.slots]},
                  "eta_method": finder.method,
                  "incident_off_road": incident_place is not None and incident_place.beyond_limit,
                  "incident_snap_distance_m": None if incident_place is None
                  else round(incident_place.distance_m, 1),
                  "already_assigned": already,
                  "picks": picks, "runners_up": runners_up, "shortfalls": shortfalls}
        uow.emit("recommendation.made", aggregate=("incident", incident_id), agency=inc["agency"],
                 data={"recommendation": result, "unit_ids": [a["id"] for a in assigned]})
    return result
