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

    # --- real-time gateway (ws_gateway) ---------------------------------------
    ws_batch_interval_ms: int = Field(
        default=50, ge=5, le=1000,
        description="One frame per subscriber per tick carrying everything since the last: "
                    "per-update frames capped fan-out ~13x lower (docs/realtime.md).",
    )
    ws_heartbeat_interval_s: float = Field(default=15.0, gt=0)
    ws_client_queue_max: int = Field(
        default=100, ge=2, description="Frames waiting for one client; a full queue closes it (4408).",
    )
    ws_sync_buffer_max: int = Field(
        default=20_000, ge=100,
        description="Live events held for a client while its snapshot/replay is being sent.",
    )
    ws_token_recheck_interval_s: float = Field(default=30.0, gt=0)
    ws_resume_window_s: float = Field(
        default=86_400.0, gt=0,
        description="A reconnect whose first missed event is older than this gets resync_required.",
    )
    ws_replay_max_events: int = Field(
        default=50_000, ge=1, description="Longer replays get resync_required instead.",
    )
    ws_tailer_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Safety-net read of the event log when no NOTIFY arrives.",
    )
    avl_max_positions_per_unit_per_s: float = Field(
        default=2.0, gt=0, description="Board updates per unit per second; extra fixes are coalesced.",
    )
    avl_max_age_s: float = Field(default=300.0, gt=0, description="Older fixes are rejected.")
    avl_max_future_s: float = Field(default=5.0, ge=0, description="Clock skew tolerated.")
    avl_max_accuracy_m: float = Field(default=5_000.0, gt=0)
    avl_flush_interval_ms: int = Field(default=500, ge=10, description="Breadcrumb COPY period.")
    avl_buffer_max: int = Field(
        default=200_000, ge=100, description="Breadcrumbs held while the database is unreachable.",
    )
    hub_channel_prefix: str = Field(default="cad", description="Redis channel namespace.")
