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

# Spends one submission of a client address: 0.0 if it may submit, else seconds to wait.
SubmissionLimit = Callable[[str], Awaitable[float]]


@dataclass(frozen=True)
class FeedbackDeps:
    pool: asyncpg.Pool
    settings: Settings
    submission_limit: SubmissionLimit


feedback_deps: Callable[[HTTPConnection], Awaitable[FeedbackDeps]] = wired("feedback")
FeedbackDep = Annotated[FeedbackDeps, Depends(feedback_deps)]
