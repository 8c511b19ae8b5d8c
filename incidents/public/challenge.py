"""Abuse protection for public forms that needs no third party (docs/public.md, "Challenges").

Two kinds of stateless challenge, both signed with HMAC-SHA-256 under a server key
(``CAD_PUBLIC_CHALLENGE_SECRET``, else derived from the app's signing key) and bound to a
*purpose* (``"report:SFPD"``: a token for one form and agency is worthless for another):

- **proof of work** (``pow``) for scripts and pages with JavaScript: the client fetches a
  challenge and finds a ``solution`` such that SHA-256(``challenge:solution``) starts with
  ``bits`` zero bits (hashcash). Cheap to check (one hash), about 2**bits hashes to find.
- **form token** (``form``) for browsers without JavaScript: issued inside the server-rendered
  form, valid only ``form_min_delay_s`` after it was issued (a person reads and types; a
  script posting at once is refused) and until it expires.

Both are **single use**: the spend is recorded in ``public_challenge_uses`` (keyed by the
token's digest), and a second spend is refused. The same table bounds submissions per client
address and purpose over a window, with a stricter budget for form tokens (they cost an
abuser only time). The budget is per form (``report`` of ``report:SFPD``), all agencies
together. Addresses are stored as an HMAC under the server key, never as such.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from pydantic import Field

from cad.errors import Invalid, TooManyRequests
from cad.security.tokens import MIN_SECRET_CHARS, load_or_create_secret
from cad.settings import Settings
from incidents.public import repository
from schemas.common import Out

Kind = Literal["pow", "form"]
ALGORITHM = ("Find a string `solution` (1-64 characters) such that SHA-256 of the UTF-8 bytes "
             "of `challenge:solution` starts with `difficulty_bits` zero bits; send both back.")
VERSION = "c1"
# Solutions are short printable strings: a counter in decimal or hex is enough.
MAX_SOLUTION_CHARS = 64
_KEY_LABEL = b"cad public challenge key v1"
# version . kind . bits . issued (Unix s) . nonce (12 bytes) . MAC (18 bytes), base64url
_TOKEN = re.compile(r"c1\.(pow|form)\.(0|[1-9][0-9]?)\.([1-9][0-9]{0,11})\."
                    r"([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{24})", re.ASCII)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def leading_zero_bits(digest: bytes) -> int:
    n = 0
    for byte in digest:
        if byte == 0:
            n += 8
            continue
        return n + 8 - byte.bit_length()
    return n


def pow_digest(token: str, solution: str) -> bytes:
    return hashlib.sha256(f"{token}:{solution}".encode()).digest()


def solve(token: str, bits: int) -> str:
    """A solution by brute force (what a client does; used by tests and tools)."""
    counter = 0
    while leading_zero_bits(pow_digest(token, format(counter, "x"))) < bits:
        counter += 1
    return format(counter, "x")


class ChallengeOut(Out):
    challenge: str = Field(description="The signed challenge token: send it back with the form.")
    difficulty_bits: int = Field(description="Leading zero bits the solution's hash must have.")
    expires_at: datetime
    algorithm: str = Field(description="How to solve it.")


@dataclass(frozen=True)
class Spend:
    """A checked token, ready to be recorded as used."""

    kind: Kind
    purpose: str
    digest: bytes          # SHA-256 of the token's MAC: the single-use key
    expires_at: datetime


@dataclass(frozen=True)
class Limits:
    """Submissions per client address and purpose within ``window_s``."""

    window_s: float
    pow_max: int
    form_max: int


@dataclass(frozen=True)
class Challenger:
    key: bytes
    pow_bits: int = 18
    ttl_s: float = 3600.0
    form_min_delay_s: float = 5.0
    limits: Limits = Limits(window_s=3600.0, pow_max=10, form_max=3)

    # --- issue ----------------------------------------------------------------------------
    def _mac(self, kind: str, bits: int, issued: int, nonce: str, purpose: str) -> str:
        msg = f"{VERSION}|{kind}|{bits}|{issued}|{nonce}|{purpose}".encode()
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest()[:18])

    def issue(self, *, kind: Kind, purpose: str, now: datetime) -> str:
        bits = self.pow_bits if kind == "pow" else 0
        issued = int(now.timestamp())
        nonce = _b64(secrets.token_bytes(12))
        return f"{VERSION}.{kind}.{bits}.{issued}.{nonce}.{self._mac(kind, bits, issued, nonce, purpose)}"

    def pow_challenge(self, *, purpose: str, now: datetime) -> dict[str, Any]:
        """The body of a proof-of-work challenge endpoint (``ChallengeOut``)."""
        token = self.issue(kind="pow", purpose=purpose, now=now)
        return {"challenge": token, "difficulty_bits": self.pow_bits,
                "expires_at": datetime.fromtimestamp(int(now.timestamp()) + self.ttl_s, UTC),
                "algorithm": ALGORITHM}

    # --- check ----------------------------------------------------------------------------
    def check(self, *, token: str, solution: str | None, purpose: str, now: datetime,
              field: str, expect: Kind | None = None) -> Spend:
        """The token's Spend, or Invalid (422) naming ``field`` with a ``reason``: malformed
        (or not of the ``expect``ed kind), signature (forged, or for another purpose),
        expired, too_soon, work (a proof of work without enough zero bits)."""
        def refuse(reason: str, detail: str) -> Invalid:
            return Invalid(detail, field=field, extra={"reason": reason})

        # One spelling per token (ASCII digits, no leading zeros): a variant of a spent token
        # must not pass as another token.
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise refuse("malformed", "not a challenge token")
        kind, bits_s, issued_s, nonce, mac = match.groups()
        if expect is not None and kind != expect:
            what = "proof-of-work challenge" if expect == "pow" else "form token"
            raise refuse("malformed", f"not a {what}")
        bits, issued = int(bits_s), int(issued_s)
        if not hmac.compare_digest(mac, self._mac(kind, bits, issued, nonce, purpose)):
            raise refuse("signature", "the challenge was not issued for this form")
        age_s = now.timestamp() - issued
        if age_s > self.ttl_s or age_s < -60:
            raise refuse("expired", "the challenge has expired; load the form again")
        if kind == "form":
            if age_s < self.form_min_delay_s:
                raise refuse("too_soon", "the form was sent too quickly; please wait a few "
                             "seconds and send it again")
        else:
            if (solution is None or not 0 < len(solution) <= MAX_SOLUTION_CHARS
                    or leading_zero_bits(pow_digest(token, solution)) < bits):
                raise refuse("work", f"the solution does not give {bits} leading zero bits")
        return Spend(kind="pow" if kind == "pow" else "form", purpose=purpose,
                     digest=hashlib.sha256(mac.encode()).digest(),
                     expires_at=datetime.fromtimestamp(issued + self.ttl_s, UTC))

    def address_key(self, address: str | None) -> bytes:
        """The client address as stored: an HMAC, so the table holds no IP addresses."""
        return hmac.new(self.key, f"addr|{address or '-'}".encode(), hashlib.sha256).digest()[:16]

    async def spend(self, conn: asyncpg.Connection, spend: Spend, *, address: str | None,
                    field: str) -> None:
        """Record ``spend`` as used, inside the caller's transaction: refused with 422
        (reason ``used``) when it was spent before, 429 when this address has used its budget
        for the form (the purpose's part before ``:``; form tokens: ``limits.form_max``,
        proofs of work: ``pow_max``)."""
        budget = self.limits.form_max if spend.kind == "form" else self.limits.pow_max
        # The budget is per form, whatever the agency: spraying agency codes buys nothing.
        outcome = await repository.spend_challenge(
            conn, digest=spend.digest, kind=spend.kind, purpose=spend.purpose.split(":", 1)[0],
            address=self.address_key(address), window_s=self.limits.window_s, budget=budget,
            expires_at=spend.expires_at)
        if outcome == "used":
            raise Invalid("this challenge was already used; load the form again", field=field,
                          extra={"reason": "used"})
        if outcome == "limited":
            raise TooManyRequests(f"at most {budget} submissions per "
                                  f"{round(self.limits.window_s / 60)} minutes from one address",
                                  retry_after_s=self.limits.window_s)


def challenger_from_settings(settings: Settings) -> Challenger:
    """The challenger of a running app: the configured key, else one derived from the app's
    signing key (so every worker and host that shares that key agrees)."""
    if settings.public_challenge_secret is not None:
        configured = settings.public_challenge_secret.get_secret_value()
        if len(configured) < MIN_SECRET_CHARS:
            raise ValueError(f"CAD_PUBLIC_CHALLENGE_SECRET must be at least {MIN_SECRET_CHARS} "
                             "characters")
        key = configured.encode()
    else:
        signing = load_or_create_secret(
            settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            settings.data_dir)
        key = hmac.new(signing.encode(), _KEY_LABEL, hashlib.sha256).digest()
    return Challenger(key=key, pow_bits=settings.public_pow_bits,
                      ttl_s=settings.public_challenge_ttl_s,
                      form_min_delay_s=settings.public_form_min_delay_s,
                      limits=Limits(window_s=settings.public_submit_window_s,
                                    pow_max=settings.public_submit_max_pow,
                                    form_max=settings.public_submit_max_form))
