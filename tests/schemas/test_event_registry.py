"""The registry of event types (schemas.events.EVENT_TYPES) is complete and not stale: every
type the code emits is registered with a payload model, and every registered type is emitted
somewhere. (tests/ws_gateway/test_wire_format.py validates real payloads against them.)"""

from __future__ import annotations

import ast
import re

from cad.settings import REPO_ROOT
from schemas.events import EVENT_TYPES, TYPED_ENVELOPES

PACKAGES = ("cad", "incidents", "units", "routing", "ws_gateway", "schemas")
EVENT_NAME = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_.]*$")
# Calls that take an event type: uow.emit(type, ...) and helpers that pass one through.
EMITTERS = {"emit", "emit_incident"}


def _emitted() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else (
                    node.func.id if isinstance(node.func, ast.Name) else None)
                if name not in EMITTERS:
                    continue
                for arg in [*node.args[:3], *(k.value for k in node.keywords
                                               if k.arg in ("type", "type_"))]:
                    for c in ast.walk(arg):
                        if isinstance(c, ast.Constant) and isinstance(c.value, str) \
                                and EVENT_NAME.match(c.value):
                            found.setdefault(c.value, f"{path.relative_to(REPO_ROOT)}:"
                                                      f"{node.lineno}")
    return found


def test_every_emitted_event_type_is_registered_and_every_registered_one_emitted() -> None:
    emitted = _emitted()
    assert len(emitted) > 10  # the scan found the emitters
    unregistered = {t: where for t, where in emitted.items() if t not in EVENT_TYPES}
    assert not unregistered, f"register these in schemas/events.py: {unregistered}"
    assert set(EVENT_TYPES) - set(emitted) == set(), "registered but never emitted"


def test_typed_envelopes_fix_the_type() -> None:
    for event_type, model in TYPED_ENVELOPES.items():
        schema = model.model_json_schema()
        assert schema["properties"]["type"]["const"] == event_type
