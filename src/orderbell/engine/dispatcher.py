"""The dispatcher: claim due messages, re-check them, render, send, record — in batches."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine

from orderbell.billing import credits
from orderbell.billing.prices import destination_country
from orderbell.channels.base import Outcome, OutgoingMessage, Provider
from orderbell.clock import Clock
from orderbell.domain import schedule, sms_text
from orderbell.domain.calendar import local
from orderbell.domain.model import (
    Category,
    Channel,
    Consent,
    HourRange,
    MessageStatus,
    Shop,
    TemplateKind,
)
from orderbell.domain.segments import analyse
from orderbell.engine import callbacks, mail
from orderbell.engine.failover import FailoverPolicy, Health
from orderbell.engine.routing import PacerFactory, Routed, Router, safe_send
from orderbell.engine.unsubscribe import Links
from orderbell.errors import TemplateError
from orderbell.store import claims
from orderbell.store import shops as shop_store
from orderbell.store.db import reading, rolled_back_to_retry
from orderbell.store.shops import hour_range
from orderbell.templates.sandbox import Renderer, TemplateSource

if TYPE_CHECKING:
    from orderbell.engine.wakeup import Waker
    from orderbell.metrics import Metrics

log = structlog.get_logger("orderbell.dispatcher")
#: Enum members by their stored value: a dict lookup per claimed row, not an enum call.
_CHANNELS = {c.value: c for c in Channel}
_CATEGORIES = {c.value: c for c in Category}
_KINDS = {k.value: k for k in TemplateKind}
RENEWAL_SECONDS = 300.0  #: how often a worker grants due package allowances
#: how often a worker matches receipts that raced their send, and looks again at messages
#: held for credit (`release_held`)
SWEEP_SECONDS = 30.0
#: Tries of a batch's finishing transaction when PostgreSQL rolls it back to let another go
#: on (`rolled_back_to_retry`)
FINISH_ATTEMPTS = 5
CANCELLED = frozenset({"cancelled", "canceled"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts (and by validity)."""

    max_attempts: int = 8
    base_seconds: float = 5.0
    cap_seconds: float = 900.0

    def delay(self, attempt: int) -> timedelta:
        """The wait before the next try after `attempt` tries."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** max(0, attempt - 1)))
        return timedelta(seconds=random.uniform(0, ceiling))


@lru_cache(maxsize=1024)
def _window(text: str | None) -> HourRange | None:
    return hour_range(text)


class Dispatcher:
    """One worker's send loop over the outbox."""

    def __init__(
        self,
        *,
        engine: Engine,
        clock: Clock,
        providers: Mapping[Channel, Provider],
        renderer: Renderer,
        worker_id: str,
        batch_size: int = 100,
        lease_seconds: int = 60,
        retry: RetryPolicy | None = None,
        billing: bool = True,
        unsubscribe: Links | None = None,
        public_url: str = "http://127.0.0.1:8000",
        failover: FailoverPolicy | None = None,
        pacer_for: PacerFactory | None = None,
        send_chunk: int | None = None,
        database_time: bool = False,
        metrics: Metrics | None = None,
        planner: Callable[[int], int] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._providers = providers
        self._renderer = renderer
        self.worker_id = worker_id
        self._batch = batch_size
        self._lease = timedelta(seconds=lease_seconds)
        self._retry = retry or RetryPolicy()
        self._billing = billing
        self._links = unsubscribe  #: signs List-Unsubscribe links of marketing e-mail
        self._shops: dict[int, tuple[datetime, Shop]] = {}
        self.router = Router(
            engine=engine,
            clock=clock,
            defaults=providers,
            public_url=public_url,
            health=Health(failover),
            pacer_for=pacer_for,
        )
        self._chunk = send_chunk or batch_size
        #: validity is also judged by the database server's clock in the claim (PostgreSQL)
        self._database_time = database_time
        self._metrics = metrics
        #: plans up to N accepted events (Prefer: respond-async); returns how many it took
        self._planner = planner

    def _shop(self, shop_id: int, now: datetime) -> Shop:
        cached = self._shops.get(shop_id)
        if cached and cached[0] > now:
            return cached[1]
        with self._engine.connect() as conn:
            shop = shop_store.get(conn, shop_id)
        self._shops[shop_id] = (now + timedelta(seconds=5), shop)
        return shop

    async def run_once(self, stopping: asyncio.Event | None = None) -> int:
        """Claim and process one batch; returns how many messages were claimed.

        Messages go to the provider in chunks; once `stopping` is set, the chunks not yet
        handed over are given back (their leases released) instead of sent.
        """
        now = self._clock.now()
        with self._engine.begin() as conn:
            rows = claims.claim(
                conn,
                worker=self.worker_id,
                now=now,
                lease_until=now + self._lease,
                limit=self._batch,
                database_time=self._database_time,
            )
        if not rows:
            return 0
        if self._metrics is not None:
            self._metrics.claimed.inc(len(rows))
        released: list[tuple[int, str]] = []
        previous = {row.id: row.previous_status for row in rows}
        shop_of = {row.id: row.shop_id for row in rows}
        due = {row.id: row.due_at for row in rows}
        outcomes: list[claims.Outcome] = []
        outgoing: list[OutgoingMessage] = []
        #: subject, text, SMS segments and — when not the one planned — the recipient
        rendered: dict[int, tuple[str | None, str, int | None, str | None]] = {}
        counted: dict[int, int] = {}  #: SMS segments of each message's final text
        attempts: dict[int, int] = {}
        expiry: dict[int, datetime | None] = {}
        for row in rows:
            attempts[row.id] = row.attempts + 1
            expiry[row.id] = row.expires_at
            decided = self._recheck(row, now, counted)
            if isinstance(decided, claims.Outcome):
                outcomes.append(decided)
                continue
            outgoing.append(decided)
            moved = decided.to if decided.to != row.recipient else None
            rendered[decided.id] = (decided.subject, decided.text, counted.get(decided.id), moved)
        # the shops whose own accounts may send (as claimed): the others' messages go to the
        # default provider without looking their accounts up
        routed_shops = {row.shop_id for row in rows if row.shop_accounts}
        emails = [m for m in outgoing if m.channel is Channel.EMAIL]
        if emails:
            with self._engine.connect() as conn:
                by_id = {row.id: row for row in rows}
                completed = mail.complete(conn, emails, by_id, self._links)
            outgoing = [m for m in outgoing if m.channel is not Channel.EMAIL] + completed
        for start in range(0, len(outgoing), self._chunk):
            chunk = outgoing[start : start + self._chunk]
            if stopping is not None and stopping.is_set():
                released.extend((m.id, _pending(previous[m.id])) for m in chunk)
                continue
            for routed in await self._dispatch_observed(chunk, due, routed_shops):
                subject, text, segments, moved = rendered[routed.result.message_id]
                outcome = self._outcome(
                    routed,
                    subject,
                    text,
                    segments,
                    attempts[routed.result.message_id],
                    expiry[routed.result.message_id],
                )
                if moved is not None and outcome.status == MessageStatus.SENT.value:
                    outcome = replace(outcome, recipient=moved)  # where it went
                outcomes.append(outcome)
        self._finish(outcomes, released)
        repriced = {shop_of[o.message_id] for o in outcomes if o.reason.startswith(_REPRICED)}
        for shop_id in sorted(repriced):  # reserved again at their new cost, sent next
            try:
                with self._engine.begin() as conn:
                    credits.resume_held(
                        conn, shop_id, self._clock.now(), actor=f"worker:{self.worker_id}"
                    )
            except Exception as exc:  # the batch is done: release_held tries again later
                log.error("reprice_failed", shop_id=shop_id, error=type(exc).__name__)
        counts = Counter(o.status for o in outcomes)
        if released:
            counts["released"] = len(released)
        log.info("batch_done", worker=self.worker_id, claimed=len(rows), **counts)
        return len(rows)

    def _finish(self, outcomes: list[claims.Outcome], released: list[tuple[int, str]]) -> None:
        """Record a batch's outcomes, bill them and hand back what was not sent, in one
        transaction. The providers have the messages already: a transaction PostgreSQL rolled
        back to break a deadlock or a serialization conflict is run again (up to
        `FINISH_ATTEMPTS` times) rather than left to the lease's expiry, which would send
        them a second time."""
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                with self._engine.begin() as conn:
                    finished_at = self._clock.now()
                    billed = (
                        credits.settle(conn, self.worker_id, outcomes, finished_at)
                        if self._billing
                        else None
                    )
                    claims.finish(conn, self.worker_id, finished_at, outcomes, billed)
                    # receipts that arrived before the send response are applied now
                    callbacks.reconcile_sent(conn, outcomes, finished_at)
                    claims.release(conn, self.worker_id, finished_at, released)
                return
            except Exception as exc:
                if attempt == FINISH_ATTEMPTS or not rolled_back_to_retry(exc):
                    raise
                log.warning("finish_retried", worker=self.worker_id, attempt=attempt,
                            error=type(getattr(exc, "orig", None) or exc).__name__)  # fmt: skip

    async def _dispatch(
        self, outgoing: list[OutgoingMessage], routed_shops: Collection[int]
    ) -> list[Routed]:
        """Send through each shop's own accounts (with failover) or the default provider of
        the channel; every group is in flight at once. Accounts are looked up only for
        `routed_shops` (those that had active accounts when their messages were claimed)."""
        if not outgoing:
            return []
        wanted = {m.shop_id for m in outgoing if m.shop_id in routed_shops}
        routes = self.router.accounts(wanted) if wanted else {}
        groups: dict[tuple[int | None, Channel], list[OutgoingMessage]] = {}
        for m in outgoing:
            key = (m.shop_id, m.channel) if (m.shop_id, m.channel) in routes else (None, m.channel)
            groups.setdefault(key, []).append(m)

        async def send(
            key: tuple[int | None, Channel], batch: list[OutgoingMessage]
        ) -> list[Routed]:
            shop_id, channel = key
            if shop_id is None:
                provider = self.router.default(channel)
                return [
                    Routed(result=r, provider=provider.name)
                    for r in await safe_send(provider, batch)
                ]
            return await self.router.send(routes[(shop_id, channel)], batch)

        parts = await asyncio.gather(*(send(k, b) for k, b in groups.items()))
        return [r for part in parts for r in part]

    async def _dispatch_observed(
        self,
        chunk: list[OutgoingMessage],
        due: dict[int, datetime],
        routed_shops: Collection[int],
    ) -> list[Routed]:
        """Send one chunk; the metrics hook sees its duration, delays and outcomes per
        channel and provider."""
        handed_at = self._clock.now()
        started = time.perf_counter()
        routed = await self._dispatch(chunk, routed_shops)
        if self._metrics is not None:
            seconds = time.perf_counter() - started
            channel_of = {m.id: m.channel.value for m in chunk}
            groups: dict[tuple[str, str], list[Routed]] = {}
            for r in routed:
                key = (channel_of[r.result.message_id], r.provider)
                groups.setdefault(key, []).append(r)
            try:
                for (channel, provider), items in groups.items():
                    self._metrics.observe_send(
                        channel=channel,
                        provider=provider,
                        seconds=seconds,
                        delays=[
                            (handed_at - due[r.result.message_id]).total_seconds() for r in items
                        ],
                        results=[r.result for r in items],
                    )
            except Exception as exc:  # a metrics hook never breaks a send
                log.warning("metrics_hook_failed", error=type(exc).__name__)
        return routed

    def _recheck(
        self, row: claims.Claimed, now: datetime, counted: dict[int, int]
    ) -> claims.Outcome | OutgoingMessage:
        """Re-check a claimed message just before sending: validity, rule, template,
        consent, order state, sending window, the SMS segment cap. Returns a final outcome
        or the message (an SMS's segments go into `counted`)."""

        def stop(status: MessageStatus, reason: str, **kw: Any) -> claims.Outcome:
            return claims.Outcome(
                message_id=row.id,
                status=status.value,
                reason=reason,
                attempt_outcome="not_sent",
                **kw,
            )

        shop = self._shop(row.shop_id, now)
        if row.expires_at is not None and (now >= row.expires_at or row.expired_by_db):
            return stop(
                MessageStatus.EXPIRED,
                f"expired at {_local(row.expires_at, shop)} before it could be sent",
            )
        context = row.context or {}
        if row.template_id is None and context.get("_system"):
            # orderbell's own notice to the shop (e.g. low balance): text fixed when planned
            if not row.recipient:
                return stop(MessageStatus.SUPPRESSED, "no_recipient: the shop has no address")
            text = str(context.get("_text", ""))
            if row.channel == Channel.SMS.value:  # orderbell's own words: sent as written
                counted[row.id] = analyse(text).segments
            return OutgoingMessage(
                id=row.id,
                shop_id=row.shop_id,
                channel=_CHANNELS[row.channel],
                to=row.recipient,
                text=text,
                subject=str(context.get("_subject", "")) or None,
                sender=shop.sms_sender if row.channel == Channel.SMS.value else shop.email_from,
            )
        definition = row.rule_definition
        if row.rule_id is not None and row.rule_active is False:
            return stop(MessageStatus.SUPPRESSED, "rule_inactive: the rule was switched off")
        if row.template_active is not True or row.t_body is None or row.template_kind is None:
            return stop(MessageStatus.SUPPRESSED, "template_inactive: the template is not active")
        channel = _CHANNELS[row.channel]
        category = _CATEGORIES[row.category]
        consent = Consent(
            sms_transactional=row.sms_transactional is not False,
            sms_marketing=bool(row.sms_marketing),
            email_transactional=row.email_transactional is not False,
            email_marketing=bool(row.email_marketing),
            email_opt_out=row.email_opt_out,
        )
        if (
            channel is Channel.SMS
            and row.sms_opt_out
            and (row.sms_opt_out == "all" or category is Category.MARKETING)
        ):
            return stop(
                MessageStatus.SUPPRESSED,
                f"opted_out: the number replied STOP ({row.sms_opt_out} SMS)",
            )
        if not consent.allows(channel, category):
            return stop(
                MessageStatus.SUPPRESSED,
                f"opted_out: no consent for {category.value} {channel.value}",
            )
        to_status = (definition or {}).get("trigger", {}).get("to_status")
        if (row.order_status or "").lower() in CANCELLED and (
            to_status or ""
        ).lower() not in CANCELLED:
            return stop(MessageStatus.SUPPRESSED, "order_cancelled: the order was cancelled since")
        window = self._window(definition, shop, channel, category)
        if window is not None:
            opening = schedule.next_opening(now, window, shop.timezone)
            if opening > now:
                if row.expires_at is not None and opening >= row.expires_at:
                    return stop(
                        MessageStatus.EXPIRED,
                        f"expired: the sending window opens at "
                        f"{_local(opening, shop)}, after validity ends",
                    )
                return stop(
                    MessageStatus.DEFERRED,
                    f"deferred to {_local(opening, shop)} by the sending window "
                    f"{window.start:%H:%M}-{window.end:%H:%M}",
                    due_at=opening,
                )
        recipient = (row.c_phone if channel is Channel.SMS else row.c_email) or row.recipient
        if not recipient:
            return stop(MessageStatus.SUPPRESSED, f"no_recipient: no {channel.value} address")
        source = TemplateSource(
            channel=channel,
            kind=_KINDS[row.template_kind],
            body=row.t_body,
            subject=row.t_subject,
            html=row.t_html,
        )
        try:
            out = self._renderer.render(
                (row.template_id, row.template_version), source, row.context
            )
        except TemplateError as exc:
            return stop(MessageStatus.FAILED, f"render_error: {exc.message}")
        text = out.text
        if channel is Channel.SMS:
            sms = sms_text.decide(shop, text)
            if sms.hold is not None:  # the reservation is released (credits.settle)
                return stop(MessageStatus.HELD, sms.hold, segments=sms.segments)
            text, counted[row.id] = sms.text, sms.segments
            if row.billing == "reserved":
                why = _repriced(row, recipient, sms.segments)
                if why is not None:  # released now, reserved again at its new cost
                    return stop(MessageStatus.HELD, why, segments=sms.segments, recipient=recipient)
        if channel is Channel.SMS:
            sender, reply_to = shop.sms_sender, None
        else:
            sender, reply_to = mail.sender(shop), shop.email_reply_to
        return OutgoingMessage(
            id=row.id,
            shop_id=row.shop_id,
            channel=channel,
            to=recipient,
            text=text,
            subject=out.subject,
            html=out.html,
            sender=sender,
            reply_to=reply_to,
        )

    @staticmethod
    def _window(
        definition: dict[str, Any] | None, shop: Shop, channel: Channel, category: Category
    ) -> HourRange | None:
        own = _window((definition or {}).get("action", {}).get("send_window"))
        return schedule.effective_window(own, shop, channel, category)

    def _outcome(
        self,
        routed: Routed,
        subject: str | None,
        text: str,
        segments: int | None,
        attempt: int,
        expires_at: datetime | None,
    ) -> claims.Outcome:
        result, provider = routed.result, routed.provider
        ambiguous = routed.ambiguous or result.outcome is Outcome.AMBIGUOUS
        detail: dict[str, Any] | None = {"ambiguous": True} if ambiguous else None
        if routed.tries:
            detail = {**(detail or {}), "tries": list(routed.tries)}
        common: dict[str, Any] = {
            "message_id": result.message_id,
            "provider": provider,
            "provider_id": routed.provider_id,
            "provider_message_id": result.provider_message_id,
            "error_code": result.error_code,
            "error_message": result.error_message,
            "attempt_outcome": result.outcome.value,
            "ambiguous": ambiguous,
        }
        earlier = f" after {'; '.join(routed.tries)}" if routed.tries else ""
        if result.outcome is Outcome.ACCEPTED:
            twice = " (an earlier outcome was ambiguous: it may arrive twice)" if ambiguous else ""
            return claims.Outcome(
                status=MessageStatus.SENT.value,
                reason=f"sent via {provider}{twice}",
                subject=subject,
                body=text,
                segments=result.segments or segments,
                detail=detail,
                **common,
            )
        if result.outcome is Outcome.PERMANENT:
            return claims.Outcome(
                status=MessageStatus.FAILED.value,
                reason=f"failed: {provider} rejected it ({result.error_code or 'error'}){earlier}",
                detail=detail,
                **common,
            )
        now = self._clock.now()
        if routed.cooling_until is not None:
            common["attempt_outcome"] = "not_sent"
            if expires_at is not None and routed.cooling_until >= expires_at:
                return claims.Outcome(
                    status=MessageStatus.EXPIRED.value,
                    reason="expired: every provider account is cooling down until after validity",
                    **common,
                )
            return claims.Outcome(
                status=MessageStatus.DEFERRED.value,
                reason=f"deferred to {routed.cooling_until:%H:%M:%S} UTC: every "
                f"provider account is cooling down after errors",
                due_at=routed.cooling_until,
                **common,
            )
        what = "ambiguous outcome" if result.outcome is Outcome.AMBIGUOUS else "transient error"
        if attempt >= self._retry.max_attempts:
            return claims.Outcome(
                status=MessageStatus.FAILED.value,
                reason=f"failed: {what} from {provider} after {attempt} attempts",
                detail=detail,
                **common,
            )
        retry_at = now + self._retry.delay(attempt)
        if expires_at is not None and retry_at >= expires_at:
            return claims.Outcome(
                status=MessageStatus.EXPIRED.value,
                reason=f"expired: {what} from {provider}; the next try would be after validity",
                detail=detail,
                **common,
            )
        return claims.Outcome(
            status=MessageStatus.DEFERRED.value,
            reason=f"retry at {retry_at:%H:%M:%S} UTC after {what} from {provider} "
            f"({result.error_code or 'error'})",
            due_at=retry_at,
            detail=detail,
            **common,
        )

    def plan_accepted(self) -> int:
        """Plan a batch of accepted events, if this worker plans them; how many it took."""
        return self._planner(self._batch) if self._planner is not None else 0

    async def drain(self, max_batches: int = 10_000) -> int:
        """Plan accepted events and process batches until nothing is left to do (tests and
        the demo use this); returns how many messages were claimed."""
        total = 0
        for _ in range(max_batches):
            planned = self.plan_accepted()
            claimed = await self.run_once()
            if claimed == 0 and planned == 0:
                break
            total += claimed
        await self.close()
        return total

    async def close(self) -> None:
        """Close the gateways this worker built (the default providers stay open)."""
        await self.router.close()

    async def run(
        self, stop: asyncio.Event, poll_seconds: float = 0.5, waker: Waker | None = None
    ) -> None:
        """Work until `stop` is set, sleeping at most poll_seconds when idle, or until the
        waker signals new due work. On stop, the batch in flight finishes its current chunk
        and gives back the rest."""
        next_renewal = 0.0
        next_sweep = time.monotonic() + SWEEP_SECONDS
        try:
            await self._loop(stop, poll_seconds, next_renewal, next_sweep, waker)
        finally:
            await self.close()

    def sweep_receipts(self) -> None:
        """Match delivery receipts that arrived before their message was marked sent."""
        try:
            with self._engine.begin() as conn:
                callbacks.reconcile_pending(conn, self._clock.now())
        except Exception as exc:  # matching late receipts must never stop sending
            log.error("receipt_sweep_failed", error=type(exc).__name__)

    def release_held(self) -> int:
        """Look again at the messages held for credit or by a spending cap, one shop per
        transaction (`credits.resume_held`): those past their validity are closed, and those
        that can be paid for now go out — after a new month began under a cap, or credit came
        back from messages never sent. (A top-up or a raised cap releases them at once.)
        Returns how many were sent on."""
        if not self._billing:
            return 0
        released = 0
        now = self._clock.now()
        try:  # read without the write lock (SQLite) or any row lock: most shops holding
            # messages cannot pay for them yet, and are left alone
            with reading(self._engine) as conn:
                holding = [
                    shop_id
                    for shop_id in credits.shops_holding(conn)
                    if credits.held_can_move(conn, shop_id, now)
                ]
        except Exception as exc:  # looking again must never stop sending
            log.error("held_sweep_failed", error=type(exc).__name__)
            return 0
        for shop_id in holding:
            try:
                with self._engine.begin() as conn:
                    released += credits.resume_held(
                        conn, shop_id, self._clock.now(), actor=f"worker:{self.worker_id}"
                    )
            except Exception as exc:  # one shop's trouble leaves the others to go on
                log.error("held_sweep_failed", shop_id=shop_id, error=type(exc).__name__)
        return released

    def renew_packages(self) -> None:
        """Grant the monthly package allowances that are due (each month once)."""
        if not self._billing:
            return
        try:
            with reading(self._engine) as conn:
                shop_ids = credits.package_shops(conn)
        except Exception as exc:  # renewal must never stop sending
            log.error("renewal_failed", error=type(exc).__name__)
            return
        for shop_id in shop_ids:  # one shop per transaction: its account's lock only, and
            try:  # one shop's failure does not undo the others' renewals
                with self._engine.begin() as conn:
                    credits.renew(conn, shop_id, self._clock.now())
            except Exception as exc:
                log.error("renewal_failed", shop_id=shop_id, error=type(exc).__name__)

    async def _loop(
        self,
        stop: asyncio.Event,
        poll_seconds: float,
        next_renewal: float,
        next_sweep: float,
        waker: Waker | None,
    ) -> None:
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_SECONDS
                self.sweep_receipts()
                self.release_held()
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + RENEWAL_SECONDS
                self.renew_packages()
            seen = waker.seen() if waker is not None else 0  # signals from here on wake us
            try:
                planned = self.plan_accepted()
            except Exception as exc:  # planning must never stop sending
                log.error("planning_failed", error=type(exc).__name__, detail=str(exc)[:200])
                planned = 0
            try:
                claimed = await self.run_once(stop)
            except Exception as exc:  # keep the worker alive across database hiccups
                log.error("dispatch_failed", error=type(exc).__name__, detail=str(exc)[:200])
                claimed = 0
            if claimed == 0 and planned == 0 and not stop.is_set():
                await _idle(stop, poll_seconds, waker, seen)


async def _idle(
    stop: asyncio.Event, seconds: float, waker: Waker | None, seen: int | None = None
) -> None:
    """Sleep up to `seconds`, waking early on stop or on the waker's signal — at once if
    one came after `seen` (while the loop was looking for work)."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
    if waker is not None:
        waits.append(asyncio.ensure_future(waker.wait(seen)))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _pending(status: str) -> str:
    """The pending status a released claim goes back to (a taken-over one: scheduled)."""
    return status if status == MessageStatus.DEFERRED.value else MessageStatus.SCHEDULED.value


def _local(instant: datetime, shop: Shop) -> str:
    return local(instant, shop.timezone).strftime("%Y-%m-%d %H:%M %Z")


_REPRICED = "repriced"


def _repriced(row: claims.Claimed, recipient: str, segments: int) -> str | None:
    """Why a reserved SMS no longer costs what it was priced at, if it does not: the
    customer's number is now in another country (priced per destination), or the text as
    the shop now sends it has other segments (a template or transliteration changed). It is
    held and reserved again at its new cost (`credits.resume_held`): what a shop is charged
    is always a price it was shown before the message went out."""
    why = []
    if recipient != row.recipient:  # (most are sent where they were planned to go)
        before = destination_country(Channel.SMS, row.recipient)
        after = destination_country(Channel.SMS, recipient)
        if after != before:
            why.append(f"the number is now in {after or 'an unknown country'}, not {before}")
    if row.segments is not None and segments != row.segments:
        why.append(f"the text is now {segments} segments, not {row.segments}")
    if not why:
        return None
    return f"{_REPRICED}: {' and '.join(why)}; reserved again at its new cost"
