"""Who is calling: the roles and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("dispatcher", "supervisor", "field_unit", "analyst", "admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. Field units have ``unit_id`` set. ``session_id`` is the login
    session of an access token, or the device-token id of an MDT."""

    user_id: str
    username: str
    role: str
    unit_id: str | None
    agency: str | None
    session_id: str | None
    # Every agency the principal acts for (``agency``, its home agency, is one of them);
    # cad.security.scope turns this into what it may see.
    agencies: tuple[str, ...] = ()
