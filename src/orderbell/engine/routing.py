"""Routing: which provider a message goes through, with failover across a shop's accounts.

A shop with active accounts for a channel sends through them in `position` order; a shop with
none uses the global default provider of that channel. Within one attempt a message moves on
to the next account only when the previous one did not take it (RETRYABLE: nothing was sent)
or may have taken it (AMBIGUOUS: then the message is flagged ``ambiguous``); a PERMANENT
answer or an acceptance ends it. Accounts that are cooling down (see ``engine.failover``)
are skipped; when all are cooling the message waits for the first to come back.

Pacing: :meth:`Router._submit` is the one place a send to an account happens; it awaits the
account's pacer (``pacer_for(account)``; another module provides it) once per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy import Engine

from orderbell.channels.base import Outcome, OutgoingMessage, Provider, SendResult
from orderbell.clock import Clock
from orderbell.domain.model import Channel
from orderbell.engine.failover import Health
from orderbell.store import providers as provider_store
from orderbell.store.providers import Account

log = structlog.get_logger("orderbell.routing")


class Pacer(Protocol):
    """Keeps one provider account to its rate across workers (``channels.pacing``)."""

    async def acquire(self) -> None:
        """Return when one more message may leave (holding one concurrency slot)."""
        ...

    def release(self) -> None:
        """Give back the concurrency slot taken by `acquire`."""
        ...


PacerFactory = Callable[[Account], "Pacer | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Routed:
    """A provider's final answer for one message, and how the message got there."""

    result: SendResult
    provider: str
    provider_id: int | None = None
    ambiguous: bool = False  #: an earlier account may have sent it too
    tries: tuple[str, ...] = ()  #: what the earlier accounts answered (audit trail)
    cooling_until: datetime | None = None  #: set when every account was cooling: wait till then


async def safe_send(provider: Provider, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
    """`provider.send`, but a crash becomes RETRYABLE and a missing answer AMBIGUOUS."""
    try:
        results = await provider.send(batch)
    except Exception as exc:  # a provider bug must not lose the batch: retry it
        log.warning("provider_crashed", provider=provider.name, error=type(exc).__name__)
        return [
            SendResult(
                message_id=m.id,
                outcome=Outcome.RETRYABLE,
                error_code="provider_error",
                error_message=type(exc).__name__,
            )
            for m in batch
        ]
    ids = {m.id for m in batch}
    results = [r for r in results if r.message_id in ids]  # ignore foreign ids
    seen = {r.message_id for r in results}
    missing = [
        SendResult(
            message_id=m.id,
            outcome=Outcome.AMBIGUOUS,
            error_code="no_result",
            error_message="the provider returned no result for this message",
        )
        for m in batch
        if m.id not in seen
    ]
    return results + missing


class Router:
    """One worker's gateways (built once per account version) and its failover loop."""

    def __init__(
        self,
        *,
        engine: Engine,
        clock: Clock,
        defaults: Mapping[Channel, Provider],
        public_url: str,
        health: Health | None = None,
        pacer_for: PacerFactory | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._defaults = defaults
        self._public_url = public_url
        self.health = health or Health()
        self._pacer_for = pacer_for
        self._gateways: dict[int, tuple[datetime, Provider]] = {}
        self._pacers: dict[int, tuple[datetime, Pacer | None]] = {}
        self._cooling: dict[int, datetime] = {}  # trips of this worker not yet re-read

    def accounts(self, shop_ids: Iterable[int]) -> dict[tuple[int, Channel], list[Account]]:
        """The active accounts of these shops by (shop, channel), in failover order."""
        with self._engine.connect() as conn:
            rows = provider_store.accounts(conn, shop_ids)
        routes: dict[tuple[int, Channel], list[Account]] = {}
        for account in rows:
            routes.setdefault((account.shop_id, account.channel), []).append(account)
        return routes

    def default(self, channel: Channel) -> Provider:
        """The global provider of a channel (shops without accounts)."""
        return self._defaults[channel]

    async def _gateway(self, account: Account) -> Provider:
        cached = self._gateways.get(account.id)
        if cached is not None and cached[0] == account.updated_at:
            return cached[1]
        if cached is not None:  # the account changed: a new gateway, the old one closed
            await _close(cached[1])
        gateway: Provider = provider_store.build_gateway(account, self._public_url)
        self._gateways[account.id] = (account.updated_at, gateway)
        return gateway

    def _pacer(self, account: Account) -> Pacer | None:
        if self._pacer_for is None or not account.rate_per_second:
            return None
        cached = self._pacers.get(account.id)
        if cached is None or cached[0] != account.updated_at:
            cached = (account.updated_at, self._pacer_for(account))
            self._pacers[account.id] = cached
        return cached[1]

    async def _submit(
        self, account: Account, gateway: Provider, batch: Sequence[OutgoingMessage]
    ) -> list[SendResult]:
        """THE pacing seam: every send to a provider account goes through here."""
        pacer = self._pacer(account)
        if pacer is None:
            return await safe_send(gateway, batch)

        async def one(message: OutgoingMessage) -> list[SendResult]:
            await pacer.acquire()
            try:
                return await safe_send(gateway, [message])
            finally:
                pacer.release()

        parts = await asyncio.gather(*(one(m) for m in batch))
        return [r for part in parts for r in part]

    def _is_cooling(self, account: Account, now: datetime) -> bool:
        local = self._cooling.get(account.id)
        return account.cooling(now) or (local is not None and local > now)

    async def send(
        self, accounts: Sequence[Account], batch: Sequence[OutgoingMessage]
    ) -> list[Routed]:
        """Send a batch of one shop and channel through its accounts, failing over."""
        now = self._clock.now()
        usable = [a for a in accounts if not self._is_cooling(a, now)]
        if not usable:
            until = min(max(a.cooling_until or now, self._cooling.get(a.id, now)) for a in accounts)
            return [
                Routed(
                    result=SendResult(
                        message_id=m.id,
                        outcome=Outcome.RETRYABLE,
                        error_code="cooling",
                        error_message="every provider account is cooling down",
                    ),
                    provider=accounts[0].name,
                    cooling_until=until,
                )
                for m in batch
            ]
        pending = list(batch)
        tries: dict[int, list[str]] = {}
        ambiguous: set[int] = set()
        routed: list[Routed] = []
        for index, account in enumerate(usable):
            try:
                gateway = await self._gateway(account)
            except Exception as exc:  # a broken account must not stop the others
                log.error("gateway_build_failed", provider=account.name, error=type(exc).__name__)
                results = [
                    SendResult(
                        message_id=m.id,
                        outcome=Outcome.RETRYABLE,
                        error_code="provider_unavailable",
                        error_message=type(exc).__name__,
                    )
                    for m in pending
                ]
            else:
                results = await self._submit(account, gateway, pending)
            self._observe(account, results)
            nxt = usable[index + 1] if index + 1 < len(usable) else None
            by_id = {m.id: m for m in pending}
            pending = []
            for r in results:
                if r.outcome is Outcome.AMBIGUOUS:
                    ambiguous.add(r.message_id)
                if nxt is not None and r.outcome in (Outcome.RETRYABLE, Outcome.AMBIGUOUS):
                    what = "ambiguous outcome" if r.outcome is Outcome.AMBIGUOUS else "error"
                    tries.setdefault(r.message_id, []).append(
                        f"{what} from {account.name} ({r.error_code or 'error'}); "
                        f"failing over to {nxt.name}"
                    )
                    pending.append(by_id[r.message_id])
                    continue
                routed.append(
                    Routed(
                        result=r,
                        provider=account.name,
                        provider_id=account.id,
                        ambiguous=r.message_id in ambiguous,
                        tries=tuple(tries.get(r.message_id, ())),
                    )
                )
            if not pending:
                break
        return routed

    def _observe(self, account: Account, results: Sequence[SendResult]) -> None:
        now = self._clock.now()
        until = self.health.record(account.id, (r.outcome for r in results), now)
        if until is None:
            return
        self._cooling[account.id] = until
        log.warning(
            "provider_cooling",
            provider=account.name,
            provider_id=account.id,
            until=until.isoformat(),
        )
        try:
            with self._engine.begin() as conn:
                provider_store.set_cooling(conn, account.id, until)
        except Exception as exc:  # this worker still skips it; others learn on their own
            log.error("cooling_not_saved", provider_id=account.id, error=type(exc).__name__)

    async def close(self) -> None:
        """Close every gateway this worker built."""
        gateways = [g for _, g in self._gateways.values()]
        self._gateways.clear()
        for gateway in gateways:
            await _close(gateway)


async def _close(provider: Provider) -> None:
    try:
        await provider.close()
    except Exception as exc:  # closing is best effort
        log.warning("provider_close_failed", provider=provider.name, error=type(exc).__name__)
