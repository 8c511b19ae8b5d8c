"""Every endpoint x every role, generated from the OpenAPI schema and the route table: an
endpoint added without a row in cad/security/policy.py fails here."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import APIRouter

from cad.security.middleware import iter_routes
from cad.security.policy import PUBLIC, SELF_AUTHENTICATED, Policy
from cad.security.principal import ROLES
from cad.settings import Settings
from tests.auth import AuthHeaders
from tests.support import RunningApp, running_app

WRITE = {"post", "put", "patch", "delete"}


def _dummy(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("type") == "integer":
        return "987654"
    return "no-such-thing"


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    ops = [(method.upper(), path, op) for path, item in spec["paths"].items()
           for method, op in item.items() if method in WRITE | {"get", "head"}]
    # Logging out ends the caller's session: keep it for last.
    return sorted(ops, key=lambda o: o[1].endswith("/logout"))


def test_every_route_has_a_rule(app: RunningApp) -> None:
    missing = app.runtime.security.policy.unruled(iter_routes(app.app))
    assert not missing, (
        "routes without an access rule (add a row to RULES in cad/security/policy.py): "
        + ", ".join(f"{m} {p}" for m, p in missing))


async def test_every_endpoint_for_every_role(app: RunningApp, auth_headers: AuthHeaders) -> None:
    policy: Policy = app.runtime.security.policy
    callers: dict[str | None, dict[str, str]] = {None: {}}
    for r_name in ROLES:
        callers[r_name] = await auth_headers(r_name)
    async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as c:
        spec = (await c.get("/openapi.json")).json()
        ops = _operations(spec)
        assert len(ops) > 15
        failures: list[str] = []
        for method, template, op in ops:
            rule = policy.rule_for(method, template)
            if rule is None:
                failures.append(f"{method} {template}: no rule")
                continue
            path: str = template
            for param in op.get("parameters", []):
                if param.get("in") == "path":
                    path = path.replace("{" + param["name"] + "}", _dummy(param))
            for role, headers in callers.items():
                kwargs: dict[str, Any] = {"headers": headers}
                if method.lower() in {"post", "put", "patch"}:
                    kwargs["json"] = {}
                r = await c.request(method, path, **kwargs)
                where = f"{method} {template} as {role or 'anonymous'}: {r.status_code} {r.text[:200]}"
                if r.status_code >= 500:
                    failures.append(f"server error: {where}")
                    continue
                if rule is PUBLIC or rule is SELF_AUTHENTICATED:
                    if r.status_code in (401, 403) and "role" in r.text:
                        failures.append(f"public endpoint refused: {where}")
                elif role is None:
                    if r.status_code != 401:
                        failures.append(f"expected 401: {where}")
                elif role not in rule:  # type: ignore[operator]  # a role set, narrowed above
                    if r.status_code != 403:
                        failures.append(f"expected 403: {where}")
                elif r.status_code == 401 or (r.status_code == 403
                                              and r.json().get("detail", "").startswith("role ")):
                    failures.append(f"allowed role refused: {where}")
                if r.status_code >= 400 and not r.headers.get(
                        "content-type", "").startswith("application/problem+json"):
                    failures.append(f"not problem+json: {where}")
    assert not failures, "\n".join(failures)


unruled_router = APIRouter()


@unruled_router.get("/api/v1/forgotten")
async def forgotten() -> dict[str, str]:
    return {"secret": "leaked"}


async def test_route_without_rule_is_refused_to_everyone(database_url: str, tmp_path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                        db_pool_min=1, db_pool_max=4)
    async with running_app(settings, extra_routers=[unruled_router]) as running:
        assert ("GET", "/api/v1/forgotten") in running.runtime.security.policy.unruled(
            iter_routes(running.app))
        headers = await AuthHeaders(running)("admin")
        async with httpx.AsyncClient(base_url=running.base_url) as c:
            for h in ({}, headers):
                r = await c.get("/api/v1/forgotten", headers=h)
                assert r.status_code == 403, r.text
                assert "no access rule" in r.json()["detail"]
                assert "leaked" not in r.text


def test_rules_name_only_known_roles() -> None:
    import pytest

    from cad.security.policy import roles
    with pytest.raises(ValueError):
        roles("dispatcher", "janitor")
    with pytest.raises(ValueError):
        Policy(overrides={("GET", "/x"): frozenset({"root"})})
