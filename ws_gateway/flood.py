"""Fairness: one terminal can slow down only itself.

* :class:`MessageBudget` - a token bucket per connection (an MDT's is its unit's, shared with
  the unit's HTTP position posts): every message costs one token, a ``positions`` batch one
  per fix. A connection that overdraws it is closed with 4429 (HTTP: 429 + Retry-After).
* :class:`Budgets` - the per-unit buckets of one worker.
* :class:`BreadcrumbThinner` - at most ``per_unit_per_s`` stored breadcrumbs per unit per
  second of fix time, newest fix kept, before the shared breadcrumb buffer: a flooding unit
  occupies one held slot, never the buffer space of the others.

docs/realtime.md ("Fairness") has the reasoning and the measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

# Rows as the breadcrumb writer copies them: (unit_id, fix_time, received_at, lat, lon, ...).
Row = tuple[Any, ...]

# Above this many buckets, full (idle) ones are forgotten; one per unit that reported through
# this worker, so only a mis-sized fleet gets here.
MAX_TRACKED_BUDGETS = 50_000

# A connection closed for flooding owes this many seconds of its budget: its unit's reconnects
# are refused (4429, before the token is even looked up) until the budget is positive again.
# Tuned against ``realtime_bench.py --flood``: a flooder reconnecting at once cost the server a
# handshake, a token lookup, a unit lookup and a snapshot ~35 times a second.
FLOOD_PENALTY_S = 5.0

# Fix times of a unit reporting at exactly the storage rate jitter (GPS receivers stamp when
# they compute, MDTs send when the radio lets them): a fix up to one period early is still
# stored at once (the GCRA's tolerance; two fixes may share a period, the long-run rate stays
# the limit). Half a period lost 2 of 10 fixes of a 1 Hz unit jittered by +-0.4 s
# (tests/ws_gateway/test_flood.py); one period keeps them all.
EARLY_TOLERANCE = 1.0


class MessageBudget:
    """``rate_per_s`` tokens a second up to ``burst``; starts full."""

    __slots__ = ("_now", "burst", "rate_per_s", "tokens", "updated")

    def __init__(self, *, rate_per_s: float, burst: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._now = monotonic
        self.tokens = burst
        self.updated = monotonic()

    def _refill(self) -> None:
        now = self._now()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def spend(self, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens; False (nothing taken) when there are not that many."""
        tokens = self.tokens
        if tokens < self.burst:
            self._refill()
            tokens = self.tokens
        else:
            self.updated = self._now()
        if tokens < cost:
            return False
        self.tokens = tokens - cost
        return True

    def drain(self, *, penalty_s: float = FLOOD_PENALTY_S) -> None:
        """Overdraw it by ``penalty_s`` of its rate (a connection closed for flooding: its
        unit may not reconnect until that is paid back)."""
        self._refill()
        self.tokens = min(self.tokens, 0.0) - penalty_s * self.rate_per_s

    def has(self, cost: float = 1.0) -> bool:
        """Whether ``cost`` tokens are there (nothing taken)."""
        self._refill()
        return self.tokens >= cost

    def retry_after_s(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0 when they are now)."""
        self._refill()
        missing = min(cost, self.burst) - self.tokens
        return max(0.0, missing / self.rate_per_s)

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class Budgets:
    """One :class:`MessageBudget` per key (a unit id) in this worker."""

    def __init__(self, *, rate_per_s: float, burst: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._now = monotonic
        self._budgets: dict[str, MessageBudget] = {}

    def of(self, key: str) -> MessageBudget:
        budget = self._budgets.get(key)
        if budget is None:
            if len(self._budgets) >= MAX_TRACKED_BUDGETS:
                self._budgets = {k: b for k, b in self._budgets.items() if not b.full}
            budget = self._budgets[key] = MessageBudget(
                rate_per_s=self.rate_per_s, burst=self.burst, monotonic=self._now)
        return budget

    def peek(self, key: str) -> MessageBudget | None:
        """The key's budget if it has one (nothing is created)."""
        return self._budgets.get(key)

    def fresh(self) -> MessageBudget:
        """A budget of its own (a board's connection)."""
        return MessageBudget(rate_per_s=self.rate_per_s, burst=self.burst, monotonic=self._now)


class BreadcrumbThinner:
    """Per unit, the generic cell-rate algorithm over fix times: a fix is stored at once when
    its fix time is no earlier than the unit's theoretical time (``tat``) less the tolerance,
    and moves ``tat`` one period on; an earlier one is held (a newer one replaces it, counted
    as coalesced), and a fix stored at once drops the held one. :meth:`release_due` stores a
    held fix once the server's clock reaches its slot, so a unit that stops sending has its
    last position stored.

    Fix times only move forward (older fixes are ``out_of_order``) and lie at most
    ``avl_max_future_s`` ahead and ``avl_max_age_s`` behind the server's clock, and each
    stored fix moves ``tat`` one period, so over any T seconds a unit stores at most about
    ``(T + max_age + max_future) * per_unit_per_s + 1`` rows - however fast it sends. A
    backlog replayed after a radio gap keeps one fix per period."""

    def __init__(self, per_unit_per_s: float) -> None:
        self.period_s = 1.0 / per_unit_per_s
        self.tolerance_s = self.period_s * EARLY_TOLERANCE
        self._tat: dict[str, float] = {}
        self._held: dict[str, Row] = {}
        self.coalesced = 0

    def offer(self, row: Row, fix_time: datetime) -> Row | None:
        """The row to store now, or None (held)."""
        unit_id = row[0]
        t = fix_time.timestamp()
        tat = self._tat.get(unit_id)
        if tat is None or t >= tat - self.tolerance_s:
            self._tat[unit_id] = (t if tat is None else max(t, tat)) + self.period_s
            if self._held.pop(unit_id, None) is not None:
                self.coalesced += 1
            return row
        if unit_id in self._held:
            self.coalesced += 1
        self._held[unit_id] = row
        return None

    def release_due(self, now_s: float) -> list[Row]:
        """Held fixes whose slot the server's clock (epoch seconds) has reached."""
        if not self._held:
            return []
        due: list[Row] = []
        tats = self._tat
        for unit_id, row in list(self._held.items()):
            tat = tats[unit_id]
            # No tolerance here: a late release must not run ahead of the rate while a
            # flooder's fixes are still being read.
            if now_s >= tat:
                due.append(row)
                tats[unit_id] = tat + self.period_s
                del self._held[unit_id]
        return due

    def drop(self, unit_ids: Collection[str]) -> None:
        """Forget these units' held rows (their exercise was deleted: a training reset)."""
        for unit_id in unit_ids:
            self._held.pop(unit_id, None)

    def forget_idle(self, now_s: float, *, older_than_s: float) -> None:
        """Drop the state of units that have not stored for ``older_than_s`` (any fix they can
        still send is stored at once anyway)."""
        cutoff = now_s - older_than_s
        for unit_id in [u for u, tat in self._tat.items()
                        if tat < cutoff and u not in self._held]:
            del self._tat[unit_id]

    @property
    def held(self) -> int:
        return len(self._held)
