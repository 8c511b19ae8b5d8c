"""Wire types shared across domains."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
UnitId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
Agency = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


PG_BIGINT_MAX = 2**63 - 1
# Database ids: bounded so a huge number is a 422 naming the field, not a driver overflow.
DbId = Annotated[int, Field(ge=1, le=PG_BIGINT_MAX)]
Version = Annotated[int, Field(ge=1, le=2**31 - 1)]
AgencyQuery = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
KeyText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


class Strict(BaseModel):
    """Request bodies: unknown fields are errors that name the field; text with NUL bytes
    (which PostgreSQL cannot store) is refused naming the field too."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("text must not contain NUL characters")
        return value


# Output models: timestamps go out as the ISO 8601 text the views make (``datetime.isoformat``),
# passed through unchanged so event payloads and HTTP answers stay byte-identical.
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Out(BaseModel):
    """Response bodies: documented in the OpenAPI document; fields are listed in full."""

    model_config = ConfigDict(extra="ignore")
