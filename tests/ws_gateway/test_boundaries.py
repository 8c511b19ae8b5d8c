"""The gateway's seams: it imports no domain package and reaches the domains only through
``ws_gateway.ports.GatewayPorts``; every HTTP endpoint of the gateway, the security package
and the health checks declares what it returns in the OpenAPI document."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from cad.app import create_app
from cad.settings import REPO_ROOT, Settings

DOMAINS = ("incidents", "units", "routing")
GATEWAY = REPO_ROOT / "ws_gateway"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(GATEWAY.glob("*.py"))]


def _imported(node: ast.AST) -> list[tuple[str, list[str]]]:
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [(node.module, [a.name for a in node.names])]
    return []


def test_the_gateway_imports_no_domain_package_and_no_private_names() -> None:
    bad: list[str] = []
    for path, tree in _modules():
        for node in ast.walk(tree):  # nested imports count too
            for module, names in _imported(node):
                where = f"{path.name}:{getattr(node, 'lineno', 0)} imports {module}"
                if module.split(".")[0] in DOMAINS:
                    bad.append(where)
                if not module.startswith("ws_gateway") and any(n.startswith("_") for n in names):
                    bad.append(f"{where} private names {names}")
    assert not bad, bad


def test_the_gateway_has_no_import_guards_nor_getattr_on_app_state() -> None:
    bad: list[str] = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if names & {"ImportError", "ModuleNotFoundError"}:
                    bad.append(f"{path.name}:{node.lineno} guards an import")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in {"getattr", "hasattr"} and node.args \
                    and "state" in ast.unparse(node.args[0]):
                bad.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert not bad, bad


def test_ports_are_typed_callables_without_any() -> None:
    from ws_gateway.ports import GatewayPorts

    hints = GatewayPorts.__annotations__
    assert set(hints) == {"board_snapshot", "unit_snapshot", "resolve_principal",
                          "store_last_fixes", "unit_agency", "place_refusal", "apply_position",
                          "units_changed", "units_reset", "describe_place"}
    assert not any("Any" == str(h) for h in hints.values())


def _declared(schema: dict[str, Any]) -> bool:
    """A schema that says something: a model, a list of models, a typed object."""
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return _declared(schema.get("items", {}))
    if isinstance(schema.get("additionalProperties"), dict):  # a typed mapping
        return _declared(schema["additionalProperties"])
    return bool(schema.get("properties"))


def _declared_file(schema: dict[str, Any]) -> bool:
    """A non-JSON body declared as such: a string (text) or binary schema."""
    return schema.get("type") == "string"


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x: lazy inclusion
    except ImportError:
        return [r for r in routes if isinstance(r, APIRoute)]
    found = [rc.original_route for rc in iter_route_contexts(routes)]
    return [r for r in found if isinstance(r, APIRoute)]


@pytest.fixture
def openapi(tmp_path: Path) -> tuple[dict[str, Any], list[APIRoute]]:
    app = create_app(Settings(database_url="postgresql://unused@127.0.0.1/none",
                              data_dir=tmp_path))
    return app.openapi(), _api_routes(app.routes)


@pytest.mark.parametrize("package", ["ws_gateway", "cad.security", "cad.health", "cad.console", "units",
                                     "incidents.api", "incidents.dispatch", "incidents.analytics",
                                     "incidents.public"])
def test_every_endpoint_declares_its_response(
        openapi: tuple[dict[str, Any], list[APIRoute]], package: str) -> None:
    doc, routes = openapi
    # Pages (the console, /docs) are HTML for browsers, not API: left out of the schema.
    mine = [r for r in routes if r.endpoint.__module__.startswith(package) and r.include_in_schema]
    assert mine, package
    undeclared = []
    for route in mine:
        for method in route.methods or ():
            op = doc["paths"][route.path_format][method.lower()]
            ok = [c for c, r in op["responses"].items() if c.startswith("2")]
            assert ok, (method, route.path)
            for code in ok:
                if code == "204":
                    continue
                content = op["responses"][code].get("content", {})
                if content and "application/json" not in content and all(
                        _declared_file(c.get("schema", {})) for c in content.values()):
                    continue  # a file (CSV, image, Parquet) documented by its media types
                schema = content.get("application/json", {}).get("schema", {})
                if not _declared(schema):
                    undeclared.append(f"{method} {route.path} {code}: {schema}")
    assert not undeclared, undeclared
