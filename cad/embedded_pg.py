"""Zero-configuration PostgreSQL: a private cluster in the data directory.

Order of preference:
1. PostgreSQL server binaries already on the machine (PATH, ``pg_config --bindir``,
   ``/usr/lib/postgresql/<version>/bin``, ``/usr/local/pgsql/bin``), run as a private cluster.
2. The ``pgserver`` wheel (bundles PostgreSQL 16 for x86-64 Linux and macOS).
3. Otherwise :class:`EmbeddedUnavailable` with one line saying what to install or set.

The postmaster is started directly (not through ``pg_ctl``) as our child, in its own
session so a terminal Ctrl-C reaches us first and we shut it down after the HTTP server
has drained. On Linux it also gets a parent-death signal of SIGINT (PostgreSQL's "fast"
shutdown): if this process is killed with SIGKILL, the cluster still stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

import structlog

log = structlog.get_logger("cad.embedded_pg")

DB_NAME = "cad"
DB_USER = "cad"
APP_ROLE = "cad_app"  # the server's login role (migrations/0007_db_roles.sql, cad.db.APP_ROLE)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


class EmbeddedUnavailable(RuntimeError):
    """No way to run PostgreSQL here; the message says what to do."""


@dataclass(frozen=True)
class _Binaries:
    bindir: Path

    @property
    def initdb(self) -> str:
        return str(self.bindir / "initdb")

    @property
    def postgres(self) -> str:
        return str(self.bindir / "postgres")


def _version_key(p: Path) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in p.parent.name.split("."))
    except ValueError:
        return (0,)


def find_server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None."""
    candidates: list[Path] = []
    env_dir = os.environ.get("CAD_PG_BINDIR")
    if env_dir:
        candidates.append(Path(env_dir))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10,
                                 check=False)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    candidates.extend(Path(p) for p in ("/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin"))
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL does: a port whose old connections linger in TIME_WAIT is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _run_as_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: pick an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EmbeddedUnavailable(
        "running as root and no 'postgres' or 'nobody' user exists: create one, "
        "or set CAD_DATABASE_URL to an existing PostgreSQL server"
    )


def _check_traversable(path: Path, user: pwd.struct_passwd) -> None:
    for parent in [*reversed(path.parents)]:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            continue
        if not st.st_mode & 0o001:
            raise EmbeddedUnavailable(
                f"the embedded PostgreSQL runs as '{user.pw_name}', who cannot enter {parent}: "
                f"choose a data directory outside it with CAD_DATA_DIR (default for root: /var/lib/cad)"
            )


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _read_pidfile(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None


def _pid_is_our_postmaster(pid: int, pgdata: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid file if the process lives
    text = b" ".join(cmdline)
    return b"postgres" in text and str(pgdata).encode() in text


class EmbeddedPostgres:
    """A private PostgreSQL cluster under ``data_dir``. Use ``start()`` / ``stop()`` or ``with``."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pg"
        self.credentials_file = self.data_dir / "embedded-pg.json"
        self.log_file = self.data_dir / "postgres.log"
        self._want_port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None
        self._pgserver: object | None = None
        self.url: str | None = None
        self.tcp_url: str | None = None
        self.backend = ""
        self.app_password: str | None = None  # cad_app's, set by start()

    # -- public ------------------------------------------------------------------
    def start(self) -> str:
        """Start (or adopt) the cluster and return its URL."""
        bindir = find_server_binaries()
        if bindir is not None:
            self.backend = f"server binaries in {bindir}"
            self.url = self._start_with_binaries(_Binaries(bindir))
        else:
            self.url = self._start_with_pgserver()
        self._ensure_database()
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # "fast" shutdown: checkpoint, then exit
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGQUIT)
                    proc.wait(timeout=10)
            log.info("embedded_pg_stopped", data_dir=str(self.pgdata))
        elif self._adopted_pid is not None:
            pid, self._adopted_pid = self._adopted_pid, None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.05)
        elif self._pgserver is not None:
            srv, self._pgserver = self._pgserver, None
            with contextlib.suppress(Exception):
                srv.cleanup()  # type: ignore[attr-defined]  # pgserver ships no stubs

    @property
    def masked_url(self) -> str:
        return mask_url(self.url or "")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- server binaries -----------------------------------------------------------
    def _start_with_binaries(self, bins: _Binaries) -> str:
        user = _run_as_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            # The service account must reach the data directory; /var/lib/cad is made 0755.
            os.chmod(self.data_dir, 0o755)
            _check_traversable(self.pgdata, user)
        creds = self._credentials()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bins, user, creds["password"])
        elif user is not None:
            _chown_tree(self.pgdata, user)

        adopted = self._adopt_running()
        if adopted is not None:
            return self._url(creds["password"], adopted)

        self._remove_stale_socket_locks()
        port = self._choose_port(creds)
        self.log_file.touch()
        logf = open(self.log_file, "ab")  # noqa: SIM115 - inherited by the child, closed below
        try:
            self._proc = subprocess.Popen(
                [bins.postgres, "-D", str(self.pgdata), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self._socket_dir() or ''}",
                 "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                # Only prctl runs between fork and exec; we start it before any worker thread.
                preexec_fn=_set_pdeathsig, start_new_session=True,  # noqa: PLW1509
            )
        finally:
            logf.close()
        self._wait_ready(port)
        log.info("embedded_pg_started", data_dir=str(self.pgdata), port=port, pid=self._proc.pid)
        return self._url(creds["password"], port)

    def _choose_port(self, creds: dict[str, str]) -> int:
        """The configured port, else the one this cluster used last time (a stable URL for
        operators and for pools that outlive a database restart), else any free port."""
        if self._want_port:
            return self._want_port
        last = int(creds.get("port") or 0)
        if last and _port_is_free(last):
            return last
        port = _free_port()
        creds["port"] = str(port)
        tmp = self.credentials_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f)
        os.replace(tmp, self.credentials_file)
        return port

    def _credentials(self) -> dict[str, str]:
        if self.credentials_file.exists():
            return dict(json.loads(self.credentials_file.read_text()))
        creds = {"user": DB_USER, "password": secrets.token_urlsafe(24), "database": DB_NAME}
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f)
        return creds

    def _initdb(self, bins: _Binaries, user: pwd.struct_passwd | None, password: str) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(mode=0o700)
        pwfile = self.data_dir / ".initdb-pw"
        pwfile.write_text(password)
        try:
            if user is not None:
                _chown_tree(self.pgdata, user)
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            os.chmod(pwfile, 0o600)
            out = subprocess.run(
                [bins.initdb, "-D", str(self.pgdata), "-U", DB_USER, f"--pwfile={pwfile}",
                 "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                 "-E", "UTF8", "--locale=C", "--no-sync"],
                capture_output=True, text=True, check=False,
                user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                extra_groups=[] if user else None, cwd=str(self.data_dir),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode != 0:
            raise EmbeddedUnavailable(f"initdb failed: {out.stderr.strip() or out.stdout.strip()}")
        # --no-sync speeds up the first start; make the fresh cluster durable once.
        with contextlib.suppress(OSError):
            os.sync()
        log.info("embedded_pg_initialised", data_dir=str(self.pgdata))

    def _adopt_running(self) -> int | None:
        """A postmaster left running on this data directory (its parent died without
        the parent-death signal, e.g. off Linux): use it. A stale pid file whose pid now
        belongs to another process is removed so PostgreSQL can start."""
        lines = _read_pidfile(self.pgdata)
        if not lines:
            return None
        try:
            pid = int(lines[0])
        except ValueError:
            return None
        if _pid_is_our_postmaster(pid, self.pgdata):
            if len(lines) >= 8 and lines[7].strip() == "ready":
                self._adopted_pid = pid
                port = int(lines[3])
                log.info("embedded_pg_adopted", pid=pid, port=port)
                return port
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # dead: PostgreSQL itself replaces a stale pid file
        except PermissionError:
            pass
        log.warning("embedded_pg_stale_pidfile", pid=pid)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        return None

    def _remove_stale_socket_locks(self) -> None:
        """A postmaster killed outright leaves ``.s.PGSQL.<port>.lock`` behind; if its pid
        is now anything but our postmaster (dead, a zombie nobody reaped, or reused),
        PostgreSQL refuses the socket. Only called when no postmaster of ours runs."""
        for lock in self.pgdata.glob(".s.PGSQL.*.lock"):
            try:
                pid = int(lock.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                pid = -1
            if pid > 0 and _pid_is_our_postmaster(pid, self.pgdata):
                continue
            log.warning("embedded_pg_stale_socket_lock", path=str(lock), pid=pid)
            lock.unlink(missing_ok=True)
            Path(str(lock)[: -len(".lock")]).unlink(missing_ok=True)

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedUnavailable(
                    f"the embedded PostgreSQL exited with code {self._proc.returncode}; "
                    f"see {self.log_file}: {self._log_tail()}"
                )
            lines = _read_pidfile(self.pgdata)
            # A pid file left by a crashed postmaster says "ready" too: it must be our child's.
            if (lines and len(lines) >= 8 and lines[0].strip() == str(self._proc.pid)
                    and lines[7].strip() == "ready"):
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedUnavailable(f"the embedded PostgreSQL did not become ready; see {self.log_file}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-3:])
        return ""

    def _socket_dir(self) -> Path | None:
        """The cluster's own directory holds its Unix socket: a round trip over it costs a
        third of loopback TCP's CPU here (42 vs 123 us measured). None when the path would
        exceed the 107-byte socket path limit (then TCP only)."""
        if len(str(self.pgdata)) + len("/.s.PGSQL.65535") > 107:
            return None
        return self.pgdata

    def _url(self, password: str, port: int) -> str:
        sock = self._socket_dir()
        self.tcp_url = f"postgresql://{DB_USER}:{quote(password, safe='')}@127.0.0.1:{port}/{DB_NAME}"
        if sock is None:
            return self.tcp_url
        return (f"postgresql://{DB_USER}:{quote(password, safe='')}@/{DB_NAME}"
                f"?host={quote(str(sock), safe='/')}&port={port}")

    # -- pgserver wheel ------------------------------------------------------------------
    def _start_with_pgserver(self) -> str:
        try:
            import pgserver  # type: ignore[import-not-found]  # optional wheel, absent here
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "no PostgreSQL found: install the server (e.g. 'apt-get install postgresql') "
                "or 'pip install pgserver', or set CAD_DATABASE_URL to a running server"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver, when run as root, creates a system user and opens parent directories
        # to others (o+rx) so that user can reach the data: see docs/operations.md.
        srv = pgserver.get_server(str(self.data_dir / "pgserver"), cleanup_mode="stop")
        self._pgserver = srv
        self.backend = "pgserver wheel"
        uri: str = srv.get_uri()
        # pgserver's default database is "postgres"; use our own.
        base, _, _ = uri.rpartition("/")
        return f"{base}/{DB_NAME}"

    # -- database --------------------------------------------------------------------------
    def _app_password(self) -> str:
        """The server role's password, made once and kept beside the superuser's (0600)."""
        creds: dict[str, str] = (dict(json.loads(self.credentials_file.read_text()))
                                 if self.credentials_file.exists() else {})
        if not creds.get("app_password"):
            creds["app_password"] = secrets.token_urlsafe(24)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.credentials_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(creds, f)
            os.replace(tmp, self.credentials_file)
        return creds["app_password"]

    def _ensure_database(self) -> None:
        """The database, and the server's login role cad_app with its password (the cluster
        asks every role for one): the migration that grants it its rights
        (0007_db_roles.sql) finds it made."""
        assert self.url is not None
        admin_url = with_database(self.url, "postgres")
        error: list[BaseException] = []
        self.app_password = self._app_password()

        async def create() -> None:
            import asyncpg

            conn = await asyncpg.connect(admin_url)
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
                verb = "ALTER" if await conn.fetchval(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE) else "CREATE"
                # DDL takes no parameters; the password is URL-safe base64 (no quotes).
                await conn.execute(f"{verb} ROLE {APP_ROLE} LOGIN PASSWORD '{self.app_password}'")
            finally:
                await conn.close()

        def runner() -> None:
            try:
                asyncio.run(create())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                error.append(exc)

        t = threading.Thread(target=runner, name="embedded-pg-createdb")
        t.start()
        t.join()
        if error:
            raise EmbeddedUnavailable(f"could not create database '{DB_NAME}': {error[0]}")


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database (query parameters such as a Unix-socket
    ``host`` are kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def mask_url(url: str) -> str:
    """The URL with its password replaced, for printing and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
