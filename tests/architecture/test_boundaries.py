"""The house rules of docs/architecture.md, checked by reading the source (ast): which
package may import which, no import cycles between packages, no reaching into another
package's private names, keyword-only service signatures, and every write to a table from its
owner's repository. Each failure names the file, the line and the rule."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cad", "routing", "units", "incidents", "ws_gateway", "schemas")
DOMAIN = ("units", "incidents", "routing")
# Modules that wire the app, warm it up or expose other packages' commands: they may import
# anything.
WIRING = {"cad.wiring", "cad.app", "cad.cli", "cad.warmup", "cad.demo"}


@dataclass(frozen=True)
class Edge:
    source: str   # importing module
    target: str   # imported module
    names: tuple[str, ...]
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.source} imports {self.target}" + (
            f" ({', '.join(self.names)})" if self.names else "")


def _modules() -> Iterator[tuple[str, Path]]:
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), path


def _edges() -> list[Edge]:
    edges = []
    for module, path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        edges.append(Edge(module, alias.name, (), path, node.lineno))
            elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                  and node.module.split(".")[0] in PACKAGES):
                edges.append(Edge(module, node.module, tuple(a.name for a in node.names),
                                  path, node.lineno))
    return edges


EDGES = _edges()


def _top(module: str) -> str:
    return module.split(".")[0]


def _forbidden(edge: Edge) -> str | None:
    """The rule an import breaks, or None."""
    src, dst = edge.source, edge.target
    s, d = _top(src), _top(dst)
    if s == d:
        if s == "incidents" and dst.startswith("incidents.dispatch") \
                and not src.startswith("incidents.dispatch"):
            return "the incidents core never imports its dispatch workflows (they sit above it)"
        return None
    if src in WIRING:
        return None
    if s == "routing":
        return "routing imports no other project package"
    if s == "schemas":
        return "schemas imports no other project package"
    if s == "cad" and d in DOMAIN + ("ws_gateway",):
        return "cad infrastructure imports no domain package (only the wiring modules)"
    if s == "units" and d == "incidents":
        return "units never imports incidents"
    if s == "incidents" and d == "units" and not src.startswith("incidents.dispatch"):
        return "only incidents.dispatch (the workflows binding units to incidents) imports units"
    if s == "ws_gateway" and d in DOMAIN:
        return "ws_gateway imports no domain package: what it needs is handed to it typed"
    return None


def test_every_import_runs_one_way() -> None:
    broken = [f"{e}: {rule}" for e in EDGES if (rule := _forbidden(e))]
    assert not broken, "forbidden imports:\n" + "\n".join(broken)


def test_no_package_imports_another_packages_private_names() -> None:
    broken = [f"{e}" for e in EDGES if _top(e.source) != _top(e.target)
              and (any(n.startswith("_") for n in e.names)
                   or any(p.startswith("_") and p != "__init__" for p in e.target.split(".")))]
    assert not broken, "imports of private names across packages:\n" + "\n".join(broken)


def test_the_package_import_graph_has_no_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        if e.source in WIRING:
            continue
        s, d = _package(e.source), _package(e.target)
        if s != d:
            graph.setdefault(s, set()).add(d)
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node)


def _package(module: str) -> str:
    """The unit of the package graph: top-level packages, with the dispatch workflows and the
    security subsystem as nodes of their own."""
    for sub in ("incidents.dispatch", "cad.security"):
        if module == sub or module.startswith(sub + "."):
            return sub
    return _top(module)


def test_no_import_of_the_projects_own_modules_is_guarded() -> None:
    """``try: import x / except ImportError`` around the project's own modules hides a broken
    seam as a silently degraded feature."""
    broken = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try):
                continue
            catches = any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                                         "ModuleNotFoundError")
                          for h in node.handlers)
            own = [n for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
                   if isinstance(n, (ast.Import, ast.ImportFrom))
                   and any(_top(name) in PACKAGES for name in _imported(n))]
            if catches and own:
                broken.append(f"{path.relative_to(ROOT)}:{node.lineno} ({module})")
    assert not broken, "guarded imports of project modules:\n" + "\n".join(broken)


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or ""]


def test_only_the_app_factory_touches_app_state() -> None:
    """Everything a handler needs arrives typed (cad.deps.wired / provide, gateway ports);
    ``app.state`` holds the runtime for tests and tools only (cad.app.runtime_of)."""
    broken = []
    for module, path in _modules():
        if module == "cad.app":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "state"
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "app"):
                broken.append(f"{path.relative_to(ROOT)}:{node.lineno} ({module})")
    assert not broken, "app state read outside cad.app:\n" + "\n".join(broken)


SERVICE_MODULES = ("units.service", "incidents.service", "incidents.zones",
                   "incidents.geocoding.service",
                   "incidents.dispatch.service", "incidents.dispatch.recommend",
                   "incidents.dispatch.plans", "incidents.dispatch.timers",
                   "cad.security.service", "incidents.analytics.service",
                   "incidents.public.service", "incidents.reports.service",
                   "incidents.feedback.service")
# Not actions: the token -> principal seam the middleware and the gateway call per request.
NOT_ACTIONS = {"cad.security.service.principal_from_token"}


@pytest.mark.parametrize("module_name", SERVICE_MODULES)
def test_service_functions_take_keyword_only_arguments(module_name: str) -> None:
    """One signature style: ``await action(deps=..., ctx=..., <ids>=..., body=...)``."""
    module = import_module(module_name)
    broken = []
    for name, fn in inspect.getmembers(module, inspect.iscoroutinefunction):
        if (name.startswith("_") or fn.__module__ != module_name
                or f"{module_name}.{name}" in NOT_ACTIONS):
            continue
        params = list(inspect.signature(fn).parameters.values())
        # Actions take everything by keyword; helpers that run inside a caller's transaction
        # take that connection (or unit of work) first, then everything by keyword.
        positional = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY
                      and not (p is params[0] and p.name in ("conn", "uow"))]
        if positional:
            broken.append(f"{module_name}.{name}: not keyword-only: {', '.join(positional)}")
    assert not broken, "\n".join(broken)


# Which repository owns which table: every INSERT, UPDATE or DELETE of a table is written there.
TABLE_OWNERS = {
    "units": "units/repository.py", "stations": "units/repository.py",
    "unit_status_log": "units/repository.py",
    "incidents": "incidents/repository.py", "incident_callers": "incidents/repository.py",
    "incident_narrative": "incidents/repository.py", "incident_links": "incidents/repository.py",
    "incident_units": "incidents/repository.py", "incident_types": "incidents/repository.py",
    "zones": "incidents/repository.py",
    "address_points": "incidents/geocoding/repository.py",
    "places": "incidents/geocoding/repository.py",
    "recommendations": "incidents/dispatch/repository.py",
    "response_plans": "incidents/dispatch/repository.py",
    "slot_substitutions": "incidents/dispatch/repository.py",
    "timer_alerts": "incidents/dispatch/repository.py",
    "historical_calls": "incidents/analytics/repository.py",
    "historical_unit_responses": "incidents/analytics/repository.py",
    "disposition_codes": "incidents/repository.py",
    "alerts": "incidents/alerts/repository.py",
    "alert_subscriptions": "incidents/alerts/repository.py",
    "alert_deliveries": "incidents/alerts/repository.py",
    "public_incident_types": "incidents/public/repository.py",
    "training_agencies": "cad/training.py",
    "feedback": "incidents/feedback/repository.py",
    "feedback_notes": "incidents/feedback/repository.py",
    "public_challenge_uses": "incidents/public/repository.py",
    "public_reports": "incidents/reports/repository.py",
}
_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_]+)\b")


def test_every_table_is_written_only_by_its_owners_repository() -> None:
    broken = []
    for _module, path in _modules():
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for m in _WRITE.finditer(node.value):
                    owner = TABLE_OWNERS.get(m.group(1))
                    if owner is not None and owner != rel:
                        broken.append(f"{rel}:{node.lineno}: writes {m.group(1)} (owner: {owner})")
    assert not broken, "table writes outside the owner's repository:\n" + "\n".join(broken)


def test_the_rules_can_fail() -> None:
    """The checker itself: an edge of each forbidden kind is named."""
    fake = Path(ROOT / "units" / "x.py")
    assert _forbidden(Edge("units.service", "incidents.views", (), fake, 1))
    assert _forbidden(Edge("routing.graph", "cad.settings", (), fake, 1))
    assert _forbidden(Edge("ws_gateway.api", "incidents.dispatch.board", (), fake, 1))
    assert _forbidden(Edge("incidents.service", "units.status", (), fake, 1))
    assert _forbidden(Edge("incidents.service", "incidents.dispatch.board", (), fake, 1))
    assert _forbidden(Edge("cad.uow", "units.repository", (), fake, 1))
    assert not _forbidden(Edge("incidents.dispatch.service", "units.repository", (), fake, 1))
    assert not _forbidden(Edge("cad.wiring", "units.deps", (), fake, 1))
