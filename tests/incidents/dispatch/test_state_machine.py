"""A hypothesis state machine drives random create / dispatch / status / recommend / close
sequences through the real HTTP API and checks the dispatch invariants after every step."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import httpx
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.dispatch_fixtures import Api
from units.status import AVAILABLE, UnitStatus, can_transition, clears_assignment

STATUSES = [s.value for s in UnitStatus]
_run = itertools.count()


def make_machine(base_url: str, headers: dict[str, dict[str, str]]) -> type[RuleBasedStateMachine]:
    class Dispatch(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.prefix = f"R{next(_run)}"
            self.sup = httpx.Client(base_url=base_url, headers=headers["supervisor"], timeout=30)
            self.disp = httpx.Client(base_url=base_url, headers=headers["dispatcher"], timeout=30)
            self.units: dict[str, str] = {}
            self.unit_incident: dict[str, int | None] = {}
            self.incidents: dict[int, dict[str, Any]] = {}
            for i, utype in enumerate(("engine", "engine", "medic_als", "ladder")):
                uid = f"{self.prefix}U{i}"
                r = self.sup.post("/api/v1/units", json={
                    "id": uid, "agency": "SFFD", "discipline": "fire", "unit_type": utype,
                    "home_station": "HQ", "status": "available_in_quarters"})
                assert r.status_code == 201, r.text
                self.units[uid] = "available_in_quarters"
                self.unit_incident[uid] = None

        def teardown(self) -> None:
            for c in ("sup", "disp"):
                if hasattr(self, c):
                    getattr(self, c).close()

        @rule(itype=st.sampled_from(["MED", "CARDIAC", "STRUCT", "VEHFIRE"]),
              dlat=st.floats(-0.01, 0.01), dlon=st.floats(-0.01, 0.01))
        def create(self, itype: str, dlat: float, dlon: float) -> None:
            r = self.disp.post("/api/v1/incidents", json={
                "agency": "SFFD", "incident_type": itype,
                "location": {"lat": 37.77 + dlat, "lon": -122.42 + dlon}})
            assert r.status_code == 201, r.text
            self.incidents[r.json()["id"]] = {"closed": False, "active": set()}

        @precondition(lambda self: self.incidents)
        @rule(data=st.data())
        def dispatch(self, data: st.DataObject) -> None:
            iid = data.draw(st.sampled_from(sorted(self.incidents)))
            chosen = data.draw(st.lists(st.sampled_from(sorted(self.units)), min_size=1, max_size=3,
                                        unique=True))
            r = self.disp.post(f"/api/v1/incidents/{iid}/dispatch", json={"unit_ids": chosen})
            ok = not self.incidents[iid]["closed"] and all(
                UnitStatus(self.units[u]) in AVAILABLE for u in chosen)
            assert r.status_code == (200 if ok else 409), (chosen, self.units, r.text)
            if ok:
                for u in chosen:
                    self.units[u] = "dispatched"
                    self.unit_incident[u] = iid
                    self.incidents[iid]["active"].add(u)

        @rule(data=st.data(), new=st.sampled_from(STATUSES))
        def status(self, data: st.DataObject, new: str) -> None:
            uid = data.draw(st.sampled_from(sorted(self.units)))
            cur = self.units[uid]
            r = self.disp.post(f"/api/v1/units/{uid}/status", json={"status": new})
            ok = new != "dispatched" and can_transition(cur, new)
            assert r.status_code == (200 if ok else 409), (uid, cur, new, r.text)
            if not ok:
                assert r.json()["allowed_next"] == ([] if new == "dispatched" else r.json()["allowed_next"])
                return
            if clears_assignment(cur, new):
                iid = self.unit_incident[uid]
                assert iid is not None
                self.incidents[iid]["active"].discard(uid)
                self.unit_incident[uid] = None
                assert r.json()["incident_can_close"] == (not self.incidents[iid]["active"])
            self.units[uid] = new

        @precondition(lambda self: self.incidents)
        @rule(data=st.data())
        def recommend(self, data: st.DataObject) -> None:
            iid = data.draw(st.sampled_from(sorted(self.incidents)))
            r = self.disp.post(f"/api/v1/incidents/{iid}/recommendation")
            if self.incidents[iid]["closed"]:
                assert r.status_code == 409
                return
            assert r.status_code == 201, r.text
            mine = [p["unit_id"] for p in r.json()["picks"] if p["unit_id"].startswith(self.prefix + "U")]
            for u in mine:
                assert UnitStatus(self.units[u]) in AVAILABLE, f"recommended busy unit {u}"

        @precondition(lambda self: self.incidents)
        @rule(data=st.data())
        def close(self, data: st.DataObject) -> None:
            iid = data.draw(st.sampled_from(sorted(self.incidents)))
            r = self.disp.post(f"/api/v1/incidents/{iid}/close", json={"disposition": "REPORT"})
            inc = self.incidents[iid]
            ok = not inc["closed"] and not inc["active"]
            assert r.status_code == (200 if ok else 409), r.text
            if ok:
                inc["closed"] = True

        @invariant()
        def server_agrees_and_time_moves_forward(self) -> None:
            if not hasattr(self, "prefix"):
                return
            seen_active: dict[str, int] = {}
            for iid, inc in self.incidents.items():
                view = self.disp.get(f"/api/v1/incidents/{iid}").json()
                assert (view["status"] == "closed") == inc["closed"]
                active = {u["unit_id"] for u in view["units"] if u["cleared_at"] is None}
                assert active == inc["active"]
                for u in active:
                    assert u not in seen_active, f"{u} active on {seen_active.get(u)} and {iid}"
                    seen_active[u] = iid
                for a in view["units"]:
                    stamps = [a[k] for k in ("dispatched_at", "en_route_at", "on_scene_at",
                                             "transporting_at", "at_hospital_at", "cleared_at") if a[k]]
                    assert stamps == sorted(stamps), a
            for uid, status in self.units.items():
                unit = self.disp.get(f"/api/v1/units/{uid}").json()
                assert unit["status"] == status
                assert unit["incident_id"] == self.unit_incident[uid]
                hist = self.disp.get(f"/api/v1/units/{uid}/status-history").json()
                ats = [h["at"] for h in reversed(hist)]
                assert ats == sorted(ats), f"time went backwards for {uid}"
                assert hist[0]["to_status"] == status

    return Dispatch


async def test_dispatch_invariants_hold_under_random_sequences(api: Api) -> None:
    sup = await api.as_("supervisor")
    r = await sup.put("/api/v1/stations/HQ", json={"id": "HQ", "agency": "SFFD", "name": "HQ",
                                                   "lat": 37.775, "lon": -122.418})
    assert r.status_code == 200
    headers = {"supervisor": await api.auth("supervisor"), "dispatcher": await api.auth("dispatcher")}
    machine = make_machine(api.running.base_url, headers)
    await asyncio.to_thread(
        run_state_machine_as_test, machine,
        # CAD_STATE_MACHINE_EXAMPLES raises it for a longer hunt (300 ran clean, 2026-11-22).
        settings=hsettings(max_examples=int(os.environ.get("CAD_STATE_MACHINE_EXAMPLES", "12")),
                           stateful_step_count=15, deadline=None,
                           suppress_health_check=list(HealthCheck)))
