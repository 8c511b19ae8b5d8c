"""What a principal may see and touch: one ``Scope``, derived once per request from the
principal (``scope_of``) and handed to every service, which hands it to the repositories'
queries. Nothing else decides agency or assignment visibility.

- ``agencies``: the agencies the caller acts for; ``None`` = every agency (admins and the
  system). A non-admin user with no agency acts for none (fail closed): a regional user lists
  its agencies.
- ``unit_id``: set for field units. Their incidents are those their unit is, or was within
  ``assignment_window_s`` of clearing, assigned to, whatever the incident's agency (a unit on
  mutual aid sees the incident it serves); units, stations and zones follow ``agencies``.
- ``caller_data``: whether incident reads may include callers' personal data.
- ``mutual_aid``: incident agency -> the other agencies whose units this caller may dispatch to
  it (``CAD_MUTUAL_AID``, only for the roles in ``CAD_MUTUAL_AID_ROLES``).
- ``hidden``: training agencies (``CAD_TRAINING_AGENCIES``, cad/training.py) this caller does
  not see on boards, lists and reports unless it names one: every training agency for a
  caller who acts for all agencies or for a real one too; none for a trainee (a caller who
  acts only for training agencies). A training incident or unit named by id stays readable
  within ``agencies``.

Another agency's resource is not found (404, its existence is not disclosed); creating a
resource for an agency outside the scope is refused with 403 (the caller named that agency
itself, so nothing is disclosed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from cad.errors import Forbidden


@dataclass(frozen=True)
class Scope:
    agencies: frozenset[str] | None
    unit_id: str | None = None
    assignment_window_s: float = 0.0
    caller_data: bool = True
    mutual_aid: Mapping[str, frozenset[str]] = field(default_factory=dict)
    hidden: frozenset[str] = frozenset()

    ALL: ClassVar[Scope]

    @property
    def is_global(self) -> bool:
        return self.agencies is None and self.unit_id is None

    @property
    def agency_list(self) -> list[str] | None:
        """For ``$n::text[] IS NULL OR agency = ANY($n)``."""
        return None if self.agencies is None else sorted(self.agencies)

    def covers(self, agency: str | None) -> bool:
        return self.agencies is None or (agency is not None and agency in self.agencies)

    def require(self, agency: str, *, field: str) -> None:
        """Creating or moving something into ``agency``: 403 outside the scope."""
        if not self.covers(agency):
            raise Forbidden(f"you do not act for agency {agency}", extra={"field": field})

    def narrowed(self, agencies: Iterable[str] | None) -> list[str] | None:
        """The scope's agencies intersected with a query's ``agency`` filter."""
        wanted = None if agencies is None else frozenset(agencies)
        if self.agencies is None:
            return None if wanted is None else sorted(wanted)
        return sorted(self.agencies if wanted is None else self.agencies & wanted)

    def shown(self, agency: str | None) -> bool:
        """Whether a row of ``agency`` belongs on this caller's boards and lists."""
        return self.covers(agency) and agency not in self.hidden

    def hidden_for(self, named: Iterable[str] | None = None) -> list[str]:
        """The hidden agencies a query leaves out (``agency <> ALL($n)``): all of them but
        those the query names."""
        return sorted(self.hidden - frozenset(named or ()))

    def incident_filter(self) -> tuple[list[str] | None, str | None, float]:
        """(agencies, unit id, window s) for the repositories' incident predicate: a field
        unit's incidents are its assignments, anyone else's are its agencies'."""
        if self.unit_id is not None:
            return None, self.unit_id, self.assignment_window_s
        return self.agency_list, None, 0.0

    def unit_agencies_for(self, incident_agency: str) -> frozenset[str]:
        """Agencies whose units may be dispatched to an incident of ``incident_agency``: its
        own, and mutual aid where configured for this caller."""
        return frozenset({incident_agency}) | self.mutual_aid.get(incident_agency, frozenset())


Scope.ALL = Scope(agencies=None)


def scope_for(*, role: str, agencies: Iterable[str], unit_id: str | None,
              assignment_window_s: float, caller_data_for_units: bool,
              mutual_aid: Mapping[str, Iterable[str]], mutual_aid_roles: Iterable[str],
              training: Iterable[str] = ()) -> Scope:
    """The scope of a principal with these attributes (``scope_of`` reads them from one)."""
    if role == "admin":
        own: frozenset[str] | None = None
    else:
        own = frozenset(agencies)
    trainee = own is not None and bool(own) and own <= frozenset(training)
    hidden = frozenset() if trainee else frozenset(training)
    aid: dict[str, frozenset[str]] = {}
    if role in set(mutual_aid_roles) and role != "field_unit":
        # Never across the training line: an exercise must not move a real unit, nor a
        # training unit answer a real call, whatever CAD_MUTUAL_AID says.
        drill = frozenset(training)
        aid = {a: frozenset(o for o in others if (o in drill) == (a in drill)) - {a}
               for a, others in mutual_aid.items() if own is None or a in own}
    if role == "field_unit":
        return Scope(agencies=own, unit_id=unit_id or "", assignment_window_s=assignment_window_s,
                     caller_data=caller_data_for_units, hidden=hidden)
    return Scope(agencies=own, mutual_aid=aid, hidden=hidden)
