"""The `orderbell` command as a user runs it: a real process on a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.net import free_port

BIN = Path(sys.executable).parent / "orderbell"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order-created.json"


def user_env(folder: Path) -> dict[str, str]:
    """The environment of a user with their own database and outbox file."""
    return {
        **os.environ,
        "ORDERBELL_DATABASE_URL": f"sqlite:///{folder / 'orderbell.db'}",
        "ORDERBELL_OUTBOX_FILE": str(folder / "outbox.jsonl"),
        "COLUMNS": "200",
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh user: empty database."""
    return user_env(tmp_path)


def orderbell(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """One user who ran `orderbell demo`: their environment and the replay's output."""
    env = user_env(tmp_path_factory.mktemp("demo"))
    done = orderbell(env, "demo")
    assert done.returncode == 0, done.stderr
    return env, done.stdout


@pytest.fixture
def demo_shop(demo: tuple[dict[str, str], str]) -> str:
    """The replay's output."""
    return demo[1]


@pytest.fixture
def demo_env(demo: tuple[dict[str, str], str]) -> dict[str, str]:
    """The environment of the user who ran the demo."""
    return demo[0]


def test_demo_replays_a_day_and_prints_the_message_log(demo_shop: str) -> None:
    assert "sent" in demo_shop
    # the log shows real rendered texts, e.g. the StockMount "ships today/tomorrow" variants
    assert re.search(r"shipped (today|tomorrow)", demo_shop), demo_shop


def test_simulate_json_lists_planned_messages(demo_env: dict[str, str]) -> None:
    env = demo_env
    before = orderbell(env, "simulate", "--shop", "demo", "--event", "order.created",
                       "--at", "2026-11-20T14:59:59+03:00", "--json")  # fmt: skip
    after = orderbell(env, "simulate", "--shop", "demo", "--event", "order.created",
                      "--at", "2026-11-20T15:00:00+03:00", "--json")  # fmt: skip
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    first, second = json.loads(before.stdout), json.loads(after.stdout)
    for planned in (first, second):
        assert planned, "an order.created must plan at least one message in the demo shop"
        for item in planned:
            assert {"rule", "channel", "send_at", "text"} <= item.keys()
    sms_before = {m["rule"]: m["text"] for m in first if m["channel"] == "sms"}
    sms_after = {m["rule"]: m["text"] for m in second if m["channel"] == "sms"}
    assert sms_before.keys() != sms_after.keys()  # 14:59:59 and 15:00:00 pick other variants


def test_simulate_stores_nothing(demo_env: dict[str, str], tmp_path: Path) -> None:
    """…and its table says what each message costs and how it would be paid for."""
    env = demo_env
    db = env["ORDERBELL_DATABASE_URL"].removeprefix("sqlite:///")
    import sqlite3

    def entries() -> int:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from ledger").fetchone()[0])

    before = entries()
    order = tmp_path / "order.json"
    order.write_text(json.dumps({"code": "SIM-1", "customer": {"id": "s1", "name": "Ayşe",
                                                               "phone": "+905321234567"}}))  # fmt: skip
    shown = orderbell(env, "simulate", "--shop", "demo", "--event", "order.created",
                      "--at", "2026-11-20T10:00:00+03:00", "--order", str(order))  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert re.search(
        r"costs [0-9.]+ credits \([0-9]+ × [0-9.]+ to TR\), from prepaid credit", shown.stdout
    ), shown.stdout
    with sqlite3.connect(db) as conn:
        codes = [r[0] for r in conn.execute("select code from orders")]
    assert "SIM-1" not in codes
    assert entries() == before


def test_event_send_ingests_a_file_and_replay_is_a_no_op(
    demo_env: dict[str, str],
) -> None:
    env = demo_env
    first = orderbell(env, "event", "send", str(EXAMPLE), "--shop", "demo")
    assert first.returncode == 0, first.stderr
    again = orderbell(env, "event", "send", str(EXAMPLE), "--shop", "demo")
    assert again.returncode == 0, again.stderr
    one, two = json.loads(first.stdout)[0], json.loads(again.stdout)[0]
    assert one["event_id"] == two["event_id"]
    assert two["duplicate"] is True


def test_event_send_async_accepts_and_the_worker_plans(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    env = demo_env
    body = json.loads(EXAMPLE.read_text())
    body = {**body, "id": "cli-async-1", "order": {**body["order"], "code": "CLI-ASYNC-1"}}
    batch = [{**body, "id": "cli-async-2", "order": {**body["order"], "code": "CLI-ASYNC-2"}}]
    (tmp_path / "one.json").write_text(json.dumps(body))
    (tmp_path / "batch.json").write_text(json.dumps(batch))
    one = orderbell(env, "event", "send", str(tmp_path / "one.json"), "--shop", "demo", "--async")
    assert one.returncode == 0, one.stderr
    many = orderbell(env, "event", "send", str(tmp_path / "batch.json"), "--async")
    assert many.returncode == 0, many.stderr
    accepted = [*json.loads(one.stdout), *json.loads(many.stdout)]
    assert [r["status"] for r in accepted] == ["accepted", "accepted"]
    db = env["ORDERBELL_DATABASE_URL"].removeprefix("sqlite:///")
    import sqlite3

    def waiting() -> int:
        with sqlite3.connect(db) as conn:
            ids = ",".join(str(r["event_id"]) for r in accepted)
            return int(
                conn.execute(
                    f"select count(*) from events where id in ({ids}) and planned_at is null"
                ).fetchone()[0]
            )

    assert waiting() == 2  # stored, not planned
    again = orderbell(env, "event", "send", str(tmp_path / "one.json"), "--async")
    assert json.loads(again.stdout)[0]["duplicate"] is True
    done = orderbell(env, "worker", "--drain")
    assert done.returncode == 0, done.stderr
    assert waiting() == 0


@pytest.mark.parametrize(
    ("args", "field", "reason"),
    [
        (["simulate", "--shop", "nope", "--event", "order.created", "--at",
          "2026-11-20T10:00:00Z"], "--shop", "no shop"),
        (["simulate", "--shop", "demo", "--event", "order.exploded", "--at",
          "2026-11-20T10:00:00Z"], "type", "event type"),
        (["simulate", "--shop", "demo", "--event", "order.created", "--at", "yesterday"],
         "occurred_at", ""),
        (["event", "send", "/nonexistent.json", "--shop", "demo"], "FILE", "no such file"),
        (["shop", "create", "--name", "X", "--slug", "x-shop", "--timezone", "Mars/Olympus"],
         "timezone", "Mars/Olympus"),
        (["shop", "create", "--name", "X", "--slug", "Bad Slug!"], "slug", ""),
        (["demo", "--day", "someday"], "--day", "YYYY-MM-DD"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_exits_non_zero(
    demo_env: dict[str, str], args: list[str], field: str, reason: str
) -> None:
    done = orderbell(demo_env, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"error in {field}" in done.stderr, done.stderr
    assert reason.lower() in done.stderr.lower()


def test_shop_and_api_key_create(env: dict[str, str]) -> None:
    created = orderbell(env, "shop", "create", "--name", "My Shop", "--slug", "my-shop",
                        "--timezone", "Europe/Warsaw", "--country", "PL")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "my-shop" in created.stdout
    key = orderbell(env, "apikey", "create", "--shop", "my-shop")
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip().startswith("ob_")
    twice = orderbell(env, "shop", "create", "--name", "Again", "--slug", "my-shop")
    assert twice.returncode != 0 and "slug" in twice.stderr


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`orderbell serve --demo` as `make run` starts it; yields (base URL, API key)."""
    port = free_port()
    run_env = {**env, "ORDERBELL_PORT": str(port), "ORDERBELL_WORKER_POLL_SECONDS": "0.1"}
    assert orderbell(run_env, "migrate").returncode == 0
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [str(BIN), "serve", "--demo"], env=run_env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            log.seek(0)
            pytest.fail(f"serve did not become ready: {log.read()}")
        log.seek(0)
        match = re.search(r"(ob_[A-Za-z0-9_-]+)", log.read())
        assert match, "serve --demo must print the demo shop's API key"
        yield base, match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_make_run_tour_event_is_sent_by_the_embedded_worker(
    served: tuple[str, str], env: dict[str, str]
) -> None:
    base, key = served
    headers = {"Authorization": f"Bearer {key}"}
    body: dict[str, Any] = {
        "id": "evt-1",
        "type": "order.created",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order": {"code": "1001", "total": "249.90", "currency": "TRY", "payment_method": "card"},
        "customer": {"id": "c1", "name": "Ayşe Yılmaz", "phone": "0532 123 45 67",
                     "email": "ayse@example.com"},
    }  # fmt: skip
    posted = httpx.post(f"{base}/v1/events", json=body, headers=headers, timeout=10)
    assert posted.status_code == 201, posted.text
    deadline = time.monotonic() + 20
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = httpx.get(f"{base}/v1/messages", headers=headers, timeout=5).json()["items"]
        if any(m["status"] == "sent" for m in items):
            break
        time.sleep(0.2)
    assert any(m["status"] == "sent" for m in items), items
    sent = next(m for m in items if m["status"] == "sent")
    detail = httpx.get(f"{base}/v1/messages/{sent['id']}", headers=headers, timeout=5).json()
    assert [a["status"] for a in detail["audit"]][-1] == "sent"
    outbox = Path(env["ORDERBELL_OUTBOX_FILE"]).read_text().splitlines()
    assert any(str(sent["id"]) in line for line in outbox)
    again = httpx.post(f"{base}/v1/events", json=body, headers=headers, timeout=10)
    assert again.status_code == 200 and again.json()["event_id"] == posted.json()["event_id"]


def test_credits_settings_prices_packages_and_ledger_from_the_command_line(
    demo_env: dict[str, str],
) -> None:
    """What the API's credit routes do, the CLI does: the same checks, the same JSON."""

    def ok(*args: str) -> Any:
        done = orderbell(demo_env, "credits", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def refused(option: str, reason: str, *args: str) -> None:
        done = orderbell(demo_env, "credits", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"error in {option}" in done.stderr and reason in done.stderr, done.stderr

    shown = ok("settings", "--shop", "demo", "--monthly-cap", "100", "--low-balance-threshold",
               "5", "--low-balance-threshold", "2", "--refund-failed-after-submission",
               "--billing-day", "15", "--notify-email", "billing@demo.example")  # fmt: skip
    assert (shown["monthly_cap"], shown["low_balance_thresholds"]) == ("100.0000", ["2", "5"])
    assert (shown["charge_failed_after_submission"], shown["billing_day"]) == (False, 15)
    assert shown["notify_email"] == "billing@demo.example"
    cleared = ok("settings", "--shop", "demo", "--clear-monthly-cap",
                 "--clear-low-balance-thresholds", "--clear-notify-email")  # fmt: skip
    assert (cleared["monthly_cap"], cleared["low_balance_thresholds"]) == (None, [])
    assert cleared["notify_email"] is None
    refused("--notify-email", "e-mail", "settings", "--shop", "demo", "--notify-email", "nope")
    refused("--monthly-cap", "pattern", "settings", "--shop", "demo", "--monthly-cap", "1e5")
    refused("--billing-day", "28", "settings", "--shop", "demo", "--billing-day", "40")
    refused("--low-balance-threshold", "greater than zero", "settings", "--shop", "demo",
            "--low-balance-threshold", "0")  # fmt: skip
    refused("--plan", "no price plan", "settings", "--shop", "demo", "--plan", "nope")

    def line(prices: dict[str, Any], channel: str, country: str) -> tuple[str, str]:
        [found] = [p for p in prices["items"] if (p["channel"], p["country"]) == (channel, country)]
        return found["unit_price"], found["source"]

    own = ok("price", "--shop", "demo", "--channel", "sms", "--country", "pl",
             "--unit-price", "0.04")  # fmt: skip
    ok("price", "--shop", "demo", "--channel", "email", "--country", "*", "--unit-price", "0.03")
    listed = ok("prices", "--shop", "demo")
    assert line(own, "sms", "PL") == line(listed, "sms", "PL") == ("0.0400", "shop")
    assert line(listed, "email", "*") == ("0.0300", "shop")  # the other line is kept
    removed = ok("price", "--shop", "demo", "--channel", "sms", "--country", "PL", "--remove")
    assert line(removed, "sms", "PL")[1] == "default"
    refused("--country", "unknown country", "price", "--shop", "demo", "--channel", "sms",
            "--country", "QQ", "--unit-price", "0.04")  # fmt: skip
    refused("--unit-price", "decimal places", "price", "--shop", "demo", "--channel", "sms",
            "--country", "PL", "--unit-price", "0.00001")  # fmt: skip
    refused("--country", "no destination country", "price", "--shop", "demo", "--channel",
            "email", "--country", "TR", "--unit-price", "0.04")  # fmt: skip

    added = ok("package", "--shop", "demo", "--name", "1000 SMS", "--channel", "sms",
               "--allowance", "1000", "--carry-over", "cap", "--carry-cap", "500",
               "--price", "31")  # fmt: skip
    assert [a["remaining"] for a in added["allowances"]] == [1000]
    listed = ok("packages", "--shop", "demo")["items"]
    assert [(p["name"], p["carry_over"], p["carry_cap"], p["price"]) for p in listed] == [
        ("1000 SMS", "cap", 500, "31.0000")
    ]
    refused("--carry-cap", "carry_cap", "package", "--shop", "demo", "--name", "x",
            "--channel", "sms", "--allowance", "5", "--carry-over", "cap")  # fmt: skip
    refused("--allowance", "greater than or equal to 1", "package", "--shop", "demo",
            "--name", "x", "--channel", "sms", "--allowance", "0")  # fmt: skip

    page = ok("ledger", "--shop", "demo", "--limit", "1")
    assert len(page["items"]) == 1 and page["next_before"] == page["items"][0]["id"]
    rest = ok("ledger", "--shop", "demo", "--before", str(page["next_before"]))
    assert page["items"][0]["id"] not in [e["id"] for e in rest["items"]]
    allowances = ok("ledger", "--shop", "demo", "--kind", "allowance")["items"]
    assert [e["units"] for e in allowances] == [1000]
    refused("--kind", "must be one of", "ledger", "--shop", "demo", "--kind", "nonsense")
    refused("--since", "ISO 8601", "ledger", "--shop", "demo", "--since", "yesterday")
    refused("--limit", "between 1 and 500", "ledger", "--shop", "demo", "--limit", "0")
    refused("--before", "must be an id", "ledger", "--shop", "demo", "--before", "9" * 20)


def test_credits_top_up_show_and_statement(demo_env: dict[str, str]) -> None:
    topped = orderbell(demo_env, "credits", "topup", "--shop", "demo", "--amount", "12.5",
                       "--reference", "pay_42")  # fmt: skip
    assert topped.returncode == 0, topped.stderr
    assert json.loads(topped.stdout)["amount"] == "12.5000"
    shown = json.loads(orderbell(demo_env, "credits", "show", "--shop", "demo").stdout)
    assert shown["mode"] == "prepaid" and float(shown["available"]) > 12.5
    again = orderbell(demo_env, "credits", "topup", "--shop", "demo", "--amount", "12.5",
                      "--reference", "pay_42")  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["duplicate"] is True
    assert json.loads(again.stdout)["available"] == shown["available"]  # not credited twice
    other = orderbell(demo_env, "credits", "topup", "--shop", "demo", "--amount", "3",
                      "--reference", "pay_42")  # fmt: skip
    assert other.returncode != 0 and "error in --reference" in other.stderr, other.stderr
    long = orderbell(demo_env, "credits", "topup", "--shop", "demo", "--amount", "3",
                     "--reference", "x" * 201)  # fmt: skip
    assert long.returncode != 0 and "error in --reference" in long.stderr, long.stderr
    assert "Traceback" not in long.stderr
    garbled = orderbell(demo_env, "credits", "topup", "--shop", "demo", "--amount", "3",
                        "--reference", "pay\udcff")  # a byte that is not UTF-8  # fmt: skip
    assert garbled.returncode != 0 and "error in --reference" in garbled.stderr, garbled.stderr
    assert "Traceback" not in garbled.stderr
    statement = orderbell(demo_env, "credits", "statement", "--shop", "demo",
                          "--month", "2026-11", "--csv")  # fmt: skip
    assert statement.returncode == 0, statement.stderr
    assert statement.stdout.splitlines()[0].startswith("month,channel,country")
    total, topups, adjustments = statement.stdout.splitlines()[-3:]
    assert total.startswith("2026-11,total,"), statement.stdout
    assert topups.startswith("2026-11,topups,") and adjustments.startswith("2026-11,adjustments,")
    for amount in ("0", "-1", "abc", "1.00001", "1e5", "1_000", "\u0661\u0660"):
        bad = orderbell(demo_env, "credits", "topup", "--shop", "demo", "--amount", amount)
        assert bad.returncode != 0 and "error in --amount" in bad.stderr, bad.stderr
    given = orderbell(demo_env, "credits", "adjust", "--shop", "demo", "--amount", "1.5",
                      "--note", "goodwill: late parcel")  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout)["amount"] == "1.5000"
    assert json.loads(given.stdout)["note"] == "goodwill: late parcel"
    for amount, note, named in (("-1000000", "too much", "--amount"), ("0", "zero", "--amount"),
                                ("-+1", "sign", "--amount"), ("- 1", "blank", "--amount"),
                                ("1", " ", "--note"), ("1", "x" * 301, "--note"),
                                ("1", "bad\udcff", "--note")):  # (bytes that are not UTF-8)  # fmt: skip
        bad = orderbell(demo_env, "credits", "adjust", "--shop", "demo", "--amount", amount,
                        "--note", note)  # fmt: skip
        assert bad.returncode != 0 and f"error in {named}" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    for month in ("11/2026", "9999-12", "0001-01"):  # the last two: a month without an end
        bad = orderbell(demo_env, "credits", "statement", "--shop", "demo", "--month", month)
        assert bad.returncode != 0 and "error in --month" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr


def test_user_create_prints_a_password_once_and_refuses_duplicates(
    demo_env: dict[str, str],
) -> None:
    made = orderbell(demo_env, "user", "create", "--shop", "demo", "--email", "Owner@Shop.example")
    assert made.returncode == 0, made.stderr
    assert "owner@shop.example" in made.stdout
    password = re.search(r"password:\s+(\S+)", made.stdout)
    assert password and len(password.group(1)) >= 12
    again = orderbell(demo_env, "user", "create", "--shop", "demo", "--email", "owner@shop.example")
    assert again.returncode != 0 and "error in --email" in again.stderr
    bad = orderbell(demo_env, "user", "create", "--shop", "demo", "--email", "not an address")
    assert bad.returncode != 0 and "error in --email" in bad.stderr


def test_provider_add_list_remove_never_prints_secrets(env: dict[str, str], tmp_path: Path) -> None:
    created = orderbell(env, "shop", "create", "--name", "P", "--slug", "p-shop", "--country", "PL")
    assert created.returncode == 0, created.stderr
    settings = tmp_path / "gw.json"
    settings.write_text(
        json.dumps(
            {"url": "https://gw.example/sms", "auth_header": "X-Key", "auth_value": "s3cr3t-v"}
        )
    )
    add = orderbell(env, "provider", "add", "--shop", "p-shop", "--name", "gw", "--kind", "http",
                    "--settings", f"@{settings}", "--rate", "10")  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert "/v1/callbacks/" in add.stdout
    listed = orderbell(env, "provider", "list", "--shop", "p-shop")
    assert listed.returncode == 0 and "gw" in listed.stdout and "auth_value" in listed.stdout
    assert "s3cr3t-v" not in add.stdout + listed.stdout
    bad = orderbell(env, "provider", "add", "--shop", "p-shop", "--name", "x", "--kind", "nope")
    assert bad.returncode != 0 and "kind" in bad.stderr
    removed = orderbell(env, "provider", "remove", "--shop", "p-shop", "--name", "gw")
    assert removed.returncode == 0, removed.stderr
    again = orderbell(env, "provider", "remove", "--shop", "p-shop", "--name", "gw")
    assert again.returncode != 0 and "name" in again.stderr
