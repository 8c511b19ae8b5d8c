"""The endpoint x role table: the one place that says who may call what.

Keys are (METHOD, path template exactly as the route declares it). Values are a set of roles,
PUBLIC (no authentication) or SELF_AUTHENTICATED (websocket routes, which check the token
they are given with ``principal_from_token`` themselves). A route with no row answers 403 to
everyone, and tests/security/test_policy_matrix.py fails: adding an endpoint means adding a
row here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from cad.security.principal import ROLES


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PUBLIC: Final = _Marker("PUBLIC")
SELF_AUTHENTICATED: Final = _Marker("SELF_AUTHENTICATED")

Rule = frozenset[str] | _Marker


def roles(*names: str) -> frozenset[str]:
    unknown = set(names) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    return frozenset(names)


ANY_ROLE: Final = roles(*ROLES)
STAFF: Final = roles("dispatcher", "supervisor", "admin")          # console operators
OPERATIONS: Final = roles("dispatcher", "supervisor", "field_unit", "admin")
READERS: Final = roles("dispatcher", "supervisor", "field_unit", "analyst", "admin")
MANAGERS: Final = roles("supervisor", "admin")
ADMIN: Final = roles("admin")
ANALYSTS: Final = roles("analyst", "supervisor", "admin")         # reports over history

API = "/api/v1"

RULES: dict[tuple[str, str], Rule] = {
    # --- infrastructure ------------------------------------------------------------------------
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/asyncapi.json"): PUBLIC,           # the websocket protocol (ws_gateway)
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    # --- the console (cad.console): pages and static files carry no data -----------------------
    ("GET", "/"): PUBLIC,
    ("GET", "/console/static/{path}"): PUBLIC,
    ("GET", "/console/vendor/leaflet/{path}"): PUBLIC,
    ("GET", "/console/vendor/swagger-ui/{path}"): PUBLIC,
    ("GET", f"{API}/console/config"): READERS,
    ("GET", f"{API}/basemap"): READERS,
    # --- authentication (cad.security.api) -----------------------------------------------------
    ("POST", f"{API}/auth/login"): PUBLIC,      # rate-limited per client address
    ("POST", f"{API}/auth/refresh"): PUBLIC,    # the refresh token is the credential
    ("POST", f"{API}/auth/logout"): ANY_ROLE,
    ("GET", f"{API}/auth/me"): ANY_ROLE,
    ("POST", f"{API}/auth/password"): ANY_ROLE,
    # --- user administration -------------------------------------------------------------------
    ("GET", f"{API}/users"): ADMIN,
    ("POST", f"{API}/users"): ADMIN,
    ("GET", f"{API}/users/{{user_id}}"): ADMIN,
    ("PATCH", f"{API}/users/{{user_id}}"): ADMIN,
    ("DELETE", f"{API}/users/{{user_id}}"): ADMIN,
    # --- MDT device tokens ---------------------------------------------------------------------
    ("GET", f"{API}/devices"): MANAGERS,
    ("POST", f"{API}/devices"): MANAGERS,
    ("DELETE", f"{API}/devices/{{device_id}}"): MANAGERS,
    # --- audit trail ---------------------------------------------------------------------------
    ("GET", f"{API}/audit"): MANAGERS,
    ("GET", f"{API}/audit/verify"): ADMIN,
    # --- training mode (cad/security/training_api.py): deletes a training agency's exercise ------------
    ("POST", f"{API}/training/reset"): ADMIN,
    # --- incidents / units / dispatch / websocket gateway: add rows below ----------------------
    # --- units and stations (units/api.py) -----------------------------------------------------
    ("GET", f"{API}/units"): READERS,
    ("POST", f"{API}/units"): MANAGERS,
    ("POST", f"{API}/units/import"): MANAGERS,
    ("GET", f"{API}/units/status-table"): READERS,
    ("GET", f"{API}/units/{{unit_id}}"): READERS,
    ("PATCH", f"{API}/units/{{unit_id}}"): MANAGERS,
    ("DELETE", f"{API}/units/{{unit_id}}"): MANAGERS,
    ("POST", f"{API}/units/{{unit_id}}/status"): OPERATIONS,   # field units: their own unit only
    ("POST", f"{API}/units/{{unit_id}}/checkin"): OPERATIONS,  # field units: their own unit only
    ("GET", f"{API}/units/{{unit_id}}/route-to"): OPERATIONS,     # field units: their own unit only
    ("GET", f"{API}/units/{{unit_id}}/status-history"): READERS,
    ("GET", f"{API}/stations"): READERS,
    ("PUT", f"{API}/stations/{{station_id}}"): MANAGERS,
    ("POST", f"{API}/stations/import"): MANAGERS,
    # --- incidents, recommendation, dispatch (incidents/api.py) ---------------------------------
    ("POST", f"{API}/incidents"): STAFF,
    ("GET", f"{API}/incidents"): READERS,
    ("GET", f"{API}/incidents/{{incident_id}}"): READERS,
    ("PATCH", f"{API}/incidents/{{incident_id}}"): STAFF,
    ("GET", f"{API}/incidents/{{incident_id}}/caller"): STAFF,  # personal data: every read audited
    ("POST", f"{API}/incidents/{{incident_id}}/narrative"): OPERATIONS,
    ("POST", f"{API}/incidents/{{incident_id}}/recommendation"): STAFF,
    ("POST", f"{API}/incidents/{{incident_id}}/dispatch"): STAFF,
    ("POST", f"{API}/incidents/{{incident_id}}/close"): STAFF,
    ("POST", f"{API}/incidents/{{incident_id}}/link"): STAFF,
    ("POST", f"{API}/incidents/{{incident_id}}/merge"): STAFF,
    ("GET", f"{API}/incident-types"): READERS,
    ("PUT", f"{API}/incident-types/{{code}}"): MANAGERS,
    ("POST", f"{API}/zones/import"): MANAGERS,
    ("GET", f"{API}/zones"): READERS,
    ("GET", f"{API}/zones/lookup"): READERS,
    # --- geocoding (incidents.geocoding.api): jurisdiction data, shared by every agency ------
    ("GET", f"{API}/geocode"): READERS,
    ("GET", f"{API}/geocode/suggest"): READERS,
    ("GET", f"{API}/geocode/reverse"): READERS,
    ("GET", f"{API}/places"): READERS,
    ("PUT", f"{API}/places/{{place_id}}"): MANAGERS,
    ("DELETE", f"{API}/places/{{place_id}}"): MANAGERS,
    ("GET", f"{API}/response-plans"): READERS,
    ("POST", f"{API}/response-plans"): MANAGERS,
    ("DELETE", f"{API}/response-plans/{{plan_id}}"): MANAGERS,
    ("GET", f"{API}/substitutions"): READERS,
    ("POST", f"{API}/substitutions"): MANAGERS,
    ("GET", f"{API}/timers"): roles("dispatcher", "supervisor", "analyst", "admin"),
    ("GET", f"{API}/board"): roles("dispatcher", "supervisor", "analyst", "admin"),
    ("GET", f"{API}/recommendations/overridden"): roles("dispatcher", "supervisor", "analyst", "admin"),
    # live unit positions in aggregate (who covers which cell): operations only
    ("GET", f"{API}/coverage"): roles("dispatcher", "supervisor", "admin"),
    ("GET", f"{API}/units/{{unit_id}}/route"): OPERATIONS,     # a field unit: its own unit only
    # --- real-time gateway (ws_gateway.api) ---------------------------------------------------
    ("WEBSOCKET", "/ws/board"): SELF_AUTHENTICATED,                 # dispatcher, supervisor
    ("WEBSOCKET", "/ws/unit/{unit_id}"): SELF_AUTHENTICATED,        # field_unit of that unit
    ("POST", f"{API}/units/{{unit_id}}/positions"): roles("field_unit"),  # own unit only
    ("GET", f"{API}/units/{{unit_id}}/track"): roles("analyst", "supervisor"),
    ("GET", f"{API}/units/{{unit_id}}/position"): roles("dispatcher", "supervisor"),  # board
    ("GET", f"{API}/realtime/stats"): MANAGERS,
    # --- analytics (incidents/analytics/api.py): the caller's agencies only -------------------
    ("GET", f"{API}/analytics/report"): ANALYSTS,
    ("GET", f"{API}/analytics/report.csv"): ANALYSTS,
    ("GET", f"{API}/analytics/charts/{{chart}}"): ANALYSTS,
    ("GET", f"{API}/analytics/dispositions"): READERS,
    ("GET", f"{API}/analytics/incidents"): ANALYSTS,
    ("GET", f"{API}/analytics/incidents.csv"): ANALYSTS,
    ("GET", f"{API}/analytics/incidents.parquet"): ANALYSTS,
    ("GET", f"{API}/analytics/incidents/{{incident_id}}/intervals"): ANALYSTS,
    ("GET", f"{API}/analytics/equity"): ANALYSTS,
    ("GET", f"{API}/analytics/hexbins"): ANALYSTS,
    # --- community alerts (incidents/alerts/api.py): the caller's agencies only ---------------
    ("POST", f"{API}/alerts"): MANAGERS,
    ("GET", f"{API}/alerts"): MANAGERS,
    ("GET", f"{API}/alerts/{{alert_id}}"): MANAGERS,
    ("POST", f"{API}/alerts/{{alert_id}}/approve"): MANAGERS,   # never by the drafter
    ("GET", f"{API}/alerts/{{alert_id}}/deliveries"): MANAGERS,
    ("POST", f"{API}/alert-subscriptions"): MANAGERS,
    ("GET", f"{API}/alert-subscriptions"): MANAGERS,
    ("DELETE", f"{API}/alert-subscriptions/{{subscription_id}}"): MANAGERS,
    # Public by design: published alerts only, rate-limited per client address.
    ("GET", "/public/{agency}/alerts/{identifier}.xml"): PUBLIC,
    ("GET", "/public/{agency}/alerts.atom"): PUBLIC,
    ("GET", "/public/{agency}/alerts.json"): PUBLIC,
    ("GET", "/public/{agency}/alerts"): PUBLIC,
    # --- the public face (incidents/public/api.py): no authentication by design; rate-limited
    # per client address like every PUBLIC route; answers pass the publication gate ---------
    ("GET", "/public/{agency}/incidents.geojson"): PUBLIC,
    ("GET", "/public/{agency}/incidents.csv"): PUBLIC,
    ("GET", "/public/{agency}/incidents.atom"): PUBLIC,
    ("GET", "/public/{agency}/requests/{number}"): PUBLIC,
    ("GET", "/public/{agency}/requests"): PUBLIC,
    ("GET", "/public/{agency}/map"): PUBLIC,
    ("GET", "/public/{agency}/lookup"): PUBLIC,
    ("GET", "/public/static/map.js"): PUBLIC,
    # --- feedback, compliments and complaints (incidents/feedback/api.py) -----------------------
    # Public by design: the submission (its own stricter per-address limit besides the public
    # one), the status by unguessable reference, counts with small counts hidden, the pages.
    ("GET", "/public/{agency}/feedback/challenge"): PUBLIC,
    ("POST", "/public/{agency}/feedback"): PUBLIC,
    ("GET", "/public/{agency}/feedback"): PUBLIC,
    ("GET", "/public/{agency}/feedback/status"): PUBLIC,
    ("GET", "/public/{agency}/feedback/stats.json"): PUBLIC,
    ("GET", "/public/{agency}/feedback/{reference}"): PUBLIC,
    # The supervisors' queue: the caller's agencies only; contact data reads audited.
    ("GET", f"{API}/feedback"): MANAGERS,
    ("GET", f"{API}/feedback/overdue"): MANAGERS,
    ("GET", f"{API}/feedback/stats"): ANALYSTS,      # counts only, no case nor person
    ("GET", f"{API}/feedback/{{feedback_id}}"): MANAGERS,
    ("POST", f"{API}/feedback/{{feedback_id}}/assign"): MANAGERS,
    ("POST", f"{API}/feedback/{{feedback_id}}/status"): MANAGERS,
    ("POST", f"{API}/feedback/{{feedback_id}}/notes"): MANAGERS,
    ("GET", f"{API}/publication"): MANAGERS,
    # --- online reports (incidents/reports/api.py). Public: filing spends a challenge
    # (incidents.public.challenge) besides the rate limit; status shows no staff notes. Staff:
    # dispatchers see the queue, supervisors and admins decide and read the contact (audited).
    ("GET", "/public/{agency}/reports/challenge"): PUBLIC,
    ("POST", "/public/{agency}/reports"): PUBLIC,
    ("GET", "/public/{agency}/reports/{tracking}"): PUBLIC,
    ("GET", "/public/{agency}/report"): PUBLIC,
    ("POST", "/public/{agency}/report"): PUBLIC,
    ("GET", "/public/{agency}/report/status"): PUBLIC,
    ("GET", "/public/static/report.js"): PUBLIC,
    ("GET", f"{API}/reports"): STAFF,
    ("GET", f"{API}/reports/{{report_id}}"): STAFF,
    ("GET", f"{API}/reports/{{report_id}}/contact"): MANAGERS,   # personal data: audited
    ("POST", f"{API}/reports/{{report_id}}/accept"): MANAGERS,
    ("POST", f"{API}/reports/{{report_id}}/decline"): MANAGERS,
    ("PUT", f"{API}/publication/{{agency}}/{{code}}"): MANAGERS,
}

# Endpoints sharing the login rate limit (per client address) instead of the public one.
LOGIN_RATE_LIMITED: frozenset[tuple[str, str]] = frozenset({
    ("POST", f"{API}/auth/login"),
    ("POST", f"{API}/auth/refresh"),
})

_CONVERTER = re.compile(r"\{([^}:]+):[^}]+\}")


def normalize_path(path: str) -> str:
    """``/files/{name:path}`` -> ``/files/{name}``: rules may be written either way."""
    return _CONVERTER.sub(r"{\1}", path)


class Policy:
    """RULES plus per-app overrides (test routers), looked up by method and route template."""

    def __init__(self, rules: Mapping[tuple[str, str], Rule] = RULES,
                 overrides: Mapping[tuple[str, str], Rule] | None = None) -> None:
        merged = {**rules, **(overrides or {})}
        self._rules: dict[tuple[str, str], Rule] = {}
        for (method, path), rule in merged.items():
            if not isinstance(rule, (_Marker, frozenset)):
                raise TypeError(f"rule for {method} {path} must be a frozenset of roles or a marker")
            if isinstance(rule, frozenset):
                roles(*rule)
            self._rules[(method.upper(), normalize_path(path))] = rule

    def rule_for(self, method: str, path_template: str) -> Rule | None:
        method = method.upper()
        path = normalize_path(path_template)
        rule = self._rules.get((method, path))
        if rule is None and method == "HEAD":
            rule = self._rules.get(("GET", path))
        return rule

    def allows(self, rule: Rule, role: str | None) -> bool:
        if rule is PUBLIC or rule is SELF_AUTHENTICATED:
            return True
        assert isinstance(rule, frozenset)
        return role in rule

    def unruled(self, routes: Iterable[tuple[str, frozenset[str] | None, bool]]
                ) -> list[tuple[str, str]]:
        """(method, path) of every route without a rule: must be empty. ``routes`` as from
        cad.security.middleware.iter_routes: (path template, methods, is_websocket)."""
        missing: list[tuple[str, str]] = []
        for path, methods, is_ws in routes:
            for method in (["WEBSOCKET"] if is_ws else sorted(methods or {"GET"})):
                if method == "HEAD" and methods and "GET" in methods:
                    continue
                if self.rule_for(method, path) is None:
                    missing.append((method, path))
        return missing
