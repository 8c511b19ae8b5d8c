/* The reference dispatch console (docs/console.md). Built only on the published contracts:
   the HTTP API (/openapi.json) and the websocket protocol (/asyncapi.json). No build step:
   plain browser JavaScript, Leaflet served by the app. */
"use strict";

const API = "/api/v1";
const APCO = {available_in_quarters: "AIQ", available_on_radio: "AOR", dispatched: "DSP",
  en_route: "ENR", on_scene: "ONS", transporting: "TRN", at_hospital: "AHS",
  out_of_service: "OOS", off_duty: "OFD"};
const CODE_TO_STATUS = Object.fromEntries(Object.entries(APCO).map(([s, c]) => [c, s]));
Object.assign(CODE_TO_STATUS, {OS: "on_scene", ER: "en_route", AV: "available_on_radio",
  IQ: "available_in_quarters"});
const RECONNECT_MAX_MS = 5000;
const EVENTS_SHOWN = 300;

const S = {
  tokens: JSON.parse(sessionStorage.getItem("cad.tokens") || "null"),
  user: null, config: null, statusTable: {}, types: [], stations: {},
  units: {}, incidents: {}, positions: {}, lastEventId: null, resnapshot: false,
  overdueIncidents: new Set(), overdueUnits: new Set(), overrides: [],
  rec: null, detailId: null, suggestPath: null,
  ws: null, wsAttempt: 0, maps: {}, routes: {}, serverOverrides: null, mdt: {unit: null, incident: null},
};
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid ?? "")));
  return e;
};

/* An incident's location as text, with how precise the geocoder was (address point,
   interpolated, block, intersection, street, place) wherever the location is shown. */
function locText(i) {
  const text = i.location_text || (i.lat != null ? `${i.lat.toFixed(5)}, ${i.lon.toFixed(5)}` : "");
  return i.location_precision ? `${text} (${i.location_precision.replaceAll("_", " ")})` : text;
}

function flash(msg, isError = true) {
  const f = $("#flash");
  f.textContent = msg;
  f.dataset.kind = isError ? "error" : "info";
}

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "k" + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
}

/* ---------------------------------------------------------------- HTTP */
class ApiError extends Error {
  constructor(status, problem) {
    const where = (problem.errors || problem.invalid_params || []).map((e) => e.loc ? e.loc.join(".") : e.name).filter(Boolean);
    super(`${problem.title || status}: ${problem.detail || ""}${where.length ? " (" + where.join(", ") + ")" : ""}`);
    this.status = status; this.problem = problem;
  }
}

async function api(method, path, body, {idem = null, retry = true} = {}) {
  const headers = {"accept": "application/json"};
  if (S.tokens) headers.authorization = `Bearer ${S.tokens.access_token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  if (idem) headers["idempotency-key"] = idem;
  const r = await fetch(path.startsWith("/") ? path : API + "/" + path,
    {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  if (r.status === 401 && retry && S.tokens && await refresh()) return api(method, path, body, {idem, retry: false});
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new ApiError(r.status, data || {});
  return data;
}

async function refresh() {
  if (S.tokens.device) {   // a device token is not refreshed: refused means revoked or expired
    saveTokens(null); showLogin(); flash("this device's token was refused: ask a supervisor for a new one");
    return false;
  }
  try {
    const r = await fetch(`${API}/auth/refresh`, {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({refresh_token: S.tokens.refresh_token})});
    if (!r.ok) throw new Error("refresh refused");
    saveTokens(await r.json());
    return true;
  } catch (e) { saveTokens(null); showLogin(); return false; }
}

function saveTokens(t) {
  S.tokens = t;
  if (t) sessionStorage.setItem("cad.tokens", JSON.stringify(t)); else sessionStorage.removeItem("cad.tokens");
}

/* ---------------------------------------------------------------- log in */
function showLogin() {
  $("#login").hidden = false;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  $("#username").focus();
}

$("#loginform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await fetch(`${API}/auth/login`, {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({username: $("#username").value, password: $("#password").value})});
    const data = await r.json();
    if (!r.ok) throw new ApiError(r.status, data);
    saveTokens(data);
    $("#login").hidden = true;
    await start();
  } catch (e) { flash(e.message); }
});

/* An MDT signs in with its device token (POST /api/v1/devices, docs/security.md): the token is
   the bearer credential itself, for HTTP and for the unit's websocket. It is kept only for the
   browser tab's session, like a dispatcher's tokens. */
$("#deviceform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = $("#device-token").value.trim();
  if (!/^mdt_/.test(token)) { flash("a device token starts with mdt_ (device-token)"); return; }
  saveTokens({access_token: token, device: true});
  $("#device-token").value = "";
  try {
    const me = await api("GET", "auth/me", undefined, {retry: false});
    if (me.role !== "field_unit") throw new Error("not a field unit's token");
  } catch (e) { saveTokens(null); flash(`device token refused: ${e.message}`); return; }
  flash("device signed in", false);
  $("#login").hidden = true;
  await start();
});

/* ---------------------------------------------------------------- start */
async function start() {
  try {
    S.user = await api("GET", "auth/me");
  } catch (e) { showLogin(); return; }
  $("#who").textContent = `${S.user.username} (${S.user.role})`;
  showTrainingBanner();
  const [config, table] = await Promise.all([api("GET", "console/config"), api("GET", "units/status-table")]);
  S.config = config; S.statusTable = table;
  if (S.user.role === "field_unit") {
    location.hash = "#mdt";
  } else {
    const [types, stations] = await Promise.all([api("GET", "incident-types"), api("GET", "stations")]);
    S.types = types;
    for (const st of stations) S.stations[st.id] = st;
    $("#in-type").replaceChildren(...types.map((t) => el("option", {value: t.code}, `${t.code} - ${t.description}`)));
    try {  // suggestions appear when the server publishes an endpoint for them
      const doc = await fetch("/openapi.json").then((r) => r.json());
      S.suggestPath = Object.keys(doc.paths).find((p) => p.endsWith("/geocode/suggest")) || null;
    } catch (e) { S.suggestPath = null; }
    try {  // the managed disposition codes a close must use
      S.dispositions = (await api("GET", "analytics/dispositions")).filter((d) => d.active);
    } catch (e) { S.dispositions = []; }
    if (!location.hash || location.hash === "#mdt") location.hash = "#dispatch";
  }
  route();
  connect();
  setInterval(tick, 1000);
}

/* Training mode: a trainee (a user acting only for training agencies) sees a banner on every
   screen; training incidents and units carry a TRAINING tag wherever they are listed. */
function showTrainingBanner() {
  const banner = $("#training-banner");
  banner.hidden = !S.user.training;
  document.body.dataset.training = S.user.training ? "true" : "false";
  if (S.user.training) {
    banner.textContent = `TRAINING — ${S.user.agencies.join(", ")}: exercise calls, not real emergencies`;
  }
}

function trainingTag(thing) {
  return thing && thing.training ? el("span", {class: "training-tag", title: "training: an exercise, not real"}, "TRAINING") : "";
}

/* ---------------------------------------------------------------- screens */
function route() {
  const name = (location.hash || "#dispatch").slice(1);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${name}`;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#${name}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  $("#help").hidden = true;
  const mapId = {dispatch: "map-dispatch", board: "map-board", mdt: "map-mdt", supervisor: "map-supervisor"}[name];
  if (mapId && S.config) ensureMap(mapId);
  if (name === "supervisor") { loadTimers(); loadOverrides(); loadCoverage(); }
  render();
}
window.addEventListener("hashchange", route);

/* ---------------------------------------------------------------- map */
function ensureMap(id) {
  if (S.maps[id] || typeof L === "undefined") { if (S.maps[id]) S.maps[id].map.invalidateSize(); return; }
  const map = L.map(id, {preferCanvas: true, keyboard: true, attributionControl: true});
  const b = S.config.bounds;
  if (b) {
    map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    // Streets start at zoom 12 (routing.basemap): open on them rather than on freeways only.
    if (map.getZoom() < 12) map.setView(map.getCenter(), 12);
  } else map.setView([0, 0], 2);
  const state = {map, base: null, band: null, coverage: L.layerGroup().addTo(map), units: L.layerGroup().addTo(map),
    incidents: L.layerGroup().addTo(map), routes: L.layerGroup().addTo(map)};
  S.maps[id] = state;
  if (S.config.tile_url) {
    L.tileLayer(S.config.tile_url, {attribution: S.config.tile_attribution, maxZoom: 19}).addTo(map);
  } else if (S.config.basemap) {
    map.attributionControl.addAttribution(S.config.tile_attribution);
    const load = () => loadBaseMap(state);
    map.on("zoomend", load);
    load();
  }
  if (id === "map-dispatch") {
    map.on("click", (e) => {
      const input = $("#in-location");
      input.value = `${e.latlng.lat.toFixed(6)}, ${e.latlng.lng.toFixed(6)}`;
      input.focus();
      describeClick(e.latlng.lat, e.latlng.lng);
    });
  }
  drawMarkers();
  drawRoutes(id);
  if (id === "map-supervisor") drawCoverage();
}

/* Road routes (GET /units/{id}/route): the assigned units' on the incident detail map
   (map-dispatch), the unit's own on the MDT (map-mdt). */
function drawRoutes(mapId) {
  const state = S.maps[mapId];
  if (!state) return;
  state.routes.clearLayers();
  for (const r of S.routes[mapId] || []) {
    L.polyline(r.points, {color: "#1f6feb", weight: 4, opacity: 0.8, interactive: false}).addTo(state.routes);
  }
}

async function loadRoutes(mapId, unitIds, incidentId, isCurrent = () => true) {
  const got = await Promise.allSettled(unitIds.map((u) =>
    api("GET", `units/${encodeURIComponent(u)}/route?incident_id=${incidentId}`)));
  if (!isCurrent()) return null;  // a newer view asked for routes meanwhile: its own are drawn
  S.routes[mapId] = got.filter((g) => g.status === "fulfilled").map((g) => g.value);
  drawRoutes(mapId);
  return S.routes[mapId];
}

function routeText(r) {
  return `${r.unit_id}: ${mmss(r.eta_s)} by road, ${(r.distance_m / 1000).toFixed(1)} km` + (r.off_road ? " (off road: check position)" : "");
}

function mmss(s) { return `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, "0")}`; }

const BASE_STYLE = {major: {color: "#d0a060", weight: 3}, collector: {color: "#8a96a3", weight: 2},
  local: {color: "#56616c", weight: 1}};

async function loadBaseMap(state) {
  const zoom = state.map.getZoom();
  const bands = S.config.basemap_zoom_bands;
  const band = bands.filter((z) => zoom >= z).pop();
  if (band === state.band) return;
  state.band = band;
  try {
    const geo = await api("GET", `basemap?zoom=${Math.max(band, Math.round(zoom))}`);
    if (state.band !== band) return;
    if (state.base) state.base.remove();
    state.base = L.geoJSON(geo, {interactive: false, style: (f) => BASE_STYLE[f.properties.tier]}).addTo(state.map);
    state.base.bringToBack();
  } catch (e) { flash(`base map: ${e.message}`); }
}

function unitLatLon(u) {
  const p = S.positions[u.id];
  if (p) return [p.lat, p.lon];
  const st = u.home_station && S.stations[u.home_station];
  return st && st.lat != null ? [st.lat, st.lon] : null;
}

function drawMarkers() {
  for (const state of Object.values(S.maps)) {
    state.units.clearLayers(); state.incidents.clearLayers();
    const units = S.user && S.user.role === "field_unit" ? (S.mdt.unit ? [S.mdt.unit] : []) : Object.values(S.units);
    for (const u of units) {
      const ll = unitLatLon(u);
      if (!ll) continue;
      if (state.map.getContainer().id === "map-mdt" && !state.centred) {
        state.centred = true;   // the MDT's map follows its own unit once, then the user
        state.map.setView(ll, 15);
      }
      L.marker(ll, {keyboard: false, title: u.id, icon: L.divIcon({className: "", html:
        `<span class="unit-marker st-${u.status}">${u.id}</span>`})}).addTo(state.units);
    }
    const incidents = S.user && S.user.role === "field_unit" ? (S.mdt.incident ? [S.mdt.incident] : []) : Object.values(S.incidents);
    for (const i of incidents) {
      if (i.lat == null) continue;
      L.marker([i.lat, i.lon], {keyboard: false, title: i.number, icon: L.divIcon({className: "", html:
        `<span class="inc-marker">${i.priority}</span>`})}).addTo(state.incidents);
    }
  }
}

/* ---------------------------------------------------------------- realtime */
function setConn(state) {
  const c = $("#conn");
  if (c.dataset.state === state) return;
  c.dataset.state = state; c.textContent = state;
  // The last few states, for operators' tools and the browser tests (offline -> resyncing -> live).
  c.dataset.history = ((c.dataset.history || "").split(" ").slice(-19).join(" ") + " " + state).trim();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const mdt = S.user.role === "field_unit";
  const path = mdt ? `/ws/unit/${encodeURIComponent(S.user.unit_id)}` : "/ws/board";
  const q = new URLSearchParams({access_token: S.tokens.access_token});
  // After a training reset the board starts over from a snapshot, not a replay.
  if (S.lastEventId !== null && !S.resnapshot) q.set("last_event_id", S.lastEventId);
  S.resnapshot = false;
  setConn(S.lastEventId === null ? "connecting" : "resyncing");
  const ws = new WebSocket(`${proto}//${location.host}${path}?${q}`);
  S.ws = ws;
  ws.onmessage = (m) => onFrame(JSON.parse(m.data), mdt);
  ws.onopen = () => { S.wsAttempt = 0; if (mdt) { flushPositions(); flushQueue(); } };
  ws.onclose = async (ev) => {
    if (S.ws !== ws) return;
    setConn(S.wsAttempt === 0 ? "offline" : "resyncing");
    if (ev.code === 4401 && !(await refresh())) return;
    const wait = Math.min(RECONNECT_MAX_MS, 250 * 2 ** S.wsAttempt++);
    setTimeout(connect, wait);
  };
}

function onFrame(f, mdt) {
  switch (f.type) {
    case "snapshot":
      if (mdt) { S.mdt.unit = f.snapshot.unit; S.mdt.incident = f.snapshot.incident; }
      else { S.incidents = f.snapshot.incidents; S.units = f.snapshot.units; }
      S.lastEventId = f.last_event_id;
      setConn("live");
      break;
    case "resume":
      // Replayed batches follow; live again once the cursor reaches where the server was.
      S.resumeTarget = f.last_event_id;
      setConn(S.lastEventId !== null && S.lastEventId >= f.last_event_id ? "live" : "resyncing");
      break;
    case "resync_required":   // a fresh snapshot follows at once
      setConn("resyncing");
      break;
    case "batch":
      for (const e of f.events || []) applyEvent(e, mdt);
      for (const p of f.positions || []) S.positions[p.unit_id] = p;
      // A training reset deleted what this board shows of that agency: reconnect for a fresh
      // snapshot (the socket's close handler reconnects; connect() skips the replay).
      if (S.resnapshot && S.ws) S.ws.close(1000, "training_reset");
      if (f.last_event_id !== undefined && f.last_event_id !== null) S.lastEventId = Math.max(S.lastEventId ?? 0, f.last_event_id);
      if (!f.replay || (S.resumeTarget != null && S.lastEventId >= S.resumeTarget)) setConn("live");
      break;
    case "heartbeat":
      if (f.last_event_id !== null) S.lastEventId = Math.max(S.lastEventId ?? 0, f.last_event_id);
      setConn("live");
      break;
    case "error": flash(`realtime: ${f.detail || f.message || "error"}`); break;
    default: break;
  }
  scheduleRender();
}

function applyEvent(e, mdt) {
  if (S.lastEventId !== null && e.id <= S.lastEventId) return;  // already applied
  S.lastEventId = e.id;
  const d = e.data || {};
  if (e.type === "training.reset") {
    // Drop what the reset deleted at once (the snapshot that follows has the roster back).
    for (const id of d.incident_ids || []) delete S.incidents[id];
    for (const id of d.unit_ids || []) { delete S.positions[id]; if (!mdt) delete S.units[id]; }
    if (mdt && S.mdt.incident && (d.incident_ids || []).includes(S.mdt.incident.id)) S.mdt.incident = null;
    S.resnapshot = true;
  }
  if (d.incident) {
    if (mdt) { S.mdt.incident = d.incident.closed_at ? null : {...(S.mdt.incident || {}), ...d.incident}; }
    else if (d.incident.status === "closed" || d.incident.merged_into) delete S.incidents[d.incident.id];
    else S.incidents[d.incident.id] = d.incident;
  }
  for (const u of d.units_after || []) applyUnit(u, mdt);
  if (d.unit) applyUnit(d.unit, mdt);
  if (e.type === "timer.pending_overdue" && d.incident) S.overdueIncidents.add(d.incident.id);
  if (e.type === "timer.unit_status_overdue" && d.unit) S.overdueUnits.add(d.unit.id);
  if (e.type === "unit.status_changed" && d.unit) S.overdueUnits.delete(d.unit.id);
  if (!mdt && (d.unit || (d.units_after || []).length)) scheduleCoverage();
  if (e.type === "incident.units_dispatched" && d.recommendation_outcome === "overridden") {
    S.overrides.unshift({number: d.incident.number, units: d.dispatched, reason: d.override_reason, at: e.occurred_at});
    if (!mdt && location.hash === "#supervisor") loadOverrides();
  }
  const list = $("#events");
  list.append(el("li", {"data-event-id": e.id, value: e.id}, `${e.type} ${e.aggregate_type}:${e.aggregate_id}`));
  while (list.children.length > EVENTS_SHOWN) list.firstElementChild.remove();
}

function applyUnit(u, mdt) {
  if (mdt) { if (u.id === S.user.unit_id) S.mdt.unit = u; return; }
  if (u.active === false) delete S.units[u.id]; else S.units[u.id] = u;
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; render(); });
}

// Clock-driven text (time in status, age) is updated in place every second; tables are rebuilt
// only when their content changes, so the keyboard focus and checkboxes survive.
const TIMERS_REFRESH_S = 10;
let ticks = 0;
function tick() {
  for (const e of document.querySelectorAll("[data-since]")) e.textContent = age(e.dataset.since);
  if (++ticks % TIMERS_REFRESH_S === 0 && location.hash === "#supervisor") loadTimers();
  if (ticks % COVERAGE_REFRESH_S === 0) scheduleCoverage();   // units moving on AVL
}

function since(iso) { return el("td", {"data-since": iso || ""}, age(iso)); }

function fillTable(tbody, sig, build) {
  if (tbody.dataset.sig === sig) return;
  const active = document.activeElement;
  const row = active && tbody.contains(active) ? active.closest("tr") : null;
  const key = row ? (row.dataset.incident || row.dataset.unit) : null;
  tbody.replaceChildren(...build());
  tbody.dataset.sig = sig;
  if (key) {
    const again = [...tbody.querySelectorAll("tr")].find((r) => (r.dataset.incident || r.dataset.unit) === key);
    if (again) again.focus();
  }
}

/* ---------------------------------------------------------------- rendering */
function statusBadge(status) {
  return el("span", {class: `status st-${status}`, title: status.replaceAll("_", " ")}, APCO[status] || status);
}

function render() {
  if (!S.user) return;
  const view = (location.hash || "#dispatch").slice(1);
  if (view === "board" || view === "supervisor") renderBoard();
  if (view === "dispatch") renderPending_();
  if (view === "mdt") renderMdt();
  if (view === "supervisor") renderSupervisor();
  drawMarkers();
}

function byPriorityAge(a, b) {
  return a.priority - b.priority || Date.parse(a.received_at || a.created_at) - Date.parse(b.received_at || b.created_at);
}

/* A map click in words (reverse geocoding): the nearest address and its cross streets. */
/* Answers that arrive out of order (docs/console.md): a panel's loader takes a turn from its
   own newest() and shows its answer only while that turn is current, i.e. no later call of the
   same loader has started. Creating a call opens its detail and dispatching opens it again;
   when the first answer came back last (a loaded server) it painted the call as still pending
   after the dispatch, and an older recommendation replaced a newer one, its dispatch button
   focused. */
function newest() {
  let n = 0;
  return () => { const turn = ++n; return () => turn === n; };
}
const clickTurn = newest(), unitTurn = newest(), recTurn = newest(), detailTurn = newest(),
  coverageTurn = newest();

async function describeClick(lat, lon) {
  const current = clickTurn();
  const hint = $("#in-location-hint");
  try {
    const r = await api("GET", `geocode/reverse?lat=${lat}&lon=${lon}`);
    if (current()) hint.textContent = r.description;
  } catch (e) { if (current()) hint.textContent = ""; }
}

/* Where a unit is, in words, from its newest AVL fix (asked when its row is opened: the live
   frames carry coordinates only). */
async function describeUnit(unitId) {
  const current = unitTurn();
  const where = $("#unit-where");
  try {
    const p = await api("GET", `units/${encodeURIComponent(unitId)}/position`);
    if (!current()) return;
    where.textContent = `${unitId}: ${p.description} (fix at ${new Date(p.fix_time).toLocaleTimeString()})`;
  } catch (e) {
    if (!current()) return;
    where.textContent = e.status === 404 ? `${unitId}: no position reported yet` : `${unitId}: ${e.message}`;
  }
}

function renderBoard() {
  const units = Object.values(S.units).sort((a, b) => a.id.localeCompare(b.id));
  const pos = (u) => S.positions[u.id] ? `${S.positions[u.id].lat.toFixed(5)},${S.positions[u.id].lon.toFixed(5)}` : "";
  fillTable($("#units tbody"), JSON.stringify(units.map((u) => [u.id, u.status, u.status_changed_at, u.incident_id,
    S.overdueUnits.has(u.id), pos(u)])), () => units.map((u) => el("tr",
    {"data-unit": u.id, "data-status": u.status, class: S.overdueUnits.has(u.id) ? "overdue" : "",
      tabindex: 0, onclick: () => describeUnit(u.id),
      onkeydown: (ev) => { if (ev.key === "Enter") describeUnit(u.id); },
      "data-pos": S.positions[u.id] ? `${S.positions[u.id].lat.toFixed(5)},${S.positions[u.id].lon.toFixed(5)}` : null},
    el("td", {}, u.id, trainingTag(u)), el("td", {}, u.unit_type), el("td", {}, statusBadge(u.status)),
    since(u.status_changed_at), el("td", {}, u.incident_id ? incidentNumber(u.incident_id) : ""))));
  const incs = Object.values(S.incidents).sort(byPriorityAge);
  fillTable($("#incidents tbody"), JSON.stringify(incs.map((i) => [i.id, i.version, i.status,
    S.overdueIncidents.has(i.id)])), () => incs.map((i) => el("tr",
    {"data-incident": i.id, tabindex: 0, class: S.overdueIncidents.has(i.id) ? "overdue" : "",
      onkeydown: (ev) => { if (ev.key === "Enter") { location.hash = "#dispatch"; showDetail(i.id); } }},
    el("td", {}, i.priority), el("td", {}, i.number, trainingTag(i)), el("td", {}, i.incident_type), el("td", {}, i.status),
    el("td", {}, locText(i)), el("td", {}, i.units.filter((a) => !a.cleared_at).map((a) => a.unit_id).join(" ")),
    since(i.received_at || i.created_at))));
}

function incidentNumber(id) { return S.incidents[id] ? S.incidents[id].number : `#${id}`; }

function renderPending_() {
  const pending = Object.values(S.incidents).filter((i) => i.status === "pending").sort(byPriorityAge);
  fillTable($("#pending tbody"), JSON.stringify(pending.map((i) => [i.id, i.version,
    S.overdueIncidents.has(i.id)])), () => pending.map((i) => el("tr",
    {tabindex: 0, "data-incident": i.id, class: S.overdueIncidents.has(i.id) ? "overdue" : "",
      onkeydown: (ev) => { if (ev.key === "Enter") { showDetail(i.id); recommend(i.id); } },
      onclick: () => { showDetail(i.id); recommend(i.id); }},
    el("td", {}, i.priority), el("td", {}, i.number, trainingTag(i)), el("td", {}, i.incident_type),
    el("td", {}, locText(i)), since(i.received_at || i.created_at))));
}

/* ---------------------------------------------------------------- intake */
function parseLocation(text) {
  const t = text.trim();
  const m = t.match(/^(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)$/);
  if (m) return {lat: Number(m[1]), lon: Number(m[2])};
  if (/[&/]| AND /i.test(t)) return {intersection: t.replace(/\s*\/\s*/, " & ").replace(/ AND /i, " & ")};
  return {address: t};
}

let suggestTimer = null;
$("#in-location").addEventListener("input", (ev) => {
  if (!S.suggestPath) return;
  clearTimeout(suggestTimer);
  const q = ev.target.value.trim();
  if (q.length < 2) return;
  suggestTimer = setTimeout(async () => {
    try {
      const r = await api("GET", `${S.suggestPath}?q=${encodeURIComponent(q)}`);
      $("#in-suggest").replaceChildren(...r.candidates.slice(0, 10).map((c) => el("option", {value: c.label})));
    } catch (e) { /* suggestions are a help, not a requirement */ }
  }, 150);
});

async function createIncident(type, locationText, extra = {}) {
  const body = {agency: S.user.agency, incident_type: type, location: parseLocation(locationText)};
  Object.assign(body, extra);
  const inc = await api("POST", "incidents", body, {idem: uuid()});
  S.incidents[inc.id] = inc;
  const dup = $("#duplicates");
  if (inc.possible_duplicates && inc.possible_duplicates.length) {
    dup.hidden = false;
    dup.replaceChildren(el("h3", {}, `Possible duplicates of ${inc.number}`), el("ul", {},
      inc.possible_duplicates.map((d) => el("li", {}, `${d.number} ${d.incident_type} — ${Math.round(d.distance_m)} m, ${Math.round(d.seconds_apart / 60)} min apart`))));
  } else { dup.hidden = true; }
  flash(`created ${inc.number} (id ${inc.id})`, false);
  showDetail(inc.id);
  await recommend(inc.id);
  return inc;
}

$("#intake").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const extra = {};
  const p = $("#in-priority").value; if (p) extra.priority = Number(p);
  const name = $("#in-caller").value.trim(), phone = $("#in-phone").value.trim();
  if (name || phone) extra.caller = {...(name ? {name} : {}), ...(phone ? {callback_number: phone} : {})};
  const narrative = $("#in-narrative").value.trim(); if (narrative) extra.narrative = narrative;
  try {
    await createIncident($("#in-type").value, $("#in-location").value, extra);
    $("#intake").reset();
  } catch (e) {
    flash(e.message);
    if (e.problem && Array.isArray(e.problem.candidates)) showCandidates(e.problem.candidates);
  }
});

/* An uncertain address (422 with candidates): the dispatcher chooses; the choice is sent
   again as the matched address, which the geocoder then finds exactly. */
function showCandidates(candidates) {
  const panel = $("#duplicates");
  panel.hidden = false;
  panel.replaceChildren(el("h3", {}, "Which location? Choose one (or type a better one)"),
    el("ul", {id: "candidates"}, candidates.map((c) => el("li", {},
      el("button", {type: "button", onclick: () => {
        $("#in-location").value = c.label;
        panel.hidden = true;
        $("#intake").requestSubmit();
      }}, `${c.label} — ${c.precision.replaceAll("_", " ")}, score ${c.score.toFixed(2)}`)))));
  const first = panel.querySelector("button");
  if (first) first.focus();
}
$("#intake").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); $("#intake").requestSubmit(); }
});

/* ---------------------------------------------------------------- recommendation, dispatch */
async function recommend(id) {
  const current = recTurn();
  const panel = $("#recommendation");
  try {
    const rec = await api("POST", `incidents/${id}/recommendation`, {});
    if (!current()) return;
    S.rec = rec;
    panel.hidden = false;
    const picks = rec.picks.map((p) => p.unit_id);
    panel.replaceChildren(
      el("h3", {}, `Recommendation for ${incidentNumber(id)} — ${rec.plan.name} (${rec.eta_method.replaceAll("_", " ")})`),
      el("table", {class: "grid", id: "picks"},
        el("thead", {}, el("tr", {}, ["Slot", "Unit", "ETA", "Distance", "Position", "Reason"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rec.picks.map((p) => el("tr", {"data-unit": p.unit_id},
          el("td", {}, p.slot_type + (p.substitute ? " (sub)" : "")), el("td", {}, p.unit_id),
          el("td", {}, `${Math.floor(p.eta_s / 60)}:${String(Math.round(p.eta_s % 60)).padStart(2, "0")}`),
          el("td", {}, `${(p.distance_m / 1000).toFixed(1)} km`),
          el("td", {}, p.position_source + (p.stale_position ? " (stale)" : "")), el("td", {}, p.reason))))),
      rec.already_assigned.length ? el("p", {}, "Already assigned: " + rec.already_assigned.map((a) => a.unit_id).join(", ")) : "",
      rec.runners_up && rec.runners_up.length ? el("h3", {}, "Runners-up (Use: sends it instead of the pick of its slot type)") : "",
      rec.runners_up && rec.runners_up.length ? el("table", {class: "grid", id: "runners-up"},
        el("thead", {}, el("tr", {}, ["Slot", "Unit", "ETA", "Distance", "Position", "Reason", "Select"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rec.runners_up.map((p) => el("tr", {"data-unit": p.unit_id},
          el("td", {}, `${p.slot_type} #${p.rank}` + (p.substitute ? " (sub)" : "")), el("td", {}, p.unit_id),
          el("td", {}, mmss(p.eta_s)), el("td", {}, `${(p.distance_m / 1000).toFixed(1)} km`),
          el("td", {}, p.position_source + (p.stale_position ? " (stale)" : "")), el("td", {}, p.reason),
          el("td", {}, el("button", {type: "button", class: "use-runner", "data-unit": p.unit_id,
            "aria-label": `use ${p.unit_id} instead`, onclick: () => useRunnerUp(rec, p)}, `Use ${p.unit_id}`))))))
        : "",
      rec.shortfalls.length ? el("ul", {class: "shortfalls"}, rec.shortfalls.map((s) =>
        el("li", {}, `Short: ${s.slot_type} ${s.filled}/${s.needed} — ${s.reason}`))) : "",
      el("button", {id: "dispatch-picks", type: "button", disabled: picks.length ? null : "disabled",
        onclick: () => dispatch(id, picks)}, `Dispatch ${picks.join(" ") || "(none)"}`),
      el("label", {for: "other-units"}, "Other units (space separated)"),
      el("input", {id: "other-units", placeholder: "E07 M89"}),
      el("label", {for: "override-reason"}, "Override reason (required when the units differ)"),
      el("input", {id: "override-reason"}),
      el("button", {type: "button", id: "dispatch-other", onclick: () => dispatch(id,
        $("#other-units").value.trim().toUpperCase().split(/\s+/).filter(Boolean), $("#override-reason").value.trim())},
      "Dispatch other units"));
    $("#dispatch-picks").focus();
  } catch (e) { flash(e.message); }
}

/* A runner-up replaces the pick of its slot type in "other units" (the picks to start with);
   the dispatcher then gives the override reason the server requires. */
function useRunnerUp(rec, runner) {
  const input = $("#other-units");
  const current = input.value.trim() ? input.value.trim().toUpperCase().split(/\s+/) : rec.picks.map((p) => p.unit_id);
  const replaced = rec.picks.find((p) => p.slot_type === runner.slot_type && current.includes(p.unit_id));
  const next = current.filter((u) => !replaced || u !== replaced.unit_id);
  if (!next.includes(runner.unit_id)) next.push(runner.unit_id);
  input.value = next.join(" ");
  $("#override-reason").focus();
}

async function dispatch(id, unitIds, reason = "") {
  const body = {unit_ids: unitIds};
  if (S.rec && S.rec.incident_id === id) body.recommendation_id = S.rec.id;
  const picks = S.rec && S.rec.incident_id === id ? S.rec.picks.map((p) => p.unit_id).sort().join(" ") : null;
  if (reason) body.override_reason = reason;
  else if (picks !== null && picks !== [...unitIds].sort().join(" ")) {
    flash("these units differ from the recommendation: give an override reason (D ID UNITS / REASON)");
    return null;
  }
  try {
    const out = await api("POST", `incidents/${id}/dispatch`, body, {idem: uuid()});
    for (const u of out.units) S.units[u.id] = u;
    S.incidents[out.incident.id] = out.incident;
    flash(`dispatched ${out.dispatched.join(" ")} to ${out.incident.number}`, false);
    $("#recommendation").hidden = true;
    showDetail(id);
    return out;
  } catch (e) { flash(e.message); return null; }
}

/* ---------------------------------------------------------------- incident detail */
async function showDetail(id) {
  const current = detailTurn();
  S.detailId = id;
  const panel = $("#detail");
  try {
    const i = await api("GET", `incidents/${id}`);
    if (!current()) return;
    const timeline = [["received", i.received_at], ["answered", i.answered_at], ["created", i.created_at],
      ["first dispatched", i.first_dispatched_at], ["first en route", i.first_en_route_at],
      ["first on scene", i.first_on_scene_at], ["cleared", i.cleared_at], ["closed", i.closed_at]];
    for (const a of i.units) {
      for (const k of ["dispatched", "en_route", "on_scene", "transporting", "at_hospital", "cleared"]) {
        if (a[`${k}_at`]) timeline.push([`${a.unit_id} ${k.replaceAll("_", " ")}`, a[`${k}_at`]]);
      }
    }
    const rows = timeline.filter((t) => t[1]).sort((a, b) => Date.parse(a[1]) - Date.parse(b[1]));
    panel.hidden = false;
    panel.replaceChildren(
      el("h3", {}, `${i.number} · ${i.incident_type} · P${i.priority} · ${i.status}`),
      i.training ? el("p", {class: "training-tag", id: "detail-training", role: "note"},
        "TRAINING incident — an exercise, not a real emergency") : "",
      el("p", {}, locText(i)),
      el("h3", {}, "Routes"),
      el("ul", {id: "detail-routes"}, el("li", {}, "…")),
      el("h3", {}, "Timeline"),
      el("ol", {class: "timeline"}, rows.map(([what, at]) => el("li", {}, `${new Date(at).toLocaleTimeString()} ${what}`))),
      el("h3", {}, "Narrative"),
      el("ul", {class: "narrative"}, i.narrative.map((n) => el("li", {}, `${new Date(n.at).toLocaleTimeString()} ${n.author}: ${n.text}`))),
      el("label", {for: "close-disposition"}, "Disposition"),
      S.dispositions && S.dispositions.length
        ? el("select", {id: "close-disposition"}, S.dispositions.map((d) => {
            const o = el("option", {value: d.code}, `${d.code} - ${d.description}`);
            if (d.code === "REPORT") o.selected = true;
            return o;
          }))
        : el("input", {id: "close-disposition", value: "REPORT"}),
      el("button", {type: "button", id: "close-incident", onclick: () =>
        closeIncident(id, $("#close-disposition").value).then(() => { panel.hidden = true; }).catch((e) => flash(e.message))},
      "Close incident"),
      el("label", {for: "narr-add"}, "Add to narrative (Enter)"),
      el("input", {id: "narr-add", onkeydown: async (ev) => {
        if (ev.key !== "Enter" || !ev.target.value.trim()) return;
        try { await api("POST", `incidents/${id}/narrative`, {text: ev.target.value.trim()}, {idem: uuid()}); showDetail(id); }
        catch (e) { flash(e.message); }
      }}));
    const active = i.units.filter((a) => !a.cleared_at && !a.on_scene_at).map((a) => a.unit_id);
    const routes = active.length && i.lat != null
      ? await loadRoutes("map-dispatch", active, id, current) : [];
    if (!current()) return;
    if (!active.length) { S.routes["map-dispatch"] = []; drawRoutes("map-dispatch"); }
    if (S.detailId === id) {
      $("#detail-routes").replaceChildren(...(routes.length
        ? routes.map((r) => el("li", {"data-unit": r.unit_id, "data-points": r.points.length}, routeText(r)))
        : [el("li", {}, active.length ? "no road route" : "no unit on the way")]));
    }
  } catch (e) { flash(e.message); }
}

async function closeIncident(id, disposition) {
  // Disposition codes are upper case (REPORT, NO_MERIT, CANCELLED, TRANSPORTED ...).
  const out = await api("POST", `incidents/${id}/close`, {disposition: (disposition || "REPORT").toUpperCase()}, {idem: uuid()});
  delete S.incidents[id];
  flash(`closed ${out.number || "#" + id}`, false);
  return out;
}

/* ---------------------------------------------------------------- command line */
async function runCommand(line) {
  const parts = line.trim().split(/\s+/);
  const verb = (parts.shift() || "").toUpperCase();
  const [slash] = [line.indexOf("/")];
  switch (verb) {
    case "?": case "HELP": $("#help").hidden = !$("#help").hidden; return;
    case "N": return createIncident(parts[0], parts.slice(1).join(" "));
    case "R": return recommend(Number(parts[0]));
    case "I": location.hash = "#dispatch"; return showDetail(Number(parts[0]));
    case "D": {
      const id = Number(parts[0]);
      const head = slash >= 0 ? line.slice(0, slash) : line;
      const reason = slash >= 0 ? line.slice(slash + 1).trim() : "";
      const units = head.trim().split(/\s+/).slice(2).map((u) => u.toUpperCase());
      if (!units.length) {
        if (!S.rec || S.rec.incident_id !== id) await recommend(id);
        // only this incident's own picks: the recommendation shown may be another call's
        // (this one's failed, or a newer one was asked for meanwhile)
        if (!S.rec || S.rec.incident_id !== id) { flash(`no recommendation for incident ${id} to dispatch`); return null; }
        return dispatch(id, S.rec.picks.map((p) => p.unit_id));
      }
      return dispatch(id, units, reason);
    }
    case "S": {
      const unit = (parts[0] || "").toUpperCase();
      const status = CODE_TO_STATUS[(parts[1] || "").toUpperCase()] || (parts[1] || "").toLowerCase();
      const out = await api("POST", `units/${encodeURIComponent(unit)}/status`, {status}, {idem: uuid()});
      S.units[out.unit.id] = out.unit;
      flash(`${unit} ${APCO[out.from_status]} → ${APCO[out.unit.status]}`, false);
      return out;
    }
    case "NA": return api("POST", `incidents/${Number(parts[0])}/narrative`, {text: parts.slice(1).join(" ")}, {idem: uuid()})
      .then(() => showDetail(Number(parts[0])));
    case "C": return closeIncident(Number(parts[0]), parts.slice(1).join(" "));
    default: flash(`unknown command ${verb}: type ? for help`);
  }
}

$("#cmdform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("#cmd");
  const line = input.value;
  try { await runCommand(line); input.value = ""; } catch (e) { flash(e.message); }
  render();
});

document.addEventListener("keydown", (ev) => {
  if (ev.key === "F2" || (ev.key === "Escape" && document.activeElement !== $("#cmd"))) { ev.preventDefault(); $("#cmd").focus(); }
  if (ev.altKey && /^[1-4]$/.test(ev.key)) {
    ev.preventDefault();
    location.hash = ["#dispatch", "#board", "#mdt", "#supervisor"][Number(ev.key) - 1];
  }
  if (ev.altKey && ev.key.toLowerCase() === "n") { ev.preventDefault(); location.hash = "#dispatch"; $("#in-type").focus(); }
});

/* ---------------------------------------------------------------- MDT */
const QUEUE_KEY = "cad.mdt.queue";
const POSITIONS_MAX = 120;
const positionBuffer = [];

function queue() { return JSON.parse(localStorage.getItem(QUEUE_KEY) || "[]"); }
function saveQueue(q) { localStorage.setItem(QUEUE_KEY, JSON.stringify(q)); renderMdt(); }

function mdtStatus(status) {
  const q = queue();
  // The idempotency key is made once, when the button is pressed: a resend after a lost answer
  // replays the first result instead of changing the status twice.
  q.push({key: uuid(), status, incident_id: S.mdt.unit && S.mdt.unit.incident_id, reported_at: new Date().toISOString()});
  saveQueue(q);
  flushQueue();
}

let flushing = false;
async function flushQueue() {
  if (flushing) return;
  flushing = true;
  try {
    for (;;) {
      const q = queue();
      if (!q.length) break;
      const item = q[0];
      const body = {status: item.status, reported_at: item.reported_at};
      if (item.incident_id) body.incident_id = item.incident_id;
      try {
        const out = await api("POST", `units/${encodeURIComponent(S.user.unit_id)}/status`, body, {idem: item.key});
        S.mdt.unit = out.unit;
      } catch (e) {
        if (!(e instanceof ApiError)) break;   // network: keep it, retry on reconnect
        flash(e.message);                       // refused: drop it, the server holds the truth
      }
      saveQueue(queue().filter((x) => x.key !== item.key));
    }
  } finally { flushing = false; }
  scheduleRender();
}

function sendFix(fix) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify({type: "position", ...fix}));
  else { positionBuffer.push(fix); if (positionBuffer.length > POSITIONS_MAX) positionBuffer.shift(); }
}

function flushPositions() {
  if (!positionBuffer.length || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  S.ws.send(JSON.stringify({type: "positions", fixes: positionBuffer.splice(0)}));
}

function startGeolocation() {
  if (!navigator.geolocation || S.geoWatch !== undefined) return;
  S.geoWatch = navigator.geolocation.watchPosition((p) => {
    const fix = {lat: p.coords.latitude, lon: p.coords.longitude, fix_time: new Date(p.timestamp).toISOString()};
    if (p.coords.accuracy != null) fix.accuracy_m = p.coords.accuracy;
    if (p.coords.heading != null && !Number.isNaN(p.coords.heading)) fix.heading_deg = p.coords.heading;
    if (p.coords.speed != null) fix.speed_mps = p.coords.speed;
    S.positions[S.user.unit_id] = {unit_id: S.user.unit_id, ...fix};
    sendFix(fix);
  }, () => {}, {enableHighAccuracy: true, maximumAge: 5000});
}
window.addEventListener("online", () => { flushQueue(); flushPositions(); });

function renderMdt() {
  const u = S.mdt.unit;
  if (!u || !S.user || S.user.role !== "field_unit") return;
  startGeolocation();
  $("#mdt-unit").textContent = u.id;
  $("#mdt-status").replaceChildren(statusBadge(u.status), ` ${u.status.replaceAll("_", " ")} · `,
    el("span", {"data-since": u.status_changed_at || ""}, age(u.status_changed_at)));
  // The incident only while the unit is on it (a cleared unit keeps no stale assignment).
  const i = S.mdt.incident && u.incident_id === S.mdt.incident.id ? S.mdt.incident : null;
  $("#mdt-assignment").replaceChildren(i
    ? el("div", {}, el("h3", {}, `${i.number} · ${i.incident_type} · P${i.priority}`),
      el("p", {class: "loc"}, locText(i)),
      el("ul", {}, (i.narrative || []).map((n) => el("li", {}, n.text))))
    : el("p", {}, "No assignment"));
  mdtRoute(u, i);
  const allowed = ((S.statusTable[u.status] || {}).allowed_next || []).filter((s) => s !== "dispatched");
  const key = allowed.join(",");
  const box = $("#mdt-buttons");
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren(...allowed.map((s) => el("button", {type: "button", "data-status": s, onclick: () => mdtStatus(s)},
      `${APCO[s]} ${s.replaceAll("_", " ")}`)));
  }
  const q = queue();
  $("#mdt-queue").textContent = q.length ? `${q.length} waiting to send: ${q.map((x) => APCO[x.status]).join(" ")}` : "";
}

/* The unit's road route to its incident while it is on the way (dispatched, en route), fetched
   again when the assignment changes and at most every MDT_ROUTE_REFRESH_S as the unit moves. */
const MDT_ROUTE_REFRESH_S = 15;
let mdtRouteKey = null, mdtRouteAt = 0;
function mdtRoute(u, i) {
  const going = i && i.lat != null && ["dispatched", "en_route"].includes(u.status);
  const key = going ? `${u.id}:${i.id}` : null;
  if (!going) {
    if (mdtRouteKey !== null) { mdtRouteKey = null; S.routes["map-mdt"] = []; drawRoutes("map-mdt"); $("#mdt-route").textContent = ""; }
    return;
  }
  if (key === mdtRouteKey && Date.now() - mdtRouteAt < MDT_ROUTE_REFRESH_S * 1000) return;
  const fresh = key !== mdtRouteKey;
  mdtRouteKey = key; mdtRouteAt = Date.now();
  loadRoutes("map-mdt", [u.id], i.id).then((routes) => {
    const r = routes[0];
    const state = S.maps["map-mdt"];
    // a new assignment: show the whole way once, then leave the map to the user
    if (r && fresh && state) state.map.fitBounds(L.latLngBounds(r.points), {padding: [24, 24], maxZoom: 17});
    const box = $("#mdt-route");
    box.textContent = r ? `Route ${routeText(r)}` : "no road route";
    if (r) box.dataset.points = String(r.points.length);
  });
}

/* ---------------------------------------------------------------- supervisor */
/* Coverage (GET /coverage): H3 cells coloured by the ETA band of the nearest available unit,
   the legend in words, the share covered per type and zone; reloaded (debounced) when a board
   event changes a unit and every COVERAGE_REFRESH_S while the screen is shown. */
const COVERAGE_REFRESH_S = 30;
const COVERAGE_DEBOUNCE_MS = 1000;
const BAND_COLOURS = ["#1a9850", "#a6d96a", "#fdae61", "#d73027", "#8c8c8c"];
let coverageTimer = null;
function scheduleCoverage() {
  if (location.hash !== "#supervisor" || coverageTimer) return;
  coverageTimer = setTimeout(() => { coverageTimer = null; loadCoverage(); }, COVERAGE_DEBOUNCE_MS);
}

function pct(x) { return x === null || x === undefined ? "no data" : `${(100 * x).toFixed(1)} %`; }

async function loadCoverage() {
  const q = new URLSearchParams();
  const type = $("#cov-type").value;
  if (type) q.set("unit_type", type);
  const thr = $("#cov-threshold").value.trim();
  if (thr) q.set("threshold_s", thr);
  const without = $("#cov-without").value.trim().split(/[\s,]+/).filter(Boolean);
  if (without.length) q.set("without", without.join(","));
  const current = coverageTurn();
  try {
    const body = await api("GET", `coverage?${q}`);
    if (!current()) return;   // a newer request answered first
    S.coverage = body;
  } catch (e) {
    if (!current()) return;
    S.coverage = null;
    $("#cov-summary").textContent = `Coverage unavailable: ${e.message}`;
    drawCoverage();
    return;
  }
  renderCoverage();
  drawCoverage();
}

function renderCoverage() {
  const c = S.coverage;
  if (!c) return;
  const s = c.summary;
  const sel = $("#cov-type");
  const types = s.by_type.map((t) => t.unit_type);
  const have = [...sel.options].map((o) => o.value).slice(1);
  if (JSON.stringify(have) !== JSON.stringify(types)) {
    const keep = sel.value;
    sel.replaceChildren(el("option", {value: ""}, "any unit type"), ...types.map((t) => el("option", {value: t}, t)));
    sel.value = types.includes(keep) ? keep : "";
  }
  const what = s.unit_types.length ? s.unit_types.join(" or ") : "any unit";
  $("#cov-summary").textContent = `${what}: ${pct(s.covered_share)} of ${s.cells} cells covered within ${s.threshold_s} s`
    + ` (calls over ${s.demand_days} days: ${pct(s.demand_covered_share)}); ${s.units_counted.length} units counted`
    + (s.what_if ? `; what if ${s.without.join(", ")} committed: ${s.what_if.cells_losing_coverage} cells`
      + ` lose coverage (now ${pct(s.what_if.covered_share_now)})` : "")
    + (s.units_without_position.length ? `; no position: ${s.units_without_position.join(", ")}` : "")
    + `. Updated ${new Date(s.computed_at).toLocaleTimeString()}.`;
  $("#sv-coverage").dataset.coveredShare = String(s.covered_share);
  $("#sv-coverage").dataset.without = s.without.join(",");
  $("#sv-coverage").dataset.units = s.units_counted.join(",");
  const counts = [0, 0, 0, 0, 0];
  for (const f of c.features) counts[f.properties.band]++;
  $("#cov-legend").replaceChildren(...s.bands.map((b) => el("li", {"data-band": b.band},
    el("span", {class: "swatch", style: `background:${BAND_COLOURS[b.band]}`, "aria-hidden": "true"}),
    `${b.label}: ${counts[b.band]} cells`)),
    ...(s.what_if ? [el("li", {"data-band": "lost"}, el("span", {class: "swatch lost", "aria-hidden": "true"}),
      `white outline: covered now, lost if ${s.without.join(", ")} committed: ${s.what_if.cells_losing_coverage} cells`)] : []));
  $("#cov-types tbody").replaceChildren(...s.by_type.map((t) => el("tr", {"data-type": t.unit_type},
    el("td", {}, t.unit_type), el("td", {}, t.units_available), el("td", {}, `${t.threshold_s} s`),
    el("td", {}, pct(t.covered_share)), el("td", {}, pct(t.demand_covered_share)))));
  $("#cov-zones tbody").replaceChildren(...(s.zones.length ? s.zones.map((z) => el("tr", {"data-zone": z.zone_id},
    el("td", {}, `${z.name} (${z.kind})`), el("td", {}, z.cells), el("td", {}, pct(z.covered_share)),
    el("td", {}, pct(z.demand_covered_share))))
    : [el("tr", {}, el("td", {colspan: 4}, `no zones: the road graph's extent (${s.cells} cells)`))]));
}

function drawCoverage() {
  const state = S.maps["map-supervisor"];
  if (!state) return;
  state.coverage.clearLayers();
  if (!S.coverage) return;
  L.geoJSON(S.coverage, {interactive: false, style: (f) => ({fillOpacity: 0.45, fillColor: BAND_COLOURS[f.properties.band],
    stroke: f.properties.lost_coverage, color: "#ffffff", weight: 2, dashArray: "4 3"})}).addTo(state.coverage);
}

$("#cov-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadCoverage(); });
$("#cov-type").addEventListener("change", () => { $("#cov-threshold").value = ""; loadCoverage(); });
$("#cov-what-if-selected").addEventListener("click", () => {
  const ids = [...document.querySelectorAll("#sv-roster input:checked")].map((c) => c.value);
  $("#cov-without").value = ids.join(" ");
  loadCoverage();
});

async function loadTimers() {
  try {
    const t = await api("GET", "timers");
    $("#sv-timers").replaceChildren(
      ...t.pending_incidents.map((x) => el("li", {}, `${x.number} P${x.priority} pending ${Math.round(x.age_s)} s (limit ${x.threshold_s})`)),
      ...t.units.map((x) => el("li", {}, `${x.unit_id} ${APCO[x.status]} ${Math.round(x.age_s)} s (limit ${x.threshold_s})`)));
  } catch (e) { flash(e.message); }
}

/* Overridden recommendations as the server recorded them (GET /recommendations/overridden):
   what was recommended, what was sent, by whom and why, including those made before the page
   opened; a live override reloads the list. */
async function loadOverrides() {
  try {
    S.serverOverrides = await api("GET", "recommendations/overridden?limit=50");
    renderSupervisor();
  } catch (e) { flash(e.message); }
}

function renderSupervisor() {
  const rows = S.serverOverrides || [];
  const key = JSON.stringify(rows.map((o) => o.recommendation_id));
  const list = $("#sv-overrides");
  if (list.dataset.key !== key) {
    list.dataset.key = key;
    list.replaceChildren(...(rows.length ? rows.map((o) => el("li", {"data-recommendation": o.recommendation_id},
      `${o.number}: recommended ${o.recommended_units.join(" ") || "(none)"}, sent ${o.dispatched_units.join(" ")} — ${o.reason || ""}`
      + ` (${o.overridden_by || "?"}, ${o.overridden_at ? new Date(o.overridden_at).toLocaleTimeString() : "?"})`))
      : [el("li", {}, "none")]));
  }
  const checked = new Set([...document.querySelectorAll("#sv-roster input:checked")].map((c) => c.value));
  const units = Object.values(S.units).sort((a, b) => a.id.localeCompare(b.id));
  fillTable($("#sv-roster tbody"), JSON.stringify(units.map((u) => [u.id, u.status])), () => units.map((u) => el("tr", {"data-unit": u.id},
    el("td", {}, el("input", {type: "checkbox", value: u.id, "aria-label": `select ${u.id}`, checked: checked.has(u.id) ? "checked" : null})),
    el("td", {}, u.id), el("td", {}, statusBadge(u.status)))));
}

document.querySelectorAll("[data-bulk]").forEach((b) => b.addEventListener("click", async () => {
  const ids = [...document.querySelectorAll("#sv-roster input:checked")].map((c) => c.value);
  const results = await Promise.allSettled(ids.map((id) => api("POST", `units/${encodeURIComponent(id)}/status`, {status: b.dataset.bulk}, {idem: uuid()})));
  const failed = results.map((r, k) => [r, ids[k]]).filter(([r]) => r.status === "rejected");
  flash(failed.length ? failed.map(([r, id]) => `${id}: ${r.reason.message}`).join("; ") : `${ids.length} units set to ${APCO[b.dataset.bulk]}`, failed.length > 0);
}));

if (S.tokens) start(); else showLogin();
