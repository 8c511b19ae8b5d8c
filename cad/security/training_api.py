"""HTTP endpoint of training mode: an administrator resets (deletes the exercise of) a training
agency, as ``cad training reset`` does (the action itself: cad.training.reset). Here, with the
other administrators' endpoints, because it needs the principal and its scope; who may call
it is in cad.security.policy (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from cad import training
from cad.security.deps import Context, CurrentScope
from cad.security.state import SecurityDep

router = APIRouter(prefix="/api/v1")


class TrainingResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency: str = Field(min_length=1, max_length=64,
                        description="A training agency (CAD_TRAINING_AGENCIES); any other is refused")
    roster: Literal["keep", "wipe"] = Field(
        default="keep", description="keep: units and stations stay, units back to available in "
        "quarters at their stations; wipe: the training units and the agency's unreferenced "
        "stations are deleted too")


class TrainingResetOut(BaseModel):
    agency: str
    roster: Literal["kept", "wiped"]
    counts: dict[str, int] = Field(description="Rows deleted (units_reset: units returned to "
                                   "quarters) per table")
    unit_ids: list[str] = Field(description="Units reset or deleted, and units of other training "
                                "agencies released from the deleted incidents")
    incident_ids: list[int] = Field(description="The incidents deleted")
    event_id: int | None = Field(description="The training.reset event boards and MDTs receive")


@router.post("/training/reset", tags=["training"], response_model=TrainingResetOut,
             responses={422: {"description": "not a training agency, or no such agency: "
                                              "nothing deleted (problem+json naming body.agency)"}},
             description="Delete the exercise of a training agency in one transaction: its "
                         "incidents and all that hangs off them, its units' status log and "
                         "breadcrumbs, its training events, the public reports and feedback it "
                         "received as a training agency. The audit trail is kept and records "
                         "the reset (who, which agency, counts). Connected boards and MDTs of "
                         "the agency receive a training.reset event.")
async def reset_training(sec: SecurityDep, body: TrainingResetIn, ctx: Context,
                         scope: CurrentScope) -> TrainingResetOut:
    scope.require(body.agency, field="body.agency")
    result = await training.reset(pool=sec.pool, ctx=ctx, agency=body.agency,
                                  configured=sec.settings.training_agencies, roster=body.roster,
                                  field="body.agency")
    return TrainingResetOut(agency=result.agency, roster=result.roster,
                            counts=result.counts, unit_ids=result.unit_ids,
                            incident_ids=result.incident_ids, event_id=result.event_id)
