"""One wire format: frames captured from real sockets of a running app, after real actions
through the HTTP API, validate against the AsyncAPI document the same app serves
(``/asyncapi.json``, generated from ``schemas.realtime`` and the event registry of
``schemas.events``). Every server message of each channel is seen at least once, and so is
every registered event type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import websockets

from cad.settings import Settings
from incidents.public.challenge import solve
from schemas.events import EVENT_TYPES
from tests.auth import AuthHeaders, board_token, device_token
from tests.support import RunningApp, running_app
from tests.ws_gateway.helpers import StreamClient, app_secret, fix

AGENCY = "SFFD"
TRAINING = "SFFD-TRAINING"  # its reset is the one event a real agency's board never gets
SPOT = (37.7837, -122.4075)


class Recorder(StreamClient):
    """A StreamClient that also keeps every frame as received."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.frames: list[dict[str, Any]] = []

    def _handle(self, msg: dict[str, Any]) -> None:
        self.frames.append(msg)
        super()._handle(msg)

    def types(self) -> set[str]:
        return {f["type"] for f in self.frames}


def _validator(doc: dict[str, Any], ref: str) -> jsonschema.protocols.Validator:
    # The payload's $ref points into the document's components: resolve against the document.
    root = {"components": doc["components"], "$ref": ref}
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    cls.check_schema(root)
    return cls(root)


class Published:
    """The served AsyncAPI document: validators per channel and message name."""

    def __init__(self, doc: dict[str, Any]) -> None:
        assert doc["asyncapi"] == "3.0.0"
        self.doc = doc
        self._cache: dict[str, jsonschema.protocols.Validator] = {}

    def message_names(self, channel: str, action: str) -> set[str]:
        op = self.doc["operations"][f"{channel}.{action}"]
        assert op["channel"] == {"$ref": f"#/channels/{channel}"}
        return {m["$ref"].rsplit("/", 1)[1] for m in op["messages"]}

    def validate(self, channel: str, action: str, frame: dict[str, Any]) -> None:
        name = frame["type"]
        assert name in self.message_names(channel, action), (channel, action, name)
        ref = self.doc["components"]["messages"][name]["payload"]["$ref"]
        if ref not in self._cache:
            self._cache[ref] = _validator(self.doc, ref)
        errors = sorted(self._cache[ref].iter_errors(frame), key=lambda e: list(e.path))
        assert not errors, f"{channel} {name}: " + "; ".join(
            f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])

    def close_codes(self, channel: str) -> set[int]:
        return {c["code"] for c in self.doc["channels"][channel]["x-close-codes"]}


@pytest.fixture
def wire_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                    db_pool_min=1, db_pool_max=10, ws_heartbeat_interval_s=0.3,
                    timer_sweep_interval_s=0.2,
                    pending_thresholds_s={p: 0.3 for p in range(1, 6)},
                    unit_status_thresholds_s={"dispatched": 0.3}, public_pow_bits=8,
                    training_agencies=[TRAINING])


async def _ok(resp: httpx.Response, *codes: int) -> dict[str, Any]:
    assert resp.status_code in (codes or (200, 201)), resp.text
    return resp.json() if resp.status_code != 204 else {}


async def _every_event_type(sup: httpx.AsyncClient, approver: httpx.AsyncClient) -> int:
    """Real actions through the HTTP API that, together, emit every registered event type."""
    await _ok(await sup.post(f"/api/v1/stations/import?agency={AGENCY}",
                             content="station,name,address,lat,lon\n"
                                     "1,Station 1,\"935 Folsom\",37.779416,-122.404193\n",
                             headers={"content-type": "text/csv"}))
    await _ok(await sup.put("/api/v1/stations/2", json={
        "id": "2", "agency": AGENCY, "name": "Station 2", "lat": 37.79, "lon": -122.41}))
    for uid in ("E01", "E02"):
        await _ok(await sup.post("/api/v1/units", json={
            "id": uid, "agency": AGENCY, "discipline": "fire", "unit_type": "engine",
            "home_station": "1", "status": "available_in_quarters"}), 201)
    await _ok(await sup.patch("/api/v1/units/E02", json={"staffing": 3}))
    await _ok(await sup.delete("/api/v1/units/E02"))
    await _ok(await sup.put("/api/v1/incident-types/WIRETEST", json={
        "description": "Wire format test", "apco_type": "FIRE", "discipline": "fire",
        "default_priority": 2, "duplicate_group": "wire"}))
    await _ok(await sup.put(f"/api/v1/publication/{AGENCY}/WIRETEST", json={"published": True}))
    plan = await _ok(await sup.post("/api/v1/response-plans", json={
        "name": "wire plan", "incident_type": "WIRETEST",
        "slots": [{"unit_type": "engine", "count": 1}]}), 201)
    await _ok(await sup.post("/api/v1/substitutions",
                             json={"slot_type": "ladder", "unit_type": "quint"}), 201)
    await _ok(await sup.post("/api/v1/zones/import", json={
        "type": "FeatureCollection", "features": [{
            "type": "Feature",
            "properties": {"id": "wire-beat", "name": "Wire", "kind": "beat", "agency": AGENCY},
            "geometry": {"type": "Polygon", "coordinates": [[
                [-122.5, 37.7], [-122.3, 37.7], [-122.3, 37.85], [-122.5, 37.85],
                [-122.5, 37.7]]]}}]}))

    first = await _ok(await sup.post("/api/v1/incidents", json={
        "agency": AGENCY, "incident_type": "WIRETEST",
        "location": {"lat": SPOT[0], "lon": SPOT[1]}}), 201)
    dup = await _ok(await sup.post("/api/v1/incidents", json={
        "agency": AGENCY, "incident_type": "WIRETEST",
        "location": {"lat": SPOT[0], "lon": SPOT[1]}}), 201)
    other = await _ok(await sup.post("/api/v1/incidents", json={
        "agency": AGENCY, "incident_type": "WIRETEST",
        "location": {"lat": SPOT[0] + 0.05, "lon": SPOT[1]}}), 201)
    # stays pending past its threshold: the pending timer fires
    await _ok(await sup.post("/api/v1/incidents", json={
        "agency": AGENCY, "incident_type": "WIRETEST",
        "location": {"lat": SPOT[0] - 0.05, "lon": SPOT[1]}}), 201)
    iid = first["id"]
    await _ok(await sup.patch(f"/api/v1/incidents/{iid}", json={"priority": 1}))
    await _ok(await sup.post(f"/api/v1/incidents/{iid}/narrative", json={"text": "smoke"}), 201)
    await _ok(await sup.post(f"/api/v1/incidents/{dup['id']}/link", json={"other_id": iid}))
    await _ok(await sup.post(f"/api/v1/incidents/{dup['id']}/merge", json={"into_id": iid}))
    await _ok(await sup.post(f"/api/v1/incidents/{other['id']}/close",
                             json={"disposition": "NO_MERIT"}))
    await _ok(await sup.post("/api/v1/units/E01/checkin", json={}))
    await _ok(await sup.post(f"/api/v1/incidents/{iid}/recommendation"), 201)
    await _ok(await sup.post(f"/api/v1/incidents/{iid}/dispatch", json={"unit_ids": ["E01"]}))
    await _ok(await sup.delete(f"/api/v1/response-plans/{plan['id']}"))
    sub = await _ok(await sup.post("/api/v1/alert-subscriptions", json={
        "agency": AGENCY, "channel": "log", "target": "wire"}), 201)
    alert = await _ok(await sup.post("/api/v1/alerts", json={
        "incident_id": iid, "event": "Wire", "area": {"radius_m": 200},
        "info": {lang: {"headline": "h", "description": "d"} for lang in ("en", "es")}}), 201)
    await _ok(await approver.post(f"/api/v1/alerts/{alert['id']}/approve"))  # two-person rule
    await _ok(await sup.delete(f"/api/v1/alert-subscriptions/{sub['id']}"), 204)
    for _ in range(2):   # online reports: filed (public), accepted, declined
        ch = await _ok(await sup.get(f"/public/{AGENCY}/reports/challenge"))
        await _ok(await sup.post(f"/public/{AGENCY}/reports", json={
            "report_type": "noise", "description": "Wire format test report",
            "location": {"lat": SPOT[0], "lon": SPOT[1]},
            "proof": {"challenge": ch["challenge"],
                      "solution": solve(ch["challenge"], ch["difficulty_bits"])}}), 201)
    queue = await sup.get("/api/v1/reports", params={"status": "received"})
    kept, refused = queue.json()
    await _ok(await sup.post(f"/api/v1/reports/{kept['id']}/accept", json={"kind": "record"}))
    await _ok(await sup.post(f"/api/v1/reports/{refused['id']}/decline",
                             json={"public_reason": "wire"}))
    # feedback: received (public), assigned, investigating, a note
    ch = await _ok(await sup.get(f"/public/{AGENCY}/feedback/challenge"))
    await _ok(await sup.post(f"/public/{AGENCY}/feedback", json={
        "category": "complaint", "description": "Wire format test feedback",
        "proof": {"challenge": ch["challenge"],
                  "solution": solve(ch["challenge"], ch["difficulty_bits"])}}), 201)
    [case] = (await sup.get("/api/v1/feedback")).json()
    me = await _ok(await sup.get("/api/v1/auth/me"))
    await _ok(await sup.post(f"/api/v1/feedback/{case['id']}/assign",
                             json={"assignee": me["username"]}))
    await _ok(await sup.post(f"/api/v1/feedback/{case['id']}/status",
                             json={"status": "investigating"}))
    await _ok(await sup.post(f"/api/v1/feedback/{case['id']}/notes", json={"text": "wire"}), 201)
    return int(iid)


async def _reconnects(client: Recorder) -> list[dict[str, Any]]:
    """Close, then come back twice: resumed (replay follows), and from a cursor the server
    never issued (resync_required, then a snapshot)."""
    cursor = client.last_event_id
    await client.close()
    assert cursor is not None and client.events
    again = Recorder(client.url, client.token)
    again.last_event_id = client.events[0]["id"] - 1  # replays at least that one
    assert (await again.connect())["type"] == "resume"
    await again.wait_for(lambda c: any(f.get("replay") for f in c.frames))
    await again.close()
    ahead = Recorder(client.url, client.token)
    ahead.last_event_id = cursor + 1_000
    assert (await ahead.connect())["type"] == "resync_required"
    await ahead.wait_for(lambda c: "snapshot" in c.types())
    await ahead.close()
    return again.frames + ahead.frames


async def test_frames_from_real_sockets_match_the_served_asyncapi(
        wire_settings: Settings) -> None:
    async with running_app(wire_settings) as live:
        await _run_capture(live)


async def _run_capture(live: RunningApp) -> None:
    pool = live.pool
    async with httpx.AsyncClient(base_url=live.base_url) as anon:
        protocol = Published(await _ok(await anon.get("/asyncapi.json")))
        openapi = (await anon.get("/openapi.json")).json()
    assert "/asyncapi.json" in openapi["paths"]

    board = Recorder(live.ws_url + "/ws/board",
                     await board_token(pool, app_secret(live), agency=AGENCY))
    await board.connect()
    trainee = Recorder(live.ws_url + "/ws/board",
                       await board_token(pool, app_secret(live), agency=TRAINING))
    await trainee.connect()
    auth = AuthHeaders(live)
    sup = httpx.AsyncClient(base_url=live.base_url, headers=await auth("supervisor"),
                            timeout=30)
    approver = httpx.AsyncClient(base_url=live.base_url,
                                 headers=await auth("supervisor", fresh=True), timeout=30)
    admin = httpx.AsyncClient(base_url=live.base_url, headers=await auth("admin"), timeout=30)
    async with sup, approver, admin:
        await _every_event_type(sup, approver)
        await _ok(await admin.post("/api/v1/training/reset", json={"agency": TRAINING}))
        await trainee.wait_for(lambda c: any(e["type"] == "training.reset" for e in c.events))
        mdt_token = await device_token(pool, "E01", agency=AGENCY)  # E01 exists: kept as is
        mdt_http = httpx.AsyncClient(base_url=live.base_url,
                                     headers={"Authorization": f"Bearer {mdt_token}"},
                                     timeout=30)
        async with mdt_http:
            mdt = Recorder(live.ws_url + "/ws/unit/E01", mdt_token)
            await mdt.connect()
            # E01 sits in "dispatched", incident 4 in "pending", past their thresholds.
            await board.wait_for(
                lambda c: {"timer.unit_status_overdue", "timer.pending_overdue"}
                <= {e["type"] for e in c.events}, timeout=15)
            await _ok(await mdt_http.post("/api/v1/units/E01/status",
                                          json={"status": "en_route"}))

            client_messages: list[dict[str, Any]] = [
                {"type": "ping"},
                {"type": "auth", "access_token": mdt_token},
                {"type": "position", **fix(), "ref": "p1"},
                {"type": "positions", "fixes": [fix(age_s=0.5), fix(lat=0.0, lon=0.0)]},
            ]
            for m in client_messages:
                protocol.validate("unit", "receive", m)
                await mdt.send(m)
            await mdt.send({"type": "nonsense"})
            await mdt.ws.send("not json")
            for m in ({"type": "ping"}, {"type": "auth", "access_token": board.token}):
                protocol.validate("board", "receive", m)
                await board.send(m)
            await board.send({"type": "nonsense"})
            await mdt.wait_for(lambda c: {"pong", "auth_ok", "position_result", "error"}
                               <= c.types() and any(e["type"] == "unit.status_changed"
                                                    for e in c.events))
            await board.wait_for(lambda c: bool(c.positions)
                                 and {"pong", "auth_ok", "error", "heartbeat"} <= c.types()
                                 and "incident.unit_status_changed"
                                 in {e["type"] for e in c.events})
            await mdt.wait_for(lambda c: "heartbeat" in c.types())

    board_frames = board.frames + await _reconnects(board)
    mdt_frames = mdt.frames + await _reconnects(mdt)
    for frame in board_frames:
        protocol.validate("board", "send", frame)
    for frame in mdt_frames:
        protocol.validate("unit", "send", frame)
    assert {f["type"] for f in board_frames} == protocol.message_names("board", "send")
    assert {f["type"] for f in mdt_frames} == protocol.message_names("unit", "send")
    await trainee.close()
    for frame in trainee.frames:
        protocol.validate("board", "send", frame)
    # Every registered event type went over the wire and matched its payload model.
    seen = {e["type"] for e in board.events} | {e["type"] for e in trainee.events}
    assert seen == set(EVENT_TYPES), set(EVENT_TYPES) ^ seen

    # Close codes are published per channel.
    bad = Recorder(live.ws_url + "/ws/board?last_event_id=x", board.token)
    with pytest.raises(websockets.ConnectionClosed):
        await bad.connect()
    assert bad.ws.protocol.close_rcvd.code in protocol.close_codes("board")
    stranger = Recorder(live.ws_url + "/ws/unit/E99", mdt_token)
    with pytest.raises(websockets.ConnectionClosed):
        await stranger.connect()
    assert stranger.ws.protocol.close_rcvd.code == 4403
    assert 4403 in protocol.close_codes("unit")
