"""Token re-checks on open sockets: every client's token once per
``ws_token_recheck_interval_s`` (spread over the interval), at once for the clients a
revocation names (NOTIFY ``cad_security``, migrations/0002), and renewal on the open socket
(``{"type": "auth", "access_token": ...}``)."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import structlog

from ws_gateway import frames
from ws_gateway.auth import principal_for
from ws_gateway.clients import CLOSE_UNAUTHORIZED, Client, ClientRegistry, ClientState
from ws_gateway.listen import PgListener
from ws_gateway.ports import ResolvePrincipal

log = structlog.get_logger("ws_gateway")

SECURITY_CHANNEL = "cad_security"


class TokenRechecker:
    def __init__(self, registry: ClientRegistry, resolve: ResolvePrincipal, *,
                 interval_s: float, listener: PgListener) -> None:
        self.registry = registry
        self.resolve = resolve
        self.interval_s = interval_s
        self._targets: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self.revoked_closed = 0
        listener.listen(SECURITY_CHANNEL, self._on_notify)

    def _on_notify(self, payload: str) -> None:
        """``{"kind": "user"|"session"|"device", "id": ...}``: re-check those clients now."""
        try:
            info = orjson.loads(payload)
            self._targets.add((str(info["kind"]), str(info["id"])))
        except Exception:  # noqa: BLE001 - unknown payload: re-check everyone
            self._targets.add(("all", "*"))
        self._wake.set()

    async def run(self) -> None:
        """Every client once per interval, a slice a second (a burst of thousands of lookups
        would delay ticks); targeted re-checks in between, at once."""
        interval = self.interval_s
        pending: list[Client] = []
        per_slice = 1
        slice_s = min(1.0, interval)
        loop = asyncio.get_running_loop()
        next_slice = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_slice - loop.time()))
            if self._wake.is_set():
                targeted, self._targets = self._targets, set()
                self._wake.clear()
                everyone = ("all", "*") in targeted
                for client in list(self.registry.clients):
                    p = client.principal
                    if everyone or ({("user", str(p.user_id)), ("session", str(p.session_id)),
                                     ("device", str(p.session_id))} & targeted):
                        await self.recheck(client)
                continue
            next_slice = loop.time() + slice_s
            if not pending:
                pending = list(self.registry.clients)
                per_slice = max(1, int(len(pending) * slice_s / interval) + 1)
            batch, pending = pending[:per_slice], pending[per_slice:]
            for client in batch:
                await self.recheck(client)

    async def recheck(self, client: Client) -> None:
        if client.state == ClientState.CLOSED:
            return
        p = client.principal
        again = await principal_for(self.resolve, client.token, touch=False)
        if client.state == ClientState.CLOSED:
            return
        if again is None or again.user_id != p.user_id or again.role != p.role:
            self.revoked_closed += 1
            self.registry.close(client, CLOSE_UNAUTHORIZED, "token_revoked")
        else:
            client.principal = again

    async def reauth(self, client: Client, token: object) -> None:
        """A client renews its token on an open socket (access tokens are short-lived): same
        user and role, else the socket closes."""
        p = await principal_for(self.resolve, token if isinstance(token, str) else None,
                                touch=True)
        if p is None or p.user_id != client.principal.user_id or p.role != client.principal.role:
            self.revoked_closed += 1
            self.registry.close(client, CLOSE_UNAUTHORIZED, "token_invalid")
            return
        assert isinstance(token, str)
        client.principal, client.token = p, token
        self.registry.enqueue(client, frames.AUTH_OK)
