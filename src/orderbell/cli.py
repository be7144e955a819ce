"""The `orderbell` command."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection

from orderbell.api.schemas import ApiKeyIn, EventIn, ShopIn
from orderbell.clock import ManualClock
from orderbell.compose import Services, build
from orderbell.errors import OrderbellError
from orderbell.settings import Settings
from orderbell.store import shops as shop_store

app = typer.Typer(help="orderbell: order notifications by SMS and e-mail.", no_args_is_help=True)
event_app = typer.Typer(help="Order events.", no_args_is_help=True)
shop_app = typer.Typer(help="Shops.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
credits_app = typer.Typer(
    help="Credits: balance, top-ups, prices, packages, settings, the ledger, statements.",
    no_args_is_help=True,
)
user_app = typer.Typer(help="Admin logins of a shop (the web UI at /admin).", no_args_is_help=True)
plan_app = typer.Typer(
    help="Price plans shared by many shops (a shop's own prices still win).", no_args_is_help=True
)
app.add_typer(event_app, name="event")
app.add_typer(shop_app, name="shop")
app.add_typer(apikey_app, name="apikey")
app.add_typer(credits_app, name="credits")
app.add_typer(user_app, name="user")
app.add_typer(plan_app, name="plan")
provider_app = typer.Typer(
    help="A shop's provider accounts (its own gateways, in failover order).",
    no_args_is_help=True,
)
app.add_typer(provider_app, name="provider")
out = Console()
err = Console(stderr=True)


def fail(message: str, field: str | None = None) -> typer.Exit:
    """Print a clear error naming the field and exit non-zero."""
    err.print(f"[red]error[/red]{f' in {field}' if field else ''}: {message}", highlight=False)
    return typer.Exit(code=2)


def _validation(exc: ValidationError, options: tuple[str, ...] = ()) -> typer.Exit:
    """The first error, naming its field — as the command-line option it came from when it
    is one of `options` (an API field: monthly_cap → --monthly-cap)."""
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    named = next((p for p in reversed(loc) if p in options), None)
    field = _option(named) if named else ".".join(loc) or None
    return fail(str(first["msg"]).removeprefix("Value error, "), field)


def _services(*, server: bool = False, **kw: Any) -> Services:
    """Settings → services. One-shot commands log warnings only; servers log as configured."""
    from orderbell.logs import configure

    try:
        settings = Settings()
    except ValidationError as exc:
        raise _validation(exc) from None
    configure(settings.log_level if server else "WARNING", json=settings.log_json)
    return build(settings, **kw)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"no such file: {path}", "FILE") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"not valid JSON: {exc}", "FILE") from None


def _shop_id(svc: Services, slug: str) -> int:
    with svc.engine.connect() as conn:
        try:
            return int(shop_store.by_slug(conn, slug).id)
        except OrderbellError as exc:
            raise fail(exc.message, "--shop") from None


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    svc = _services()
    out.print(f"database ready: {svc.engine.url.render_as_string(hide_password=True)}")


@app.command()
def serve(
    demo: Annotated[bool, typer.Option(help="create the demo shop first")] = False,
    worker: Annotated[bool, typer.Option(help="run an embedded worker")] = True,
) -> None:
    """Serve the HTTP API (with an embedded worker)."""
    import uvicorn

    from orderbell.api.app import create_app

    svc = _services(server=True)
    if demo:
        from orderbell.engine.demo import ensure_demo_shop
        from orderbell.web.accounts import ensure_demo_login

        with svc.engine.begin() as conn:
            shop = ensure_demo_shop(conn, svc.clock.now())
            login, password = ensure_demo_login(conn, shop.shop_id, svc.clock.now())
        base = svc.settings.public_url
        out.print(f"demo shop: slug [bold]demo[/bold] (id {shop.shop_id})")
        out.print(f"API key:   [bold]{shop.api_key}[/bold]")
        out.print(f"admin:     {base}/admin/  log in as [bold]{login}[/bold]", highlight=False)
        out.print(f"password:  [bold]{password}[/bold]", highlight=False)
        out.print(f"API:       {base}/v1   docs: {base}/docs   admin: {base}/admin")
        out.print(f"try:       export ORDERBELL_KEY={shop.api_key}")
    application = create_app(svc, embedded_worker=worker, freeze_heap=True)
    uvicorn.run(application, host=svc.settings.host, port=svc.settings.port, log_level="warning")


@app.command(name="worker")
def run_worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="dispatch loops")] = 1,
    drain: Annotated[
        bool,
        typer.Option(
            "--drain",
            help="renew due package allowances, match late receipts, plan the accepted "
            "events and send what is due now, then exit (for cron jobs and scripts; "
            "events another worker is planning at that moment are left to it)",
        ),
    ] = False,
) -> None:
    """Run a worker alone: claims due messages and sends them until SIGTERM."""
    svc = _services(server=True)
    if drain:

        async def once() -> int:
            dispatcher = svc.dispatcher()
            dispatcher.renew_packages()
            dispatcher.sweep_receipts()
            try:
                return await dispatcher.drain()
            finally:
                for provider in svc.providers.values():
                    await provider.close()

        out.print(f"drained: {asyncio.run(once())} messages claimed")
        return

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        base = svc.dispatcher().worker_id
        waker = svc.waker()  # one LISTEN connection wakes every loop of this process
        loops = [
            svc.dispatcher(worker_id=f"{base}:{i}").run(
                stop, svc.settings.worker_poll_seconds, waker
            )
            for i in range(concurrency)
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            await waker.close()
            for provider in svc.providers.values():
                await provider.close()

    if svc.settings.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(
            svc.settings.metrics_port, addr=svc.settings.host, registry=svc.metrics.registry
        )
    out.print("worker started; SIGTERM or Ctrl-C to stop")
    asyncio.run(main())
    svc.engine.dispose()
    out.print("worker stopped: work in flight finished, unstarted claims given back")


@app.command()
def simulate(
    shop: Annotated[str, typer.Option(help="shop slug")],
    event: Annotated[str, typer.Option(help="event type, e.g. order.created")],
    at: Annotated[str, typer.Option(help="when the event happens, ISO 8601 with offset")],
    status: Annotated[str | None, typer.Option(help="target status")] = None,
    order: Annotated[Path | None, typer.Option(help="order JSON file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Say what an event would send, when, with what text and why — nothing is stored."""
    svc = _services()
    shop_id = _shop_id(svc, shop)
    order_data: dict[str, Any] = {"code": "SIM-1"}
    customer: dict[str, Any] = {"name": "Sample Customer", "phone": None, "email": None}
    if order is not None:
        loaded = _load_json(order)
        if not isinstance(loaded, dict):
            raise fail("the order file must hold a JSON object", "--order")
        customer = loaded.pop("customer", customer)
        order_data = loaded
    try:
        data = EventIn.model_validate(
            {
                "type": event,
                "occurred_at": at,
                "status": status,
                "order": order_data,
                "customer": {k: v for k, v in customer.items() if v is not None},
            }
        )
        result = svc.simulator.simulate(shop_id, data)
    except ValidationError as exc:
        raise _validation(exc) from None
    except OrderbellError as exc:
        raise fail(exc.message, exc.field) from None
    if as_json:
        print(json.dumps(result["messages"], ensure_ascii=False, indent=2))
        return
    table = Table("rule", "matched", "why")
    for v in result["verdicts"]:
        table.add_row(v["rule"], "yes" if v["matched"] else "no", v["reason"])
    out.print(table)
    for m in result["messages"]:
        out.print(f"[bold]{m['rule']}[/bold] → {m['channel']} at {m['send_at']} ({m['status']})")
        out.print(f"  {m['reason']}")
        out.print(f"  {m.get('text')}")
        if m.get("cost"):
            out.print(f"  {_cost_line(m['cost'], m.get('funding'))}", highlight=False)


def _cost_line(cost: dict[str, Any], funding: str | None) -> str:
    """A simulated message's cost: "costs 0.1000 credits (2 × 0.0500 to TR), from credit"."""
    to = f" to {cost['country']}" if cost.get("country") else ""
    paid = {"credit": ", from prepaid credit", "allowance": ", from the package allowance"}
    return f"costs {cost['cost']} credits ({cost['units']} × {cost['unit_price']}{to})" + paid.get(
        funding or "", ""
    )


@event_app.command("send")
def event_send(
    file: Annotated[Path, typer.Argument(help="an event (or a list of events) as JSON")],
    shop: Annotated[str, typer.Option(help="shop slug")] = "demo",
    accept_only: Annotated[
        bool,
        typer.Option(
            "--async",
            help="store the events and return at once (status 'accepted'), as the API's "
            "'Prefer: respond-async' does; a running worker plans their messages",
        ),
    ] = False,
) -> None:
    """Ingest events from a JSON file through the real pipeline."""
    svc = _services()
    shop_id = _shop_id(svc, shop)
    raw = _load_json(file)
    plan = not accept_only
    try:
        if isinstance(raw, list):
            items = [EventIn.model_validate(i) for i in raw]
            results = svc.ingestor.ingest_many(shop_id, items, plan=plan)
        elif plan:
            results = [svc.ingestor.ingest(shop_id, EventIn.model_validate(raw))]
        else:
            results = [svc.ingestor.accept(shop_id, EventIn.model_validate(raw))]
    except ValidationError as exc:
        raise _validation(exc) from None
    except OrderbellError as exc:
        raise fail(exc.message, exc.field) from None
    print(json.dumps([r.as_json() for r in results], ensure_ascii=False, indent=2))


@shop_app.command("create")
def shop_create(
    name: Annotated[str, typer.Option()],
    slug: Annotated[str, typer.Option()],
    timezone: Annotated[str, typer.Option()] = "UTC",
    country: Annotated[str, typer.Option()] = "US",
    locale: Annotated[str, typer.Option()] = "en",
    currency: Annotated[str, typer.Option()] = "USD",
) -> None:
    """Create a shop and print its first API key (shown once)."""
    svc = _services()
    try:
        data = ShopIn(
            name=name,
            slug=slug,
            timezone=timezone,
            country=country,
            locale=locale,
            currency=currency,
        )
        with svc.engine.begin() as conn:
            row = shop_store.create(conn, data, svc.clock.now())
            _, key = shop_store.create_key(conn, row.id, "default", svc.clock.now())
    except ValidationError as exc:
        raise _validation(exc) from None
    except OrderbellError as exc:
        raise fail(exc.message, exc.field) from None
    out.print(f"shop {row.slug} created (id {row.id})")
    out.print(f"API key (shown once): {key}")


@apikey_app.command("create")
def apikey_create(
    shop: Annotated[str, typer.Option(help="shop slug")],
    name: Annotated[str, typer.Option()] = "cli",
) -> None:
    """Create an API key for a shop (shown once)."""
    svc = _services()
    shop_id = _shop_id(svc, shop)
    try:
        data = ApiKeyIn(name=name)
    except ValidationError as exc:
        raise _validation(exc) from None
    with svc.engine.begin() as conn:
        _, key = shop_store.create_key(conn, shop_id, data.name, svc.clock.now())
    out.print(key)


@app.command()
def demo(
    day: Annotated[str, typer.Option(help="the day to replay, YYYY-MM-DD")] = "2026-11-20",
) -> None:
    """Set up the demo shop and replay a day of sample orders with a moving clock."""
    from orderbell.engine.demo import ensure_demo_shop, sample_day

    try:
        start = datetime.fromisoformat(day).replace(hour=0, tzinfo=None)
    except ValueError:
        raise fail("must be YYYY-MM-DD", "--day") from None
    events = sample_day(start)
    clock = ManualClock(events[0].occurred_at)
    svc = _services(clock=clock)
    with svc.engine.begin() as conn:
        shop = ensure_demo_shop(conn, clock.now())
    dispatcher = svc.dispatcher("demo")
    event_ids: list[int] = []
    for event in events:
        clock.set(max(clock.now(), event.occurred_at))
        asyncio.run(dispatcher.drain())
        event_ids.append(svc.ingestor.ingest(shop.shop_id, event).event_id)
        asyncio.run(dispatcher.drain())
    for _ in range(4 * 24):  # let the rest of the day (and the night) pass
        clock.advance(timedelta(minutes=15))
        asyncio.run(dispatcher.drain())
    _print_log(svc, shop.shop_id, set(event_ids))


def _print_log(svc: Services, shop_id: int, event_ids: set[int]) -> None:
    from sqlalchemy import select

    from orderbell.store import messages as message_store
    from orderbell.store.schema import rules

    with svc.engine.connect() as conn:
        rows = [
            m for m in message_store.search(conn, shop_id, limit=500) if m["event_id"] in event_ids
        ]
        names = dict(
            conn.execute(select(rules.c.id, rules.c.name).where(rules.c.shop_id == shop_id)).all()
        )
    table = Table("id", "rule", "ch", "status", "due (UTC)", "text / reason")
    for m in reversed(rows):
        text = " / ".join(line for line in (m["body"] or "").splitlines() if line.strip())
        table.add_row(
            str(m["id"]),
            str(names.get(m["rule_id"], m["rule_id"])),
            m["channel"],
            m["status"],
            (m["due_at"] or "")[:16].replace("T", " "),
            text or m["reason"] or "",
        )
    out.print(table)


@credits_app.command("show")
def credits_show(shop: Annotated[str, typer.Option(help="shop slug")]) -> None:
    """Balance, reservations, allowances and this month's spending, as JSON."""
    from orderbell.billing import credits

    svc = _services()
    shop_id = _shop_id(svc, shop)
    with svc.engine.connect() as conn:
        print(json.dumps(credits.summary(conn, shop_id, svc.clock.now()), indent=2))


@credits_app.command("topup")
def credits_topup(
    shop: Annotated[str, typer.Option(help="shop slug")],
    amount: Annotated[str, typer.Option(help='credits, e.g. "25.00"')],
    reference: Annotated[str | None, typer.Option(help="e.g. the payment id")] = None,
) -> None:
    """Add prepaid credit; held messages still valid go out in order."""
    from orderbell.billing import credits

    _change_credits(
        shop,
        lambda conn, shop_id, now: credits.topup(
            conn, shop_id, amount, reference=reference, actor="cli", now=now
        ),
        ("amount", "reference"),
    )


def _change_credits(
    shop: str,
    change: Callable[[Connection, int, datetime], dict[str, Any]],
    options: tuple[str, ...],
    *,
    svc: Services | None = None,
) -> None:
    """Run a change of the shop's credits in one transaction and print its result; an error
    in one of the `options` names it as the command line does (--amount, --unit-price: a
    price line's field, prices[0].unit_price, by its last part)."""
    svc = svc or _services()
    shop_id = _shop_id(svc, shop)
    try:
        with svc.engine.begin() as conn:
            result = change(conn, shop_id, svc.clock.now())
    except OrderbellError as exc:
        named = (exc.field or "").rsplit(".", 1)[-1].split("[", 1)[0]
        field = _option(named) if named in options else exc.field
        raise fail(exc.message, field) from None
    print(json.dumps(result, indent=2))


@credits_app.command("adjust")
def credits_adjust(
    shop: Annotated[str, typer.Option(help="shop slug")],
    amount: Annotated[str, typer.Option(help='credits given ("2.50") or taken back ("-2.50")')],
    note: Annotated[str, typer.Option(help="why the credit is corrected")],
) -> None:
    """Correct prepaid credit by hand, saying why; credit given releases held messages."""
    from orderbell.billing import credits

    _change_credits(
        shop,
        lambda conn, shop_id, now: credits.adjust(
            conn, shop_id, amount, note=note, actor="cli", now=now
        ),
        ("amount", "note"),
    )


@credits_app.command("statement")
def credits_statement(
    shop: Annotated[str, typer.Option(help="shop slug")],
    month: Annotated[str, typer.Option(help="YYYY-MM")],
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV instead of JSON")] = False,
) -> None:
    """A month's charges per channel, destination country and rule, and its top-ups and
    corrections."""
    from orderbell.billing import credits

    svc = _services()
    shop_id = _shop_id(svc, shop)
    try:
        with svc.engine.connect() as conn:
            data = credits.statement(conn, shop_id, credits.parse_month(month, field="--month"))
    except OrderbellError as exc:
        raise fail(exc.message, exc.field) from None
    if as_csv:
        sys.stdout.write(credits.statement_csv(data))
    else:
        print(json.dumps(data, indent=2))


@credits_app.command("ledger")
def credits_ledger(
    shop: Annotated[str, typer.Option(help="shop slug")],
    kind: Annotated[str | None, typer.Option(help="topup, reservation, debit, release …")] = None,
    message_id: Annotated[int | None, typer.Option(help="one message's entries")] = None,
    rule_id: Annotated[int | None, typer.Option(help="one rule's entries")] = None,
    since: Annotated[str | None, typer.Option(help="from this instant (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="before this instant (ISO 8601)")] = None,
    before: Annotated[int | None, typer.Option(help="the page after this entry id")] = None,
    limit: Annotated[int, typer.Option(help="entries per page, 1-500")] = 100,
) -> None:
    """Ledger entries, newest first, as JSON; the next page: --before <next_before>."""
    from orderbell.api.ids import MAX_ROW_ID
    from orderbell.api.schemas import instant_problem
    from orderbell.billing import credits

    svc = _services()
    shop_id = _shop_id(svc, shop)
    if not 1 <= limit <= 500:
        raise fail("must be between 1 and 500", "--limit")
    for name, value in (("--message-id", message_id), ("--rule-id", rule_id),
                        ("--before", before)):  # fmt: skip
        if value is not None and not 1 <= value <= MAX_ROW_ID:
            raise fail(f"must be an id from 1 to {MAX_ROW_ID}", name)
    instants: dict[str, datetime | None] = {"since": None, "until": None}
    for name, text in (("since", since), ("until", until)):
        if text is None:
            continue
        try:
            instant = datetime.fromisoformat(text)
        except ValueError:
            raise fail("must be an ISO 8601 instant with its offset", f"--{name}") from None
        problem = instant_problem(instant)
        if problem is not None:
            raise fail(problem, f"--{name}")
        instants[name] = instant
    try:
        with svc.engine.connect() as conn:
            items = credits.entries(
                conn, shop_id, kind=kind, message_id=message_id, rule_id=rule_id,
                since=instants["since"], until=instants["until"], before=before, limit=limit,
            )  # fmt: skip
    except OrderbellError as exc:
        raise fail(exc.message, _option(exc.field or "shop")) from None
    next_before = items[-1]["id"] if len(items) == limit else None
    print(json.dumps({"items": items, "next_before": next_before}, indent=2))


@credits_app.command("prices")
def credits_prices(shop: Annotated[str, typer.Option(help="shop slug")]) -> None:
    """Every price that applies to the shop (its own, its plan's or the default list's, and
    which), as JSON."""
    from orderbell.billing import manage

    svc = _services()
    shop_id = _shop_id(svc, shop)
    with svc.engine.connect() as conn:
        print(json.dumps(manage.effective_prices(conn, shop_id), indent=2))


@credits_app.command("price")
def credits_price(
    shop: Annotated[str, typer.Option(help="shop slug")],
    channel: Annotated[str, typer.Option(help="sms or email")],
    country: Annotated[str, typer.Option(help='ISO 3166 code such as PL, or "*" for any')],
    unit_price: Annotated[
        str | None, typer.Option(help='credits per SMS segment / e-mail, e.g. "0.07"')
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="drop the shop's own line")] = False,
) -> None:
    """Set one of the shop's own prices (they win over its plan's and the default list's),
    or --remove it; the shop's other lines are kept. Prints every price that applies."""
    from orderbell.api.schemas import PricesIn
    from orderbell.billing import manage

    if (unit_price is None) == (not remove):
        raise fail("give a price, or --remove", "--unit-price")
    wanted = {"channel": channel.strip().lower(), "country": country.strip().upper()}

    def change(conn: Connection, shop_id: int, _now: datetime) -> dict[str, Any]:
        lines = [
            line
            for line in manage.own_prices(conn, shop_id)
            if (line["channel"], line["country"]) != (wanted["channel"], wanted["country"])
        ]
        if unit_price is not None:
            lines.append({**wanted, "unit_price": unit_price})
        body = _body(PricesIn, {"prices": lines}, ("channel", "country", "unit_price"))
        return manage.replace_prices(conn, shop_id, body, actor="cli")

    _change_credits(shop, change, ("channel", "country", "unit_price"))


@credits_app.command("packages")
def credits_packages(shop: Annotated[str, typer.Option(help="shop slug")]) -> None:
    """The shop's packages (allowance a month, carry-over, price), as JSON; what is left of
    them this period: `credits show`."""
    from orderbell.billing import manage

    svc = _services()
    shop_id = _shop_id(svc, shop)
    with svc.engine.connect() as conn:
        print(json.dumps({"items": manage.package_list(conn, shop_id)}, indent=2))


@credits_app.command("package")
def credits_package(
    shop: Annotated[str, typer.Option(help="shop slug")],
    name: Annotated[str, typer.Option(help='e.g. "1000 SMS a month"')],
    channel: Annotated[str, typer.Option(help="sms or email")],
    allowance: Annotated[int, typer.Option(help="messages a month")],
    carry_over: Annotated[
        str, typer.Option(help="unused messages: none, unlimited, cap or expire")
    ] = "unlimited",
    carry_cap: Annotated[int | None, typer.Option(help="most carried over (cap)")] = None,
    carry_months: Annotated[int | None, typer.Option(help="months they last (expire)")] = None,
    price: Annotated[str | None, typer.Option(help='what the shop pays, e.g. "31.00"')] = None,
) -> None:
    """Add a monthly package; this period's allowance is granted at once."""
    from orderbell.api.schemas import PackageIn
    from orderbell.billing import manage

    options = ("name", "channel", "allowance", "carry_over", "carry_cap", "carry_months", "price")
    given = {"name": name, "channel": channel.strip().lower(), "allowance": allowance,
             "carry_over": carry_over, "carry_cap": carry_cap, "carry_months": carry_months,
             "price": price}  # fmt: skip
    body = _body(PackageIn, {k: v for k, v in given.items() if v is not None}, options)
    _change_credits(
        shop,
        lambda conn, shop_id, now: manage.add_package(conn, shop_id, body, now, actor="cli"),
        options,
    )


@credits_app.command("settings")
def credits_settings(
    shop: Annotated[str, typer.Option(help="shop slug")],
    mode: Annotated[str | None, typer.Option(help="prepaid or unmetered")] = None,
    billing_day: Annotated[int | None, typer.Option(help="1-28: packages renew then")] = None,
    monthly_cap: Annotated[str | None, typer.Option(help='spending cap, e.g. "100"')] = None,
    clear_monthly_cap: Annotated[bool, typer.Option("--clear-monthly-cap")] = False,
    low_balance_threshold: Annotated[
        list[str] | None,
        typer.Option(help="e-mail when available credit falls below it (repeatable)"),
    ] = None,
    clear_low_balance_thresholds: Annotated[
        bool, typer.Option("--clear-low-balance-thresholds")
    ] = False,
    charge_failed_after_submission: Annotated[
        bool | None,
        typer.Option(
            "--charge-failed-after-submission/--refund-failed-after-submission",
            help="whether a delivery failure after the provider took it is charged",
        ),
    ] = None,
    notify_email: Annotated[str | None, typer.Option(help="where low-balance notices go")] = None,
    clear_notify_email: Annotated[
        bool, typer.Option("--clear-notify-email", help="notices go to the shop's address")
    ] = False,
    plan: Annotated[str | None, typer.Option(help="a price plan's name")] = None,
    clear_plan: Annotated[
        bool, typer.Option("--clear-plan", help="back to the default list")
    ] = False,
) -> None:
    """Change how the shop's credit account behaves (only what is given changes); prints the
    account. Held messages the new terms can pay for go out."""
    from orderbell.api.schemas import CreditSettingsIn
    from orderbell.billing import manage

    thresholds = [] if clear_low_balance_thresholds else low_balance_threshold
    given = {"mode": mode, "billing_day": billing_day, "monthly_cap": monthly_cap,
             "clear_monthly_cap": clear_monthly_cap, "low_balance_thresholds": thresholds,
             "charge_failed_after_submission": charge_failed_after_submission,
             "notify_email": notify_email, "clear_notify_email": clear_notify_email, "plan": plan,
             "clear_plan": clear_plan}  # fmt: skip
    options = (*given, "low_balance_threshold")
    body = _body(CreditSettingsIn, {k: v for k, v in given.items() if v is not None}, options)
    svc = _services()
    _change_credits(
        shop,
        lambda conn, shop_id, now: manage.change_settings(
            conn, shop_id, body, now, billing=svc.settings.billing, actor="cli"
        ),
        options,
        svc=svc,
    )


def _body(model: Any, data: dict[str, Any], options: tuple[str, ...]) -> Any:
    """`data` validated as the API's `model`; an error names the option it came from."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation(exc, options) from None


#: API fields whose command-line option is named otherwise.
_OPTIONS = {"low_balance_thresholds": "--low-balance-threshold"}


def _option(field: str) -> str:
    """The command-line option for an API field: monthly_cap → --monthly-cap."""
    return _OPTIONS.get(field) or f"--{field.replace('_', '-')}"


@credits_app.command("renew")
def credits_renew() -> None:
    """Grant every shop's package allowances for the current billing period (idempotent)."""
    from orderbell.billing import credits

    svc = _services()
    with svc.engine.begin() as conn:
        granted = credits.renew_all(conn, svc.clock.now())
    out.print(f"{granted} allowance(s) granted")


@user_app.command("create")
def user_create(
    shop: Annotated[str, typer.Option(help="shop slug")],
    email: Annotated[str, typer.Option(help="the login")],
    name: Annotated[str | None, typer.Option(help="shown in the UI")] = None,
) -> None:
    """Create a login for a shop's admin UI; prints a generated password once."""
    import secrets

    from orderbell.web.accounts import create_user

    svc = _services()
    shop_id = _shop_id(svc, shop)
    password = secrets.token_urlsafe(12)
    try:
        with svc.engine.begin() as conn:
            create_user(conn, shop_id, email, password, svc.clock.now(), name=name)
    except OrderbellError as exc:
        raise fail(exc.message, f"--{exc.field}" if exc.field else None) from None
    out.print(f"login:     {email.strip().lower()}")
    out.print(f"password:  {password}   (shown once)")


PLAN_FIELDS = {"name": "NAME", "channel": "--channel", "country": "--country"}


def _plan_error(exc: OrderbellError) -> typer.Exit:
    return fail(exc.message, PLAN_FIELDS.get(exc.field or "", exc.field))


@plan_app.command("list")
def plan_list() -> None:
    """Every price plan with its number of price lines and of shops."""
    from orderbell.billing import plans

    svc = _services()
    with svc.engine.connect() as conn:
        rows = plans.names(conn)
    table = Table("plan", "prices", "shops")
    for r in rows:
        table.add_row(str(r["name"]), str(r["prices"]), str(r["shops"]))
    out.print(table)


@plan_app.command("create")
def plan_create(name: Annotated[str, typer.Argument(help="the plan's name")]) -> None:
    """Create an empty plan: it prices like the default list until lines are added."""
    from orderbell.billing import plans

    svc = _services()
    try:
        with svc.engine.begin() as conn:
            plans.create(conn, name, svc.clock.now())
    except OrderbellError as exc:
        raise _plan_error(exc) from None
    out.print(f"price plan {name.strip()!r} created", highlight=False)


@plan_app.command("price")
def plan_price(
    name: Annotated[str, typer.Argument(help="the plan's name")],
    channel: Annotated[str, typer.Option(help="sms or email")],
    country: Annotated[str, typer.Option(help='ISO 3166 code such as PL, or "*" for any')],
    unit_price: Annotated[str, typer.Option(help='credits per SMS segment / e-mail, e.g. "0.07"')],
) -> None:
    """Set one price of a plan (replacing the plan's price for that channel and country)."""
    from orderbell.billing import plans, prices

    svc = _services()
    try:
        chosen = plans.channel(channel, field="--channel")
        where = prices.parse_country(country.strip().upper(), field="--country", channel=chosen)
        price = plans.unit_price(unit_price, field="--unit-price")
        with svc.engine.begin() as conn:
            plans.set_price(conn, plans.find(conn, name, lock=True), chosen, where, price)
    except OrderbellError as exc:
        raise _plan_error(exc) from None
    out.print(
        f"{name.strip()}: {chosen.value} to {where} costs {prices.fmt(price)}", highlight=False
    )


@plan_app.command("show")
def plan_show(
    name: Annotated[str, typer.Argument(help="the plan's name")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A plan's prices, the default prices it leaves in place, and the shops on it."""
    from orderbell.billing import plans

    svc = _services()
    try:
        with svc.engine.connect() as conn:
            data = plans.describe(conn, plans.find(conn, name))
    except OrderbellError as exc:
        raise _plan_error(exc) from None
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("channel", "country", "unit price", "from", title=f"price plan {data['name']}")
    for source, key in (("plan", "prices"), ("default", "defaults_used")):
        for line in cast(list[dict[str, str]], data[key]):
            table.add_row(line["channel"], line["country"], line["unit_price"], source)
    out.print(table)
    shops_on = cast(list[str], data["shops"])
    out.print(f"shops: {', '.join(shops_on) if shops_on else 'none'}", highlight=False)


@plan_app.command("assign")
def plan_assign(
    name: Annotated[str, typer.Argument(help="the plan's name")],
    shop: Annotated[str, typer.Option(help="shop slug")],
) -> None:
    """Put a shop on a plan; its own prices (if any) still win over the plan's."""
    from orderbell.billing import plans

    svc = _services()
    shop_id = _shop_id(svc, shop)
    try:
        with svc.engine.begin() as conn:
            plans.assign(conn, shop_id, plans.find(conn, name), svc.clock.now(), actor="cli")
    except OrderbellError as exc:
        raise _plan_error(exc) from None
    out.print(f"shop {shop} is on price plan {name.strip()!r}", highlight=False)


def _settings_arg(value: str) -> dict[str, Any]:
    """JSON text, or @file with JSON (keeps credentials out of the shell history)."""
    data = _load_json(Path(value[1:])) if value.startswith("@") else None
    if data is None:
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise fail(f"not valid JSON: {exc}", "--settings") from None
    if not isinstance(data, dict):
        raise fail("must be a JSON object", "--settings")
    return data


@provider_app.command("add")
def provider_add(
    shop: Annotated[str, typer.Option(help="shop slug")],
    name: Annotated[str, typer.Option(help="the account's name in the shop")],
    kind: Annotated[str, typer.Option(help="http, kannel, smsapi, serwersms, twilio, smtp")],
    settings: Annotated[str, typer.Option(help="JSON object, or @file.json")] = "{}",
    channel: Annotated[str | None, typer.Option(help="sms or email (default: the kind's)")] = None,
    position: Annotated[int | None, typer.Option(help="failover order, lowest first")] = None,
    rate: Annotated[str | None, typer.Option(help="messages per second")] = None,
    concurrency: Annotated[int | None, typer.Option(help="requests in flight")] = None,
) -> None:
    """Add a provider account to a shop; prints its callback URL."""
    from orderbell.api.provider_schemas import ProviderIn
    from orderbell.store import providers as provider_store

    svc = _services()
    shop_id = _shop_id(svc, shop)
    try:
        data = ProviderIn.model_validate(
            {
                "name": name,
                "kind": kind,
                "channel": channel,
                "position": position,
                "settings": _settings_arg(settings),
                "rate_per_second": rate,
                "concurrency": concurrency,
            }
        )
    except ValidationError as exc:
        raise _validation(exc) from None
    try:
        with svc.engine.begin() as conn:
            created = provider_store.create(
                conn, shop_id, data, svc.clock.now(), svc.settings.public_url
            )
    except OrderbellError as exc:
        raise fail(exc.message, exc.field) from None
    out.print(f"provider {created['name']} (#{created['id']}) added")
    out.print(f"callback URL: {created['callback_url']}", highlight=False)


@provider_app.command("list")
def provider_list(shop: Annotated[str, typer.Option(help="shop slug")]) -> None:
    """A shop's provider accounts by channel and failover order (secrets never shown)."""
    from rich.table import Table

    from orderbell.store import providers as provider_store

    svc = _services()
    shop_id = _shop_id(svc, shop)
    with svc.engine.connect() as conn:
        items = provider_store.list_all(conn, shop_id, svc.settings.public_url)
    table = Table("name", "kind", "channel", "position", "active", "secrets set", "callback URL")
    for p in items:
        table.add_row(
            p["name"],
            p["kind"],
            p["channel"],
            str(p["position"]),
            "yes" if p["active"] else "no",
            ", ".join(p["secrets_set"]) or "-",
            p["callback_url"],
        )
    out.print(table)


@provider_app.command("remove")
def provider_remove(
    shop: Annotated[str, typer.Option(help="shop slug")],
    name: Annotated[str, typer.Option(help="the account's name")],
) -> None:
    """Remove a provider account from a shop."""
    from orderbell.store import providers as provider_store

    svc = _services()
    shop_id = _shop_id(svc, shop)
    try:
        with svc.engine.begin() as conn:
            provider_store.remove(conn, shop_id, provider_store.by_name(conn, shop_id, name))
    except OrderbellError as exc:
        raise fail(exc.message, exc.field) from None
    out.print(f"provider {name} removed")


def main() -> None:
    """Entry point."""
    try:
        app()
    except OrderbellError as exc:
        err.print(f"error: {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    main()
