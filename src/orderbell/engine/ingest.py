"""Ingest: an event in → deduplicated, stored, rules matched, messages planned — one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import Connection, Engine

from orderbell.api.schemas import EventIn
from orderbell.billing import credits
from orderbell.billing.prices import Quote, destination_country, fmt_cost, priced
from orderbell.clock import Clock
from orderbell.domain.model import (
    Channel,
    CustomerInfo,
    MessageStatus,
    OrderEvent,
    OrderSnapshot,
    Shop,
)
from orderbell.domain.sms_text import SmsText, decide
from orderbell.engine.planner import PlannedMessage, TemplateInfo, plan
from orderbell.engine.shop_config import ShopConfig, ShopConfigCache
from orderbell.errors import Conflict, OrderbellError, TemplateError
from orderbell.store import attachments as attachment_store
from orderbell.store import customers as customer_store
from orderbell.store import messages as message_store
from orderbell.store import orders as order_store
from orderbell.store.driver import (
    DATABASE_ERRORS,
    INTEGRITY_ERRORS,
    Driver,
    JsonText,
    json_out,
)
from orderbell.store.schema import events
from orderbell.templates.sandbox import Renderer

log = structlog.get_logger("orderbell.ingest")

STATUS_OF_EVENT = {"order.delivered": "delivered"}


def fingerprint(data: EventIn) -> tuple[str, JsonText]:
    """A stable hash of an event body (the same event → the same hash) and the body as
    canonical JSON text: what was hashed is what an accepted event stores as its payload."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest(), JsonText(canonical)


def event_status(data: EventIn) -> str | None:
    """The order status an event sets, if any."""
    return data.status or STATUS_OF_EVENT.get(data.type) or data.order.status


def to_event(data: EventIn, order: OrderSnapshot, customer: CustomerInfo) -> OrderEvent:
    """The domain view of an event, with the order's merged snapshot."""
    return OrderEvent(
        type=data.type,
        occurred_at=data.occurred_at,
        order=order,
        customer=customer,
        status=event_status(data),
        from_status=data.from_status,
        data=data.data,
    )


# Run on the driver's cursor (store/driver.py): it runs for every event.
_REPLAY = "SELECT id, body_hash, outcome FROM events WHERE shop_id = ? AND idempotency_key = ?"
#: Accepted events waiting for a worker to plan them, oldest first (ix_events_waiting).
_WAITING = "SELECT id, shop_id, payload FROM events WHERE planned_at IS NULL ORDER BY id LIMIT ?"
#: One planner at a time on PostgreSQL (a transaction-level advisory lock; key: "obplan").
_PLANNER_LOCK = "SELECT pg_try_advisory_xact_lock(7955890764641390)"
#: What an accepted event answers until a worker has planned it.
ACCEPTED = {"status": "accepted"}

#: The most events one group commit takes; later arrivals form the next group.
GROUP_MAX = 64


@dataclass(slots=True, kw_only=True)
class _Pending:
    """An event waiting for its group commit, and what became of it."""

    shop_id: int
    data: EventIn
    key: str
    digest: str
    dump: JsonText  #: the body as canonical JSON (`fingerprint`)
    plan: bool = True  #: False: store the event only (accepted), a worker plans it later
    done: bool = False
    result: IngestResult | None = None
    error: Exception | None = None
    #: How its waiter learns that the event is done: a thread's event, set; or a
    #: coroutine's future, resolved on its loop (`_signal_all`).
    wake: threading.Event | None = None
    future: asyncio.Future[None] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """The answer to an ingested event; a replay answers the original one."""

    event_id: int
    duplicate: bool
    outcome: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The API body."""
        return {"event_id": self.event_id, "duplicate": self.duplicate, **self.outcome}


class Ingestor:
    """Takes order events in and plans their messages."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        renderer: Renderer | None = None,
        *,
        billing: bool = True,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._renderer = renderer or Renderer()
        self._billing = billing
        self._configs = ShopConfigCache()
        self._group = threading.Lock()
        #: Leader threads (`_lead`): for a coroutine's event that leads, and for what is
        #: still queued once a leading caller's own event is done. One leads at a time; a
        #: second thread lets the one handing over finish while the next starts.
        self._leaders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="group-commit")
        self._queue: list[_Pending] = []
        self._leading = False

    def ingest(
        self, shop_id: int, data: EventIn, idempotency_key: str | None = None
    ) -> IngestResult:
        """Store one event and its planned messages atomically; replays are no-ops.

        Events arriving at the same time from several threads share one transaction (group
        commit), each inside its own savepoint: one event's failure rolls back only that
        event, and the commit — the expensive part — is paid once for the group."""
        return self._through_group(shop_id, data, idempotency_key, plan=True)

    def accept(
        self, shop_id: int, data: EventIn, idempotency_key: str | None = None
    ) -> IngestResult:
        """Store one event durably without planning it yet (`Prefer: respond-async`): the
        answer says `accepted`, and a worker plans its messages soon after
        (`plan_waiting`), in the order events were accepted. Replays and conflicting
        replays behave as with `ingest`."""
        return self._through_group(shop_id, data, idempotency_key, plan=False)

    async def accept_async(
        self, shop_id: int, data: EventIn, idempotency_key: str | None = None
    ) -> IngestResult:
        """`accept` for a coroutine on an event loop (the API's): the event joins the
        group commit without a thread of its own. The loop is not blocked: when a group
        must be led, a worker thread leads it; otherwise the coroutine waits, woken (with
        the others of its group, in one call) when its event is committed."""
        loop = asyncio.get_running_loop()
        item = self._pending(shop_id, data, idempotency_key, plan=False)
        item.future = loop.create_future()
        # Shielded: a request cancelled meanwhile (a client gone) stops waiting, but its
        # event is still committed, and a group it leads still runs to its end.
        if self._enqueue(item):  # from a leader thread: not the shared pool, which threads
            # of synchronous requests waiting for this very group could fill
            await asyncio.shield(loop.run_in_executor(self._leaders, self._lead, item))
        else:
            await asyncio.shield(item.future)
        if item.result is None and isinstance(item.error, INTEGRITY_ERRORS):
            return await asyncio.to_thread(self._after_race, item)
        return self._outcome(item)

    def _through_group(
        self, shop_id: int, data: EventIn, idempotency_key: str | None, *, plan: bool
    ) -> IngestResult:
        item = self._pending(shop_id, data, idempotency_key, plan=plan)
        self._wait_for_group(item)
        if item.result is None and isinstance(item.error, INTEGRITY_ERRORS):
            return self._after_race(item)
        return self._outcome(item)

    @staticmethod
    def _pending(
        shop_id: int, data: EventIn, idempotency_key: str | None, *, plan: bool
    ) -> _Pending:
        digest, dump = fingerprint(data)
        key = idempotency_key or (f"id:{data.id}" if data.id else f"body:{digest}")
        return _Pending(shop_id=shop_id, data=data, key=key, digest=digest, plan=plan, dump=dump)

    @staticmethod
    def _outcome(item: _Pending) -> IngestResult:
        if item.result is not None:
            return item.result
        assert item.error is not None
        raise item.error

    def _after_race(self, item: _Pending) -> IngestResult:
        """Another process stored the same key between our check and insert: its result."""
        with self._engine.begin() as conn:
            previous = self._replay(conn, item.shop_id, item.key, item.digest)
        if previous:
            return previous
        assert item.error is not None
        raise item.error

    def _wait_for_group(self, item: _Pending) -> None:
        """Queue the event; the first to find no group running leads (`_lead`), the others
        wait until their event is done. (Each waiting thread is woken once, by its own
        event: one condition notified to all woke every waiting thread after every group,
        to go back to sleep but a few; with 32 requests in flight that cost as much as the
        group commit saved.)"""
        item.wake = threading.Event()
        if self._enqueue(item):
            self._lead(item)
        else:
            item.wake.wait()

    def _enqueue(self, item: _Pending) -> bool:
        """Queue the event; True when its caller is to lead (no group is running)."""
        with self._group:
            self._queue.append(item)
            lead = not self._leading
            self._leading = True
        return lead

    def _lead(self, item: _Pending | None = None) -> None:
        """Commit what is queued, a group (up to GROUP_MAX events) at a time, until `item` —
        the leading caller's own event — is done, or with None until nothing is queued.
        Then whatever is still queued goes on in a leader thread, so a caller that led is
        answered as soon as its own event is. The lead is only ever handed to that thread,
        never to a waiter: a waiter may never run again (an interrupted thread, a closed
        event loop), and a queue whose lead it held would stall."""
        ended = False
        try:
            while True:
                with self._group:
                    if not self._queue:
                        self._leading, ended = False, True
                        return
                    if item is not None and item.done:
                        return
                    batch, self._queue = self._queue[:GROUP_MAX], self._queue[GROUP_MAX:]
                try:
                    self._run_group(batch)
                finally:
                    _settle(batch)
        finally:
            if not ended:
                with suppress(RuntimeError):  # the executor is shut: the process is ending
                    self._leaders.submit(self._lead)

    def _run_group(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.begin() as conn:
                db = Driver(conn)
                reservations = credits.Reservations()  # the group's, written before commit
                if self._billing:
                    reservations.lock(conn, (it.shop_id for it in batch if it.plan))
                for it in batch:
                    try:
                        with reservations.item(), db.savepoint():
                            previous = self._replay(conn, it.shop_id, it.key, it.digest)
                            if previous is not None:
                                it.result = previous
                            elif it.plan:
                                it.result = self._store(conn, it, reservations)
                            else:
                                it.result = self._store_accepted(conn, it)
                    except Exception as exc:  # this event only: its savepoint is rolled back
                        it.result, it.error = None, exc
                reservations.write(conn, self._clock.now())
        except BaseException as exc:  # the commit failed, or the thread was interrupted:
            # nothing of the group was stored, whatever its events' results said
            error = exc if isinstance(exc, Exception) else RuntimeError("interrupted")
            for it in batch:
                if it.error is None:
                    it.result, it.error = None, error
            if error is not exc:
                raise
        finally:
            for it in batch:
                if it.result is None and it.error is None:  # pragma: no cover - defensive
                    it.error = RuntimeError("the event was not processed")
                it.done = True

    def ingest_many(
        self, shop_id: int, items: Sequence[EventIn], *, plan: bool = True
    ) -> list[IngestResult]:
        """Ingest a batch in one transaction: all stored, or none (`plan=False`: accepted
        only, as `accept` does)."""
        results: list[IngestResult] = []
        with self._engine.begin() as conn:
            reservations = credits.Reservations()
            if self._billing and plan:
                reservations.lock(conn, (shop_id,))
            for data in items:
                digest, dump = fingerprint(data)
                key = f"id:{data.id}" if data.id else f"body:{digest}"
                it = _Pending(shop_id=shop_id, data=data, key=key, digest=digest, dump=dump)
                previous = self._replay(conn, shop_id, key, digest)
                if previous is not None:
                    results.append(previous)
                elif plan:
                    results.append(self._store(conn, it, reservations))
                else:
                    results.append(self._store_accepted(conn, it))
            reservations.write(conn, self._clock.now())
        return results

    def plan_waiting(self, limit: int = 100) -> int:
        """Plan up to `limit` accepted events, oldest first, in one transaction; returns
        how many were taken (0 also while another worker is planning: on PostgreSQL one
        planner at a time holds an advisory lock, so events are planned strictly in the
        order they were accepted — an event planned before an older one of the same order
        would make that one stale). An event that cannot be planned (its payload no longer
        validates, a bug) is marked failed with the reason, so it never blocks the ones
        behind it; a database error rolls the batch back to be tried again."""
        with self._engine.begin() as conn:
            db = Driver(conn)
            if not db.sqlite and not db.rows(_PLANNER_LOCK)[0][0]:
                return 0
            waiting = db.rows(_WAITING, (limit,))
            reservations = credits.Reservations()  # the batch's, written before commit
            if self._billing:
                reservations.lock(conn, (shop_id for _, shop_id, _ in waiting))
            for event_id, shop_id, payload in waiting:
                now = self._clock.now()
                try:
                    data = EventIn.model_validate(json_out(payload))
                    for retry in (True, False):
                        try:
                            with reservations.item(), db.savepoint():
                                self._plan_event(
                                    conn, shop_id, data, now, reservations, event_id=event_id
                                )
                            break
                        except INTEGRITY_ERRORS:
                            # another writer created the same customer or order meanwhile
                            # (committed by now): its row is visible to a second try
                            if not retry:
                                raise
                except INTEGRITY_ERRORS as exc:  # twice: not a race, this event is at fault
                    self._failed(db, shop_id, event_id, exc, now)
                except DATABASE_ERRORS:
                    raise  # the whole batch is rolled back and tried again
                except Exception as exc:  # this event only: its savepoint is rolled back
                    self._failed(db, shop_id, event_id, exc, now)
            reservations.write(conn, self._clock.now())
        return len(waiting)

    @staticmethod
    def _failed(db: Driver, shop_id: int, event_id: int, exc: Exception, now: datetime) -> None:
        """Mark an accepted event that cannot be planned: failed, with the reason."""
        log.error("event_planning_failed", shop_id=shop_id, event_id=event_id,
                  error=type(exc).__name__)  # fmt: skip
        reason = f"failed to plan: {failure_reason(exc)}"
        db.update(events, event_id, {"outcome": {"error": reason}, "planned_at": now})

    def _replay(self, conn: Connection, shop_id: int, key: str, digest: str) -> IngestResult | None:
        found = Driver(conn).rows(_REPLAY, (shop_id, key))
        if not found:
            return None
        event_id, body_hash, outcome = found[0]
        if body_hash != digest:
            raise Conflict(
                "this idempotency key was used for a different event body", field="idempotency_key"
            )
        return IngestResult(event_id=event_id, duplicate=True, outcome=json_out(outcome))

    def _store_accepted(self, conn: Connection, it: _Pending) -> IngestResult:
        """The event alone, waiting to be planned (its attachments stay in the payload
        until then). Contact details are checked now, so a bad phone number or e-mail is a
        422 naming the field rather than an event that fails later."""
        shop = self._configs.recent(conn, it.shop_id).shop
        customer_store.normalise(shop, it.data.customer, prefix="customer.")
        row = _event_row(it, self._clock.now(), payload=it.dump, outcome=ACCEPTED)
        event_id = Driver(conn).insert(events, {**row, "planned_at": None})
        return IngestResult(event_id=event_id, duplicate=False, outcome=ACCEPTED)

    def _store(
        self, conn: Connection, it: _Pending, reservations: credits.Reservations
    ) -> IngestResult:
        return self._plan_event(conn, it.shop_id, it.data, self._clock.now(), reservations, new=it)

    def _plan_event(
        self,
        conn: Connection,
        shop_id: int,
        data: EventIn,
        now: datetime,
        reservations: credits.Reservations,
        *,
        event_id: int | None = None,
        new: _Pending | None = None,
    ) -> IngestResult:
        """Apply the event to its order and plan its messages: a `new` event's row is
        inserted here (planned at once); an accepted one's (`event_id`) is completed."""
        cached = reservations.account_cache(shop_id)  # once read, it carries what is queued
        config, account = self._configs.get_with_account(
            conn, shop_id, account=self._billing and not cached
        )
        if account is not None:
            cached.append(account)
        shop = config.shop
        customer_id, customer = customer_store.upsert_from_event(conn, shop, data.customer, now)
        applied = order_store.apply_event(
            conn,
            shop_id=shop_id,
            customer_id=customer_id,
            data=data.order,
            status=event_status(data),
            occurred_at=data.occurred_at,
            now=now,
        )
        # the files are kept once, in event_attachments, not in the payload
        payload = data.model_dump(mode="json", exclude={"attachments"})
        completed: dict[str, Any] = {}
        if new is not None:
            row = _event_row(new, now, payload=payload, outcome={})
            event_id = Driver(conn).insert(
                events, {**row, "order_id": applied.order_id, "planned_at": now}
            )
        else:
            completed = {"order_id": applied.order_id, "payload": payload}
        assert event_id is not None
        attachment_store.add_to_event(
            conn, shop_id, event_id, applied.order_id, data.attachments, now
        )
        outcome = self._plan_and_store(
            conn, config, data, applied, customer_id, customer, event_id, now, reservations
        )
        Driver(conn).update(events, event_id, {"outcome": outcome, "planned_at": now, **completed})
        log.info(
            "event_ingested",
            shop_id=shop_id,
            event_id=event_id,
            type=data.type,
            order=data.order.code,
            messages=len(outcome.get("messages", [])),
        )
        return IngestResult(event_id=event_id, duplicate=False, outcome=outcome)

    def _plan_and_store(
        self,
        conn: Connection,
        config: ShopConfig,
        data: EventIn,
        applied: order_store.Applied,
        customer_id: int | None,
        customer: CustomerInfo,
        event_id: int,
        now: datetime,
        reservations: credits.Reservations,
    ) -> dict[str, Any]:
        if applied.stale:
            reason = (
                f"stale: the event happened at {data.occurred_at.isoformat()}, before the "
                f"order's known state at {applied.state_at.isoformat()}; no messages"
            )
            return {"stale": True, "reason": reason, "verdicts": [], "messages": []}
        event = to_event(data, applied.snapshot, customer)
        verdicts, planned = plan(
            shop=config.shop,
            rules=config.rules.get(data.type, []),
            event=event,
            customer=customer,
            templates=config.templates,
            now=now,
        )
        # read (and locked) once per transaction, when first needed
        account = reservations.account_cache(config.shop.id)
        log: list[message_store.LogEntry] = []
        stored = [
            self._store_message(
                conn,
                config,
                p,
                config.templates.get(p.rule.action.template_id),
                event_id,
                applied.order_id,
                customer_id,
                now,
                account,
                log,
                reservations,
            )
            for p in planned
        ]
        message_store.add_log(conn, log)
        return {
            "stale": False,
            "verdicts": [v.as_dict() for v in verdicts],
            "messages": stored,
        }

    def _store_message(
        self,
        conn: Connection,
        config: ShopConfig,
        p: PlannedMessage,
        template: TemplateInfo | None,
        event_id: int,
        order_id: int,
        customer_id: int | None,
        now: datetime,
        account: list[credits.Account],
        log: list[message_store.LogEntry],
        reservations: credits.Reservations,
    ) -> dict[str, Any]:
        shop = config.shop
        sms = self._sms(shop, p, template) if is_pending(p.status) else None
        capped = sms.hold if sms is not None else None
        price: Quote | None = None
        if self._billing and is_pending(p.status) and capped is None:
            if not account:
                account.append(credits.account(conn, shop.id, lock=True))
            price = self._quote(conn, config, p, sms, account[0].plan_id)
        held = {}  # over the cap: held now, nothing reserved (no quote)
        if capped is not None and sms is not None:
            held = {"status": MessageStatus.HELD.value, "reason": capped, "segments": sms.segments}
        message_id, hold = credits.insert_funded(
            conn,
            {
                "shop_id": shop.id,
                "event_id": event_id,
                "rule_id": p.rule.id,
                "customer_id": customer_id,
                "order_id": order_id,
                "template_id": p.rule.action.template_id,
                "channel": p.channel.value,
                "category": p.rule.action.category.value,
                "recipient": p.recipient,
                "status": p.status.value,
                "reason": p.reason,
                "due_at": p.due_at,
                "expires_at": p.expires_at,
                "context": p.context,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                **held,
            },
            quote=price,
            account_cache=account,
            now=now,
            actor=f"event:{event_id}",
            allowances=config.has_packages,
            entries=reservations,
        )
        hold = capped or hold
        status, reason = (MessageStatus.HELD, hold) if hold else (p.status, p.reason)
        detail = {"event_id": event_id, "rule_id": p.rule.id, "notes": list(p.notes)}
        log.append(
            message_store.LogEntry(
                message_id=message_id, at=now, status=p.status.value, reason=p.reason, detail=detail
            )
        )
        if hold:
            log.append(
                message_store.LogEntry(
                    message_id=message_id, at=now, status=status.value, reason=hold
                )
            )
        return {
            "id": message_id,
            "rule_id": p.rule.id,
            "rule": p.rule.name,
            "channel": p.channel.value,
            "status": status.value,
            "reason": reason,
            "due_at": p.due_at.isoformat(),
            "expires_at": p.expires_at.isoformat() if p.expires_at else None,
            "cost": fmt_cost(price.cost) if price is not None else None,
        }

    def _sms(self, shop: Shop, p: PlannedMessage, template: TemplateInfo | None) -> SmsText | None:
        """The SMS the planned message will send, as the worker will send it (None for
        e-mail, or when it does not render: the worker records that failure)."""
        if p.channel is not Channel.SMS or template is None or template.source is None:
            return None
        try:
            rendered = self._renderer.render(
                (template.id, template.version), template.source, p.context
            )
        except TemplateError:
            return None
        return decide(shop, rendered.text)

    def _quote(
        self,
        conn: Connection,
        config: ShopConfig,
        p: PlannedMessage,
        sms: SmsText | None,
        plan_id: int | None,
    ) -> Quote:
        """What the planned message will cost: SMS priced per segment of the text it sends."""
        country = destination_country(p.channel, p.recipient)
        unit = config.unit_price(conn, plan_id, p.channel, country)
        return priced(unit, p.channel, country, sms.segments if sms is not None else None)


def failure_reason(exc: Exception) -> str:
    """Why an accepted event could not be planned, without the values it carried (a
    validation error lists fields and reasons only; other errors give their own message
    when it is one of ours, else their type)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors()
        )[:500]
    if isinstance(exc, OrderbellError):
        return f"{exc.field or 'event'}: {exc}"[:500]
    return type(exc).__name__


def _event_row(it: _Pending, now: datetime, **more: Any) -> dict[str, Any]:
    """The columns every new events row gives."""
    return {
        "shop_id": it.shop_id,
        "idempotency_key": it.key,
        "body_hash": it.digest,
        "type": it.data.type,
        "occurred_at": it.data.occurred_at,
        "received_at": now,
        **more,
    }


def _settle(batch: Sequence[_Pending]) -> None:
    """A group has run (`_run_group` marked each event done): wake their waiters."""
    for it in batch:
        if it.wake is not None:
            it.wake.set()
    _signal_all(batch)


def _signal_all(items: Sequence[_Pending]) -> None:
    """Resolve waiting coroutines' futures, one call per event loop (each call wakes it)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for it in items:
        if it.future is not None:
            by_loop.setdefault(it.future.get_loop(), []).append(it.future)
    for loop, futures in by_loop.items():
        with suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, futures)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def is_pending(status: MessageStatus) -> bool:
    """Will a worker pick this message up?"""
    return status in (MessageStatus.SCHEDULED, MessageStatus.DEFERRED)
