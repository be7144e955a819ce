"""Login throttling: failed logins per e-mail and per client address are slowed, then refused.

The counters are keyed by what was typed, never by whether the account exists, so an
attacker learns nothing from being throttled: an unknown e-mail is locked out exactly like a
real one. While a key is locked, the password is not even checked (a right password would
otherwise tell itself apart from a wrong one).

Limitation: the counters live in this process's memory. Several server processes each count
on their own (an attacker gets ``limit × processes`` tries per window), and a restart forgets
them. A shared ``login_attempts`` table would lift that; until then the per-process limits
are set low enough that this stays a small multiple. The table is bounded (oldest entries
are dropped first), so spraying e-mail addresses cannot grow memory without limit.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """How many failures within `window` lock a key, and for how long."""

    failures: int
    window: timedelta
    lockout: timedelta


#: One e-mail: 5 failures within 15 minutes lock it for 15 minutes.
PER_EMAIL = Limit(failures=5, window=timedelta(minutes=15), lockout=timedelta(minutes=15))
#: One client address (many people may share one, behind NAT): 20 failures.
PER_ADDRESS = Limit(failures=20, window=timedelta(minutes=15), lockout=timedelta(minutes=15))
#: From this many failures of a key on, each failed answer is delayed (1 s, 2 s, 4 s … 8 s).
SLOW_AFTER = 2
MAX_DELAY = 8.0
MAX_KEYS = 50_000


@dataclass(slots=True)
class _Entry:
    failures: int
    first_at: datetime
    locked_until: datetime | None = None


class LoginThrottle:
    """Counts failed logins by e-mail and by client address (in this process)."""

    def __init__(
        self,
        per_email: Limit = PER_EMAIL,
        per_address: Limit = PER_ADDRESS,
        max_keys: int = MAX_KEYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.sleep = sleep  #: how a failed answer is delayed (tests record instead of waiting)
        self._limits = {"email": per_email, "addr": per_address}
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    @staticmethod
    def _keys(email: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("email", f"email:{email.strip().lower()}")]
        if address:
            keys.append(("addr", f"addr:{address}"))
        return keys

    def _live(self, key: str, kind: str, now: datetime) -> _Entry | None:
        """The entry of a key, or None once its window or its lockout is over."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        limit = self._limits[kind]
        if entry.locked_until is not None:
            if entry.locked_until > now:
                return entry
        elif now - entry.first_at <= limit.window:
            return entry
        del self._entries[key]
        return None

    def locked_until(self, email: str, address: str | None, now: datetime) -> datetime | None:
        """When the e-mail or the address may try again, if either is locked now."""
        with self._lock:
            until = [
                entry.locked_until
                for kind, key in self._keys(email, address)
                if (entry := self._live(key, kind, now)) and entry.locked_until
            ]
        return max(until) if until else None

    def failed(self, email: str, address: str | None, now: datetime) -> float:
        """Count a failed login; returns how many seconds to delay the answer."""
        worst = 0
        with self._lock:
            for kind, key in self._keys(email, address):
                entry = self._live(key, kind, now)
                if entry is None:
                    entry = self._entries[key] = _Entry(failures=0, first_at=now)
                self._entries.move_to_end(key)
                entry.failures += 1
                limit = self._limits[kind]
                if entry.failures >= limit.failures and entry.locked_until is None:
                    entry.locked_until = now + limit.lockout
                if kind == "email":
                    worst = entry.failures
            while len(self._entries) > self._max_keys:
                self._entries.popitem(last=False)
        if worst < SLOW_AFTER:
            return 0.0
        return min(float(2 ** (worst - SLOW_AFTER)), MAX_DELAY)

    def succeeded(self, email: str) -> None:
        """A right password: the e-mail's count starts again (the address's decays by time)."""
        with self._lock:
            self._entries.pop(self._keys(email, None)[0][1], None)
