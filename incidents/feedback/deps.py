"""What the feedback package needs from the running app, provided by ``cad.wiring``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.settings import Settings
from incidents.public.challenge import Challenger


@dataclass(frozen=True)
class FeedbackDeps:
    pool: asyncpg.Pool
    settings: Settings
    challenger: Challenger     # the public forms' abuse protection (incidents.public.challenge)


feedback_deps: Callable[[HTTPConnection], Awaitable[FeedbackDeps]] = wired("feedback")
FeedbackDep = Annotated[FeedbackDeps, Depends(feedback_deps)]
