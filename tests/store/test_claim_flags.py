"""What a claim tells the worker beyond the message itself: whether the shop has accounts of
its own to send through, and whether the message has files to attach (so a batch with
neither looks neither up) — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from tests.support import bare_shop

from orderbell.clock import ManualClock
from orderbell.compose import Services
from orderbell.store import claims
from orderbell.store.schema import (
    event_attachments,
    events,
    messages,
    shop_providers,
    template_attachments,
    templates,
)


def _account(conn: Any, shop_id: int, name: str, *, active: bool, now: Any) -> None:
    conn.execute(
        insert(shop_providers).values(
            shop_id=shop_id, name=name, channel="sms", kind="kannel", active=active,
            callback_token=f"token-{shop_id}-{name}", created_at=now, updated_at=now,
        )
    )  # fmt: skip


def test_a_claim_says_which_shops_route_and_which_messages_carry_files(
    services: Services, clock: ManualClock
) -> None:
    now = clock.now()
    plain, inactive, routed = (bare_shop(services.engine, s, now) for s in ("p", "i", "r"))
    with services.engine.begin() as conn:
        _account(conn, inactive, "off", active=False, now=now)
        _account(conn, routed, "off", active=False, now=now)
        _account(conn, routed, "on", active=True, now=now)

        def template(shop_id: int, name: str) -> int:
            return int(
                conn.execute(
                    insert(templates).values(
                        shop_id=shop_id, name=name, kind="order", channel="email", version=1,
                        created_at=now, updated_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )  # fmt: skip

        def event(shop_id: int, key: str) -> int:
            return int(
                conn.execute(
                    insert(events).values(
                        shop_id=shop_id, idempotency_key=key, body_hash="h", type="order.created",
                        occurred_at=now, payload={}, outcome={}, received_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )  # fmt: skip

        with_file, without_file = template(plain, "a"), template(plain, "b")
        conn.execute(
            insert(template_attachments).values(
                template_id=with_file, filename="terms.pdf", content_type="application/pdf",
                data=b"%PDF", created_at=now,
            )
        )  # fmt: skip
        invoiced, bare_event = event(plain, "e1"), event(plain, "e2")
        conn.execute(
            insert(event_attachments).values(
                shop_id=plain, event_id=invoiced, filename="invoice.pdf",
                content_type="application/pdf", data=b"%PDF", created_at=now,
            )
        )  # fmt: skip
        cases = {  # message → (shop, template, event)
            "template file": (plain, with_file, bare_event),
            "event file": (plain, without_file, invoiced),
            "no file": (plain, without_file, bare_event),
            "no template": (plain, None, None),
            "inactive account": (inactive, None, None),
            "active account": (routed, None, None),
        }
        ids = {}
        for name, (shop_id, template_id, event_id) in cases.items():
            ids[name] = conn.execute(
                insert(messages).values(
                    shop_id=shop_id, template_id=template_id, event_id=event_id,
                    channel="email", category="transactional", recipient="a@example.com",
                    status="scheduled", due_at=now - timedelta(seconds=1), context={},
                    attempts=0, created_at=now, updated_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]  # fmt: skip
        rows = claims.claim(
            conn, worker="w", now=now, lease_until=now + timedelta(seconds=60), limit=100
        )
    by_id = {r.id: r for r in rows}
    flags = {name: (by_id[i].shop_accounts, by_id[i].has_files) for name, i in ids.items()}
    assert flags == {
        "template file": (False, True),
        "event file": (False, True),
        "no file": (False, False),
        "no template": (False, False),
        "inactive account": (False, False),
        "active account": (True, False),
    }
