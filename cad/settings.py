"""Runtime configuration: one pydantic-settings object, built by the app factory or the CLI,
never at import."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The checkout's root, for tests and benchmarks run from a source tree. The installed package
# never reads through it: migrations are package data (cad.db.shipped_migrations).
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


def data_dir_from_env() -> Path:
    """``CAD_DATA_DIR`` or the default, without building (and validating) all of Settings."""
    env = os.environ.get("CAD_DATA_DIR")
    return Path(env) if env else default_data_dir()


NUMBA_CACHE_SUBDIR = "numba-cache"
# A century: longer is "for ever" (0), and keeps the cutoff within PostgreSQL's dates.
CONTACT_RETENTION_MAX_DAYS = 36_500


def routing_sources_digest(package_dir: Path | None = None) -> str:
    """A digest of the routing package's Python sources (all of them), which names the
    numba cache's subdirectory. Numba checks a cached kernel against its own source file
    only: a kernel that calls into another module (routing.snap's AVL kernel into
    routing.kernels, routing.kernels into routing.heap) would otherwise keep running the
    other module's old code after an upgrade changed it. The package is located without
    being imported (importing it would fix numba's cache directory too early)."""
    import hashlib
    import importlib.util

    if package_dir is None:
        spec = importlib.util.find_spec("routing")
        if spec is None or not spec.submodule_search_locations:
            return "no-routing"
        dirs = [Path(d) for d in spec.submodule_search_locations]
    else:
        dirs = [package_dir]
    h = hashlib.sha256()
    for d in dirs:
        for f in sorted(d.glob("*.py")):
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def configure_numba_cache(data_dir: Path | None = None) -> str | None:
    """Point numba's kernel cache (``NUMBA_CACHE_DIR``) at ``<data dir>/numba-cache/<digest of
    the routing sources>`` (routing_sources_digest: a new release compiles afresh), unless
    the variable is set (an empty value keeps numba's own default). Returns the directory
    set, or None when nothing was changed.

    Why there: numba's default is beside the sources (``__pycache__`` in site-packages:
    read-only for a non-root install, thrown away with a container's image layer), else
    ``~/.cache/numba`` (absent for many service accounts, ephemeral in containers). The data
    directory is writable by the server by definition and is what operators keep across
    restarts, so the routing kernels compile once per data directory, not once per start
    (routing/warmup.py). Each ``@njit(cache=True)`` kernel picks its cache directory when
    its module is imported, so this must run before anything imports ``routing``: the ``cad``
    command does it first thing; once routing is imported it changes nothing."""
    if "NUMBA_CACHE_DIR" in os.environ or "routing" in sys.modules:
        return None
    cache_dir = str((data_dir or data_dir_from_env()) / NUMBA_CACHE_SUBDIR
                    / routing_sources_digest())
    os.environ["NUMBA_CACHE_DIR"] = cache_dir
    if "numba" in sys.modules:  # imported, but no kernel decorated yet: re-read the variable
        from numba.core import config as numba_config

        numba_config.reload_config()
    return cache_dir


# Feedback deadlines per category, in calendar days (docs/feedback.md says why these).
FEEDBACK_ACKNOWLEDGE_DAYS: dict[str, float] = {"complaint": 3.0, "compliment": 7.0,
                                               "suggestion": 7.0, "other": 7.0}
FEEDBACK_RESOLVE_DAYS: dict[str, float] = {"complaint": 90.0, "compliment": 14.0,
                                           "suggestion": 30.0, "other": 30.0}


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
    # Warm connections: opening one under load (fork + SCRAM + codec set-up) stalled the
    # first second of the dispatch benchmark's 100/s run while the pool grew from 2.
    db_pool_min: int = Field(default=8, ge=1)
    db_pool_max: int = Field(default=20, ge=1)
    db_command_timeout_s: float = Field(default=30.0, gt=0)
    migrations_dir: Path | None = Field(
        default=None, description="Folder of NNNN_name.sql migrations; unset = the ones shipped "
        "in the package (cad/migrations).")
    migrate_on_start: bool = True
    migration_database_url: str | None = Field(
        default=None, description="PostgreSQL URL migrations run with: a superuser or a member "
        "of cad_owner (docs/security.md). Unset = CAD_DATABASE_URL.")
    db_use_app_role: bool = Field(
        default=True, description="The server's pool logs in as cad_app (0007_db_roles.sql: "
        "owns nothing, can only append to the audit trail), whatever user CAD_DATABASE_URL "
        "names. Off = as that user, who may then be able to erase the audit trail.")
    db_app_password: SecretStr | None = Field(
        default=None, description="cad_app's password where the server asks for one (the "
        "embedded cluster sets and passes its own); unset = none (trust, peer or .pgpass).")

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

    routing_warmup: bool = Field(
        default=True, description="Compile (or load) every routing kernel before serving. "
        "Off: each compiles on first use, stalling the server for seconds (benchmark baseline).")
    loop_lag_monitor: bool = Field(
        default=False, description="Log every event-loop stall over 10 ms (`event_loop_stall`) "
        "from start-up on, and the longest at shut-down: for benchmarks (coldstart_bench).")

    # --- fan-out --------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, description="Redis URL for multi-worker fan-out; unset = in-process hub."
    )

    # --- console (cad/console, docs/console.md) ---------------------------------------------
    console_tile_url: str | None = Field(
        default=None, description="External raster tile server for the console's map, as a "
        "`https://tiles.example/{z}/{x}/{y}.png` template; unset = the base map is drawn from "
        "the road graph and no request leaves the machine.")
    console_tile_attribution: str = Field(
        default="Road graph: agency data", description="Map attribution shown by the console.")

    # --- dispatch: routing, recommendation, timers (incidents/, units/) ----------------------
    graph_path: Path | None = Field(
        default=None, description="Road graph file from `cad graph build`; unset = straight-line "
        "ETA estimates (flagged as such in every recommendation).")
    snap_limit_m: float = Field(default=200.0, gt=0, description="A unit or incident farther than "
                                "this from any road is flagged in every recommendation using it.")
    eta_calibration_factor: float = Field(
        default=1.0, gt=0, description="Multiplies road ETAs (posted-speed times run short; "
        "SFFD en-route times were about 2x the TIGER posted-speed estimate).")
    geocode_min_score: float = Field(
        default=0.9, gt=0, le=1, description="Intake refuses (422, with the candidates) a "
        "geocoded address, place or corner scoring below this: typos, a missing or wrong "
        "suffix on an ambiguous name (incidents.geocoding).")
    geocoder_refresh_s: float = Field(
        default=5.0, ge=0, description="How often a worker checks whether the address or "
        "places table changed (an import, another worker's place edit) and rebuilds its "
        "geocoder; 0 = only at start.")
    eta_hour_factors: dict[int, float] = Field(
        default_factory=dict, description="ETA factor per local hour of day "
        "(CAD_ANALYTICS_TIMEZONE), the hour_factors of `cad graph calibrate --out`; an hour "
        "listed here overrides CAD_ETA_CALIBRATION_FACTOR.")
    fallback_speed_kmh: float = Field(default=40.0, gt=0,
                                      description="Straight-line ETA speed when no graph.")
    unit_position_stale_s: float = Field(
        default=300.0, gt=0, description="An AVL fix older than this is stale: use the station.")
    duplicate_radius_m: float = Field(default=150.0, ge=0)
    duplicate_window_s: float = Field(default=1800.0, ge=0)
    pending_thresholds_s: dict[int, float] = Field(
        default_factory=lambda: {1: 60.0, 2: 120.0, 3: 300.0, 4: 600.0, 5: 900.0},
        description="Pending-incident age per priority after which one timer event fires.")
    unit_status_thresholds_s: dict[str, float] = Field(
        default_factory=lambda: {"dispatched": 90.0, "en_route": 900.0, "on_scene": 1800.0,
                                 "transporting": 2400.0, "at_hospital": 1800.0},
        description="Time in a status (since the last check-in) after which one timer event fires.")
    timer_sweep_interval_s: float = Field(default=5.0, ge=0, description="0 = no sweeper task.")
    # --- coverage (incidents/dispatch/coverage.py, docs/coverage.md) ---------------------------
    coverage_thresholds_s: dict[str, float] = Field(
        default_factory=lambda: {"engine": 240.0},
        description="Travel time within which a demand cell counts as covered, per unit type "
        "(NFPA 1710: 240 s for the first engine). Types not listed use "
        "CAD_COVERAGE_DEFAULT_THRESHOLD_S.")
    coverage_default_threshold_s: float = Field(
        default=480.0, gt=0, le=7200, description="Coverage threshold of unit types without their "
        "own, and of the n-th unit (nth > 1): 480 s is NFPA 1710's full first alarm travel and "
        "the 8-minute EMS response.")
    coverage_resolution: int = Field(
        default=9, ge=6, le=10, description="H3 resolution of coverage demand cells (9: 0.1 km2, "
        "about 1,150 road cells over San Francisco).")
    coverage_demand_days: int = Field(
        default=365, ge=0, description="Calls (live and imported) received in this many days "
        "weigh the coverage cells; 0 = cells unweighted.")
    idempotency_retention_s: float = Field(
        default=86_400.0, gt=0, description="Idempotency keys older than this are pruned: "
        "a retry after it runs again.")
    avl_retention_days: int = Field(
        default=90, ge=0, description="AVL breadcrumbs (unit_positions) older than this are "
        "pruned; 0 = keep them all (at 2,000 units x 1 Hz that is ~173 M rows a day).")
    contact_retention_days: int = Field(
        default=365, description="Days the public's contact data (name, phone, email of online "
        "reports and feedback cases) is kept after the case was decided (a report accepted or "
        "declined, a feedback case resolved or closed); then the retention sweep erases it and "
        "the case stays. 0 = keep it for ever. 365: a year covers the follow-up questions, "
        "appeals and re-opened complaints of a decided case, and matches the audit trail's "
        "retention (CAD_AUDIT_RETENTION_DAYS), so the record of who read a contact lasts as "
        "long as the contact. An agency's records schedule may ask for more (complaints "
        "under litigation hold) or less.")
    # --- community alerts (incidents/alerts, docs/alerts.md) --------------------------------
    alert_languages: list[str] = Field(
        default=["en", "es"], min_length=1,
        description="CAP languages (RFC 3066 tags): every alert carries one info block each.")
    alert_sender: str = Field(
        default="cad@localhost", description="The CAP <sender> of published alerts.")
    alert_delivery_interval_s: float = Field(
        default=5.0, ge=0, description="How often the delivery worker looks for due "
        "deliveries besides being woken by a publication; 0 = no delivery worker.")
    alert_retry_base_s: float = Field(
        default=30.0, gt=0, description="First retry delay of a failed delivery; doubles "
        "with each attempt.")
    alert_max_attempts: int = Field(
        default=6, ge=1, description="Delivery attempts before a delivery is marked failed.")
    smtp_host: str | None = Field(
        default=None, description="SMTP server for email alerts; unset = email deliveries fail.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP server port.")
    alert_email_from: str = Field(
        default="alerts@localhost", description="From: address of alert emails.")
    retention_sweep_interval_s: float = Field(
        default=3600.0, ge=0, description="How often a worker prunes AVL breadcrumbs and "
        "idempotency keys and erases expired contact data (cad.retention); 0 = no sweeper task "
        "(run `cad db prune`).")

    # --- plausible input (cad.plausible): times and places every write is checked against ---
    time_earliest: datetime = Field(
        default=datetime(1990, 1, 1, tzinfo=UTC), description="Earlier timestamps in a request "
        "are refused (422 naming the field); without a UTC offset it is read as UTC.")
    time_max_future_s: float = Field(
        default=300.0, ge=0, description="Timestamps further ahead of the server's clock are "
        "refused: device and PSAP clocks drift, but not by more than this.")
    service_area: str | None = Field(
        default=None, description="GeoJSON (a file path, or the text itself) of the polygons "
        "the agencies serve; a feature with properties.agency bounds that agency only. Unset: "
        "the road graph's bounds plus service_area_margin_m; without a graph only the "
        "1-degree box around (0, 0) is refused.")
    service_area_margin_m: float = Field(
        default=10_000.0, ge=0, description="Margin around the road graph's bounding box when "
        "no service_area is configured (mutual aid just past the county line stays possible).")

    @field_validator("contact_retention_days")
    @classmethod
    def _contact_days(cls, value: int) -> int:
        # A negative period would erase contact data of cases decided in the future, i.e.
        # every decided case at once: refused at start rather than read as "0" or "now".
        if not 0 <= value <= CONTACT_RETENTION_MAX_DAYS:
            raise ValueError(
                f"CAD_CONTACT_RETENTION_DAYS is days from 1 to {CONTACT_RETENTION_MAX_DAYS}, "
                f"or 0 to keep contact data for ever; got {value}")
        return value

    @field_validator("time_earliest")
    @classmethod
    def _utc_if_naive(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    # --- security (cad.security; docs/security.md maps these to CJIS controls) -----------------
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="Signing key for access tokens (>= 32 chars). Unset: generated once and "
                    "kept in <data_dir>/jwt_secret (mode 0600); set it when hosts do not "
                    "share data_dir.",
    )
    access_token_ttl_s: int = Field(default=600, ge=10, le=3600)
    refresh_token_ttl_s: int = Field(
        default=43_200, ge=60, description="Absolute session lifetime: a shift, then log in again."
    )
    idle_timeout_s: int = Field(
        default=1800, ge=1, description="CJIS 5.5.5 session lock: 30 minutes without a request."
    )
    lockout_threshold: int = Field(default=5, ge=1, description="CJIS 5.5.3: failed logins.")
    lockout_window_s: int = Field(default=600, ge=1, description="CJIS 5.5.3: lockout length.")
    password_min_length: int = Field(default=12, ge=8)
    device_token_ttl_days: int = Field(default=365, ge=1)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65_536, ge=8_192)
    argon2_parallelism: int = Field(default=4, ge=1)
    audit_retention_days: int = Field(default=365, ge=1)
    audit_prune_interval_s: int = Field(
        default=86_400, ge=0, description="How often the app prunes expired audit entries; 0 = never."
    )
    audit_witness_path: Path | None = Field(
        default=None, description="Append-only file of audit chain heads (cad.security.witness); "
        "unset = <data_dir>/audit-witness.jsonl. Best on a write-once or remote mount.")
    audit_witness_interval_s: float = Field(
        default=60.0, ge=0, description="How often the chain head is witnessed outside the "
        "database (file + log line); 0 = never. Deleting entries newer than the last witness "
        "goes unnoticed, so this is the window.")
    rate_limit_login_per_min: float = Field(default=20.0, gt=0)
    rate_limit_login_burst: int = Field(default=20, ge=1)
    rate_limit_public_per_s: float = Field(default=20.0, gt=0)
    rate_limit_public_burst: int = Field(default=200, ge=1)
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed cross-site (JSON list); empty = none."
    )
    hsts_max_age_s: int = Field(default=31_536_000, ge=0, description="0 = no HSTS header.")
    bootstrap_admin_username: str | None = Field(
        default=None, description="With the password: create this admin at start-up if none exists."
    )
    bootstrap_admin_password: SecretStr | None = None

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
    avl_store_max_per_unit_per_s: float = Field(
        default=1.0, gt=0,
        description="Breadcrumbs stored per unit per second of fix time; a faster unit's fixes "
                    "are coalesced (newest kept), so one flooding terminal cannot crowd out the "
                    "others' breadcrumbs.",
    )
    ws_message_rate_per_s: float = Field(
        default=20.0, gt=0,
        description="Messages a websocket client may send per second, sustained (an MDT's budget "
                    "is its unit's, shared with the unit's HTTP position posts). Overdrawn: "
                    "closed with 4429 (HTTP: 429).",
    )
    ws_message_burst: int = Field(
        default=60, ge=1,
        description="Messages a client may send at once above the rate. Every message held "
                    "here is handled back to back on the event loop: 1,100 single-fix "
                    "messages in a burst raised the other clients' p99 2-5x.",
    )
    avl_fix_rate_per_s: float = Field(
        default=20.0, gt=0,
        description="AVL fixes a unit may send per second, sustained (websocket and HTTP; a "
                    "positions batch counts each fix). Overdrawn: 4429 / 429.",
    )
    avl_fix_burst: int = Field(
        default=1_100, ge=1,
        description="Fixes a unit may send at once above the rate: one full 1,000-fix backlog "
                    "batch after a radio gap, and some.",
    )
    avl_max_age_s: float = Field(default=300.0, gt=0, description="Older fixes are rejected.")
    avl_max_future_s: float = Field(default=5.0, ge=0, description="Clock skew tolerated.")
    avl_max_accuracy_m: float = Field(default=5_000.0, gt=0)
    avl_flush_interval_ms: int = Field(default=500, ge=10, description="Breadcrumb COPY period.")
    avl_buffer_max: int = Field(
        default=200_000, ge=100, description="Breadcrumbs held while the database is unreachable.",
    )
    hub_channel_prefix: str = Field(default="cad", description="Redis channel namespace.")

    # --- the public face (incidents.public) ------------------------------------
    public_delay_s: float = Field(
        default=3600.0, ge=0, le=30 * 86400, description="Published incidents appear this long "
        "after they close (feeds, crime map, public request-for-service data).")
    # Public forms' abuse protection (incidents.public.challenge, docs/public.md "Challenges").
    public_challenge_secret: SecretStr | None = Field(
        default=None, description="HMAC key of public forms' challenges (>= 32 chars); unset = "
        "derived from the access-token signing key, so hosts that share that key agree.")
    public_pow_bits: int = Field(
        default=18, ge=1, le=32, description="Proof-of-work difficulty in leading zero bits: "
        "about 2**bits SHA-256 hashes per submission (18: ~0.3 s in CPython, about a second "
        "in a browser's Web Crypto on a phone).")
    public_challenge_ttl_s: float = Field(
        default=3600.0, ge=60, le=86_400, description="A challenge or form token is valid this "
        "long after it was issued.")
    public_form_min_delay_s: float = Field(
        default=5.0, ge=0, le=600, description="A form token (the path without JavaScript) is "
        "valid only this long after the form was served: a script posting at once is refused.")
    public_submit_window_s: float = Field(
        default=3600.0, ge=60, le=7 * 86_400, description="Window of the per-address "
        "submission budgets below.")
    public_submit_max_pow: int = Field(
        default=10, ge=1, description="Submissions per client address, form and window with a "
        "proof of work.")
    public_submit_max_form: int = Field(
        default=3, ge=1, description="Submissions per client address, form and window with a "
        "form token (no JavaScript): stricter, as the token costs an abuser only time.")

    # --- feedback, compliments and complaints (incidents.feedback) -------------
    feedback_acknowledge_days: dict[str, float] = Field(
        default_factory=lambda: dict(FEEDBACK_ACKNOWLEDGE_DAYS),
        description="Days (calendar) within which feedback of each category must be "
        "acknowledged (assigned to someone), e.g. CAD_FEEDBACK_ACKNOWLEDGE_DAYS="
        "'{\"complaint\": 2}'; categories not named keep their default.")
    feedback_resolve_days: dict[str, float] = Field(
        default_factory=lambda: dict(FEEDBACK_RESOLVE_DAYS),
        description="Days (calendar) within which feedback of each category must be resolved.")
    feedback_min_cell: int = Field(
        default=5, ge=2, le=100,
        description="Public feedback statistics show no count below this (and a second "
        "count where one hidden count could be worked out from the total).")

    # --- analytics -------------------------------------------------------------
    analytics_timezone: str = Field(
        default="UTC", description="IANA zone for reports' hour of day, day of week and week "
                                   "(the agency's local time).")

    @field_validator("analytics_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as "
                             "America/Los_Angeles)") from None
        return value

    @field_validator("feedback_acknowledge_days", "feedback_resolve_days", mode="before")
    @classmethod
    def _feedback_days(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        defaults = (FEEDBACK_ACKNOWLEDGE_DAYS if info.field_name == "feedback_acknowledge_days"
                    else FEEDBACK_RESOLVE_DAYS)
        unknown = sorted(set(value) - set(defaults))
        if unknown:
            raise ValueError(f"unknown feedback categories {unknown} (known: {sorted(defaults)})")
        merged = {**defaults, **value}
        if any(not isinstance(d, (int, float)) or d < 0 or d > 3650 for d in merged.values()):
            raise ValueError("days are numbers from 0 to 3650")
        return merged

    @field_validator("eta_hour_factors")
    @classmethod
    def _hours_and_positive(cls, value: dict[int, float]) -> dict[int, float]:
        bad = [h for h, f in value.items() if not 0 <= h <= 23 or not f > 0]
        if bad:
            raise ValueError(f"hours are 0..23 and factors > 0 (wrong: {sorted(bad)})")
        return value

    @field_validator("coverage_thresholds_s")
    @classmethod
    def _positive_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [t for t, v in value.items() if not 0 < v <= 7200]
        if bad:
            raise ValueError(f"thresholds are seconds in (0, 7200] (wrong: {sorted(bad)})")
        return value

    # --- training mode (docs/analytics.md, "Training mode") -----------------------------------
    training_agencies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Agencies that are training namespaces, a comma list (e.g. "
        "CAD_TRAINING_AGENCIES=SFFD-TRAINING): their incidents, units and events are marked "
        "training, kept off every board, list, report, public feed and alert of users who "
        "also act for a real agency (or for all), and never published.")

    @field_validator("training_agencies", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [a.strip() for a in value.split(",") if a.strip()]
        return value

    # --- agency and assignment scope (cad/security/scope.py) ----------------------------------
    mutual_aid: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Mutual aid: incident agency -> other agencies whose units may be dispatched "
        "to it, e.g. CAD_MUTUAL_AID='{\"SFFD\": [\"DCFD\"]}'. Default: none (a unit serves "
        "only its own agency's incidents).")
    mutual_aid_roles: list[str] = Field(
        default_factory=lambda: ["dispatcher", "supervisor", "admin"],
        description="Roles that may dispatch mutual aid where CAD_MUTUAL_AID allows it.")
    field_unit_assignment_window_s: float = Field(
        default=43_200.0, ge=0,
        description="A field unit reads an incident it was assigned to for this long after its "
        "assignment cleared (12 h: a shift, for reports).")
    field_unit_caller_data: bool = Field(
        default=False,
        description="Field units also receive callers' name and callback number with their "
        "assigned incidents (every such read is audited). Default: never.")
