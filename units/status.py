"""Unit statuses (APCO common status codes) and the one table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum


class UnitStatus(StrEnum):
    AVAILABLE_IN_QUARTERS = "available_in_quarters"  # AIQ: in station, ready
    AVAILABLE_ON_RADIO = "available_on_radio"        # AOR: in service, mobile
    DISPATCHED = "dispatched"                        # DSP: assigned, not yet moving
    EN_ROUTE = "en_route"                            # ENR: responding
    ON_SCENE = "on_scene"                            # ONS: arrived
    TRANSPORTING = "transporting"                    # TRN: patient transport
    AT_HOSPITAL = "at_hospital"                      # AHS: at destination
    OUT_OF_SERVICE = "out_of_service"                # OOS: mechanical, training ...
    OFF_DUTY = "off_duty"                            # OFD: not staffed


APCO_CODES: dict[UnitStatus, str] = {
    UnitStatus.AVAILABLE_IN_QUARTERS: "AIQ",
    UnitStatus.AVAILABLE_ON_RADIO: "AOR",
    UnitStatus.DISPATCHED: "DSP",
    UnitStatus.EN_ROUTE: "ENR",
    UnitStatus.ON_SCENE: "ONS",
    UnitStatus.TRANSPORTING: "TRN",
    UnitStatus.AT_HOSPITAL: "AHS",
    UnitStatus.OUT_OF_SERVICE: "OOS",
    UnitStatus.OFF_DUTY: "OFD",
}

S = UnitStatus
AVAILABLE: frozenset[UnitStatus] = frozenset({S.AVAILABLE_IN_QUARTERS, S.AVAILABLE_ON_RADIO})
# Statuses that tie a unit to an incident.
ASSIGNED: frozenset[UnitStatus] = frozenset(
    {S.DISPATCHED, S.EN_ROUTE, S.ON_SCENE, S.TRANSPORTING, S.AT_HOSPITAL})

# THE transition table. Reaching DISPATCHED happens only through the dispatch action,
# which also binds the unit to an incident; leaving ASSIGNED for any other status clears
# the unit from its incident.
TRANSITIONS: dict[UnitStatus, frozenset[UnitStatus]] = {
    S.OFF_DUTY: frozenset({S.AVAILABLE_IN_QUARTERS, S.AVAILABLE_ON_RADIO, S.OUT_OF_SERVICE}),
    S.OUT_OF_SERVICE: frozenset({S.AVAILABLE_IN_QUARTERS, S.AVAILABLE_ON_RADIO, S.OFF_DUTY}),
    S.AVAILABLE_IN_QUARTERS: frozenset(
        {S.DISPATCHED, S.AVAILABLE_ON_RADIO, S.OUT_OF_SERVICE, S.OFF_DUTY}),
    S.AVAILABLE_ON_RADIO: frozenset(
        {S.DISPATCHED, S.AVAILABLE_IN_QUARTERS, S.OUT_OF_SERVICE, S.OFF_DUTY}),
    S.DISPATCHED: frozenset(
        {S.EN_ROUTE, S.ON_SCENE, S.AVAILABLE_ON_RADIO, S.AVAILABLE_IN_QUARTERS}),
    S.EN_ROUTE: frozenset(
        {S.ON_SCENE, S.AVAILABLE_ON_RADIO, S.AVAILABLE_IN_QUARTERS, S.OUT_OF_SERVICE}),
    S.ON_SCENE: frozenset(
        {S.TRANSPORTING, S.AVAILABLE_ON_RADIO, S.AVAILABLE_IN_QUARTERS, S.OUT_OF_SERVICE}),
    S.TRANSPORTING: frozenset({S.AT_HOSPITAL, S.AVAILABLE_ON_RADIO, S.OUT_OF_SERVICE}),
    S.AT_HOSPITAL: frozenset({S.AVAILABLE_ON_RADIO, S.AVAILABLE_IN_QUARTERS, S.OUT_OF_SERVICE}),
}

# Per-assignment timestamp column set when a unit reports each status on an incident.
ASSIGNMENT_COLUMN: dict[UnitStatus, str] = {
    S.EN_ROUTE: "en_route_at",
    S.ON_SCENE: "on_scene_at",
    S.TRANSPORTING: "transporting_at",
    S.AT_HOSPITAL: "at_hospital_at",
}


def allowed_next(current: UnitStatus | str) -> list[str]:
    return sorted(s.value for s in TRANSITIONS[UnitStatus(current)])


def can_transition(current: UnitStatus | str, new: UnitStatus | str) -> bool:
    return UnitStatus(new) in TRANSITIONS[UnitStatus(current)]


def clears_assignment(current: UnitStatus | str, new: UnitStatus | str) -> bool:
    return UnitStatus(current) in ASSIGNED and UnitStatus(new) not in ASSIGNED
