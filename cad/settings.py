"""Runtime configuration: one pydantic-settings object, built by the app factory or the CLI, never at import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """Per-user data directory for the embedded PostgreSQL cluster and caches.

    root gets /var/lib/cad because PostgreSQL refuses to run as root: the cluster
    is run as an unprivileged user, who cannot traverse /root (mode 0700).
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/cad")
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "cad"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAD_", extra="ignore", frozen=True)

    # --- database -------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the system of record. Unset: start the embedded cluster.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded PostgreSQL cluster and other local state live.",
    )
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1)
    db_command_timeout_s: float = Field(default=30.0, gt=0)
    migrations_dir: Path = Field(default=REPO_ROOT / "migrations")
    migrate_on_start: bool = True

    # --- HTTP -----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Request bodies larger than this get 413."
    )

    # --- logging --------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a TTY, JSON lines otherwise."
    )

    # --- fan-out --------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, description="Redis URL for multi-worker fan-out; unset = in-process hub."
    )
