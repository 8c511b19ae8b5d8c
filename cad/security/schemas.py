"""Wire models of the security endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["dispatcher", "supervisor", "field_unit", "analyst", "admin"]
Agency = Annotated[str, Field(min_length=1, max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(_In):
    refresh_token: str = Field(min_length=1, max_length=512)


class PasswordChangeIn(_In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: str
    username: str
    display_name: str | None = None
    role: Role
    unit_id: str | None = None
    agency: str | None = None
    agencies: list[str] = Field(default_factory=list,
                                description="every agency the user acts for (agency among them)")
    disabled: bool = False


class UserDetailOut(UserOut):
    locked_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TokensOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds left in the session")
    session_id: str
    user: dict[str, Any]


class MeOut(BaseModel):
    user_id: str
    username: str
    role: Role
    unit_id: str | None
    agency: str | None
    session_id: str | None
    agencies: list[str] = Field(default_factory=list)
    training: bool = Field(default=False, description="The user acts only for training "
                           "agencies (a trainee): everything it sees and does is an exercise")
    training_agencies: list[str] = Field(default_factory=list, description=(
        "The server's training agencies (CAD_TRAINING_AGENCIES): their incidents, units and "
        "events carry training: true"))


class UserCreateIn(_In):
    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role
    unit_id: str | None = Field(default=None, min_length=1, max_length=64)
    agency: str | None = Field(default=None, min_length=1, max_length=64,
                               description="home agency (added to agencies)")
    agencies: list[Agency] | None = Field(
        default=None, max_length=32, description="every agency the user acts for; a field_unit "
        "user's unit must be of one of them (without any, it takes its unit's)")
    display_name: str | None = Field(default=None, max_length=128)


class UserPatchIn(_In):
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    role: Role | None = None
    unit_id: str | None = Field(default=None, min_length=1, max_length=64)
    agency: str | None = Field(default=None, min_length=1, max_length=64)
    agencies: list[Agency] | None = Field(default=None, max_length=32)
    display_name: str | None = Field(default=None, max_length=128)
    disabled: bool | None = None
    unlock: bool | None = Field(default=None, description="clear a login lockout")

    @field_validator("password", "role", "disabled", "unlock", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Leaving a field out keeps it; null would clear a value that cannot be empty.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class DeviceIssueIn(_In):
    user_id: str = Field(min_length=1, max_length=64, description="a field_unit user")
    label: str = Field(min_length=1, max_length=128, description="e.g. the MDT's asset tag")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class DeviceOut(BaseModel):
    id: str
    user_id: str
    unit_id: str
    label: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


class DeviceIssuedOut(DeviceOut):
    token: str = Field(description="shown once; configure it on the MDT")


class AuditEntryOut(BaseModel):
    seq: int
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    request_id: str | None
    client_addr: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page")


class AuditProblemOut(BaseModel):
    kind: str = Field(description="edited | deleted | inserted | reordered | broken | "
                      "truncated | rewritten | anchor (not written by audit_prune) | "
                      "retention (a prune cut entries younger than the retention)")
    seq: int
    id: int | None
    detail: str


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str
    anchor_seq: int
    witnesses_checked: int
    witnessed_through: int | None = Field(description="The newest witnessed chain position")
    problems: list[AuditProblemOut]
