"""The public forms' challenge (incidents.public.challenge): signatures, purposes, expiry, the
form token's minimum delay, proof-of-work checking, and single use with per-address budgets
recorded in a real database. Times are given to the checks as values (they are pure
functions of the token and the time); the database's own clock decides the windows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cad.errors import Invalid, TooManyRequests
from incidents.public.challenge import (
    Challenger,
    Limits,
    leading_zero_bits,
    pow_digest,
    solve,
)

KEY = b"k" * 32
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PURPOSE = "report:SFPD"


def challenger(**kw: object) -> Challenger:
    base: dict[str, object] = {"key": KEY, "pow_bits": 10, "ttl_s": 3600.0,
                               "form_min_delay_s": 5.0,
                               "limits": Limits(window_s=3600.0, pow_max=3, form_max=2)}
    base.update(kw)
    return Challenger(**base)  # type: ignore[arg-type]  # keyword overrides of the dataclass


def reason(exc: pytest.ExceptionInfo[Invalid]) -> str:
    return str(exc.value.extra["reason"])


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(b"\x00\x00\xff") == 16
    assert leading_zero_bits(b"\x00\x01") == 15
    assert leading_zero_bits(b"\x80") == 0
    assert leading_zero_bits(b"\x0f") == 4


def test_a_solved_proof_of_work_passes_and_an_unsolved_one_does_not() -> None:
    c = challenger()
    token = c.issue(kind="pow", purpose=PURPOSE, now=NOW)
    solution = solve(token, 10)
    assert leading_zero_bits(pow_digest(token, solution)) >= 10
    spend = c.check(token=token, solution=solution, purpose=PURPOSE, now=NOW, field="body.proof")
    assert spend.kind == "pow" and spend.purpose == PURPOSE and len(spend.digest) == 32
    bad = next(s for s in (format(i, "x") for i in range(10_000))
               if leading_zero_bits(pow_digest(token, s)) < 10)
    with pytest.raises(Invalid) as exc:
        c.check(token=token, solution=bad, purpose=PURPOSE, now=NOW, field="body.proof")
    assert reason(exc) == "work"
    assert exc.value.extra["errors"][0]["field"] == "body.proof"
    with pytest.raises(Invalid) as exc:
        c.check(token=token, solution=None, purpose=PURPOSE, now=NOW, field="body.proof")
    assert reason(exc) == "work"


def test_tokens_are_bound_to_key_purpose_and_bits() -> None:
    c = challenger()
    token = c.issue(kind="pow", purpose=PURPOSE, now=NOW)
    solution = solve(token, 10)
    for other, purpose in ((challenger(key=b"x" * 32), PURPOSE), (c, "report:OTHER"),
                           (c, "feedback:SFPD")):
        with pytest.raises(Invalid) as exc:
            other.check(token=token, solution=solution, purpose=purpose, now=NOW, field="f")
        assert reason(exc) == "signature"
    # lowering the difficulty written in the token breaks its signature
    parts = token.split(".")
    easier = ".".join([*parts[:2], "1", *parts[3:]])
    with pytest.raises(Invalid) as exc:
        c.check(token=easier, solution="0", purpose=PURPOSE, now=NOW, field="f")
    assert reason(exc) == "signature"
    # a form token cannot be turned into a proof of work, nor the other way round
    form = c.issue(kind="form", purpose=PURPOSE, now=NOW)
    swapped = form.replace(".form.0.", ".pow.0.")
    with pytest.raises(Invalid) as exc:
        c.check(token=swapped, solution="0", purpose=PURPOSE, now=NOW, field="f")
    assert reason(exc) == "signature"
    # other spellings of the same token (leading zeros, non-ASCII digits) are not tokens:
    # a spent token cannot be sent again as a "new" one
    p = form.split(".")
    for variant in (".".join([*p[:2], "00", *p[3:]]), ".".join([*p[:3], "0" + p[3], *p[4:]]),
                    ".".join([*p[:3], p[3].replace("1", "\u0661"), *p[4:]])):
        assert variant != form
        with pytest.raises(Invalid) as exc:
            c.check(token=variant, solution=None, purpose=PURPOSE,
                    now=NOW + timedelta(seconds=10), field="f")
        assert reason(exc) == "malformed"
    for junk in ("", "x", "c1.pow.a.b.c.d", "c1.zz.0.0.n.m", "c1.pow.10." + "9" * 300 + ".n.m"):
        with pytest.raises(Invalid) as exc:
            c.check(token=junk, solution="0", purpose=PURPOSE, now=NOW, field="f")
        assert reason(exc) == "malformed"


def test_form_tokens_need_the_minimum_delay_and_expire() -> None:
    c = challenger()
    token = c.issue(kind="form", purpose=PURPOSE, now=NOW)
    with pytest.raises(Invalid) as exc:
        c.check(token=token, solution=None, purpose=PURPOSE, now=NOW + timedelta(seconds=2),
                field="form_token")
    assert reason(exc) == "too_soon"
    spend = c.check(token=token, solution=None, purpose=PURPOSE,
                    now=NOW + timedelta(seconds=6), field="form_token")
    assert spend.kind == "form"
    with pytest.raises(Invalid) as exc:
        c.check(token=token, solution=None, purpose=PURPOSE,
                now=NOW + timedelta(seconds=3601), field="form_token")
    assert reason(exc) == "expired"
    pow_token = c.issue(kind="pow", purpose=PURPOSE, now=NOW)
    with pytest.raises(Invalid) as exc:
        c.check(token=pow_token, solution=solve(pow_token, 10), purpose=PURPOSE,
                now=NOW + timedelta(hours=2), field="f")
    assert reason(exc) == "expired"


def test_addresses_are_stored_as_keyed_hashes() -> None:
    c = challenger()
    assert c.address_key("203.0.113.7") == c.address_key("203.0.113.7")
    assert c.address_key("203.0.113.7") != c.address_key("203.0.113.8")
    assert challenger(key=b"y" * 32).address_key("203.0.113.7") != c.address_key("203.0.113.7")
    assert b"203.0.113.7" not in c.address_key("203.0.113.7")


async def _spend(pool: asyncpg.Pool, c: Challenger, token: str, *, address: str,
                 solution: str | None = None, purpose: str = PURPOSE) -> None:
    now = datetime.now(UTC) + timedelta(seconds=10)   # past the form's minimum delay
    spend = c.check(token=token, solution=solution, purpose=purpose, now=now, field="f")
    async with pool.acquire() as conn, conn.transaction():
        await c.spend(conn, spend, address=address, field="f")


async def test_a_spent_token_is_refused_the_second_time(pool: asyncpg.Pool) -> None:
    c = challenger()
    now = datetime.now(UTC)
    form = c.issue(kind="form", purpose=PURPOSE, now=now)
    await _spend(pool, c, form, address="198.51.100.1")
    with pytest.raises(Invalid) as exc:
        await _spend(pool, c, form, address="198.51.100.1")
    assert reason(exc) == "used"
    with pytest.raises(Invalid) as exc:   # from another address too
        await _spend(pool, c, form, address="198.51.100.2")
    assert reason(exc) == "used"
    work = c.issue(kind="pow", purpose=PURPOSE, now=now)
    solution = solve(work, 10)
    await _spend(pool, c, work, address="198.51.100.1", solution=solution)
    with pytest.raises(Invalid) as exc:
        await _spend(pool, c, work, address="198.51.100.1", solution=solution)
    assert reason(exc) == "used"
    stored = await pool.fetch("SELECT address FROM public_challenge_uses")
    assert len(stored) == 2
    assert all(b"198.51.100" not in bytes(r["address"]) for r in stored)


async def test_per_address_budgets_are_stricter_without_javascript(pool: asyncpg.Pool) -> None:
    c = challenger()
    now = datetime.now(UTC)
    for _ in range(2):
        await _spend(pool, c, c.issue(kind="form", purpose=PURPOSE, now=now), address="a")
    with pytest.raises(TooManyRequests) as limited:
        await _spend(pool, c, c.issue(kind="form", purpose=PURPOSE, now=now), address="a")
    assert limited.value.headers == {"Retry-After": "3600"}
    # another address, and proofs of work from the same address, have budgets of their own
    await _spend(pool, c, c.issue(kind="form", purpose=PURPOSE, now=now), address="b")
    for _ in range(3):
        t = c.issue(kind="pow", purpose=PURPOSE, now=now)
        await _spend(pool, c, t, address="a", solution=solve(t, 10))
    t = c.issue(kind="pow", purpose=PURPOSE, now=now)
    with pytest.raises(TooManyRequests):
        await _spend(pool, c, t, address="a", solution=solve(t, 10))


async def test_the_budget_is_per_form_across_agencies(pool: asyncpg.Pool) -> None:
    c = challenger()
    now = datetime.now(UTC)
    for agency in ("SFPD", "OTHER"):
        purpose = f"report:{agency}"
        await _spend(pool, c, c.issue(kind="form", purpose=purpose, now=now), address="s",
                     purpose=purpose)
    with pytest.raises(TooManyRequests):   # a third agency code buys nothing
        await _spend(pool, c, c.issue(kind="form", purpose="report:THIRD", now=now),
                     address="s", purpose="report:THIRD")
    # another form has its own budget
    await _spend(pool, c, c.issue(kind="form", purpose="feedback:SFPD", now=now), address="s",
                 purpose="feedback:SFPD")


async def test_parallel_spends_cannot_overdraw_a_budget(pool: asyncpg.Pool) -> None:
    c = challenger()
    now = datetime.now(UTC)
    tokens = [c.issue(kind="form", purpose=PURPOSE, now=now) for _ in range(6)]
    results = await asyncio.gather(*(_spend(pool, c, t, address="p") for t in tokens),
                                   return_exceptions=True)
    assert sum(r is None for r in results) == 2
    assert all(isinstance(r, TooManyRequests) for r in results if r is not None)
    # the same token spent in parallel: exactly one succeeds
    same = c.issue(kind="form", purpose=PURPOSE, now=now)
    results = await asyncio.gather(*(_spend(pool, c, same, address=f"q{i}") for i in range(4)),
                                   return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Invalid) and r.extra["reason"] == "used"
               for r in results if r is not None)
