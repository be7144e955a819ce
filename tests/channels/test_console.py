"""The console provider and the masking helpers."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from orderbell.channels.base import Outcome, OutgoingMessage
from orderbell.channels.console import ConsoleProvider
from orderbell.channels.masking import mask_email, mask_phone, mask_recipient
from orderbell.domain.model import Channel


def sms(id_: int = 1, to: str = "+48123456700", **fields: Any) -> OutgoingMessage:
    base: dict[str, Any] = {"text": "Your order #1001 has shipped.", "sender": "DemoShop"}
    base.update(fields)
    return OutgoingMessage(id=id_, shop_id=3, channel=Channel.SMS, to=to, **base)


def mail(id_: int = 2, **fields: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "to": "john@example.com",
        "subject": "Order shipped",
        "text": "Hi John",
        "html": "<p>Hi John</p>",
    }
    base.update(fields)
    return OutgoingMessage(id=id_, shop_id=3, channel=Channel.EMAIL, **base)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_writes_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "var" / "outbox.jsonl"  # the folder does not exist yet
    provider = ConsoleProvider(Channel.SMS, path=path)
    results = asyncio.run(provider.send([sms(1), mail(2)]))

    assert [(r.message_id, r.outcome, r.provider_message_id) for r in results] == [
        (1, Outcome.ACCEPTED, "console-1"),
        (2, Outcome.ACCEPTED, "console-2"),
    ]
    first, second = read_lines(path)
    assert first == {
        "id": 1,
        "shop_id": 3,
        "channel": "sms",
        "to": "+48123456700",
        "sender": "DemoShop",
        "subject": None,
        "text": "Your order #1001 has shipped.",
        "provider_message_id": "console-1",
    }
    assert second["channel"] == "email"
    assert second["html"] == "<p>Hi John</p>"
    assert second["subject"] == "Order shipped"


def test_appends_across_calls_and_providers(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    sms_provider = ConsoleProvider(Channel.SMS, path=path)
    mail_provider = ConsoleProvider(Channel.EMAIL, path=path)

    async def scenario() -> None:
        await sms_provider.send([sms(1)])
        await mail_provider.send([mail(2)])
        await sms_provider.send([sms(3, text="Zażółć gęślą jaźń 💐\nline two")])
        await sms_provider.close()

    asyncio.run(scenario())
    lines = read_lines(path)
    assert [line["id"] for line in lines] == [1, 2, 3]
    assert lines[2]["text"] == "Zażółć gęślą jaźń 💐\nline two"


def test_empty_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    assert asyncio.run(ConsoleProvider(Channel.SMS, path=path).send([])) == []
    assert not path.exists()


@pytest.mark.parametrize(
    ("mask", "expected", "hidden"),
    [
        pytest.param(False, ["+48123456700", "john@example.com"], [], id="plain"),
        pytest.param(
            True, ["+48*******00", "j***@example.com"], ["+48123456700", "john@"], id="masked"
        ),
    ],
)
def test_human_lines_on_the_stream(mask: bool, expected: list[str], hidden: list[str]) -> None:
    stream = io.StringIO()
    provider = ConsoleProvider(Channel.SMS, stream=stream, mask_recipients=mask)
    asyncio.run(provider.send([sms(1), mail(2)]))

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line, recipient in zip(lines, expected, strict=True):
        assert recipient in line
    assert "#1" in lines[0] and "DemoShop" in lines[0] and "shipped" in lines[0]
    assert "Order shipped" in lines[1]
    for secret in hidden:
        assert secret not in stream.getvalue()


def test_long_text_is_shortened_to_one_line() -> None:
    stream = io.StringIO()
    asyncio.run(ConsoleProvider(Channel.SMS, stream=stream).send([sms(text="word\n" * 100)]))
    [line] = stream.getvalue().splitlines()
    assert len(line) < 140
    assert line.endswith("…")


def test_file_and_stream_together(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = tmp_path / "outbox.jsonl"
    asyncio.run(ConsoleProvider(Channel.SMS, stream=stream, path=path).send([sms()]))
    assert len(read_lines(path)) == 1
    assert len(stream.getvalue().splitlines()) == 1


def test_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(ConsoleProvider(Channel.SMS).send([sms()]))
    assert "+48123456700" in capsys.readouterr().out


def test_unwritable_outbox_is_retryable(tmp_path: Path) -> None:
    provider = ConsoleProvider(Channel.SMS, path=tmp_path)  # a directory: cannot be opened
    [result] = asyncio.run(provider.send([sms()]))
    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "console_io")


def test_a_batch_of_100_is_one_open_and_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What keeps the console provider cheap per message: a batch is appended with one open
    and one write, however many messages it holds (its speed is measured by `make bench`'s
    pipeline figure, not asserted here)."""
    outbox = tmp_path / "outbox.jsonl"
    provider = ConsoleProvider(Channel.SMS, path=outbox)
    batch = [
        sms(i, text="Your order #1001 has shipped with DHL: https://t.example/abc")
        for i in range(100)
    ]
    asyncio.run(provider.send(batch))  # the first send also creates the file
    writes: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        fh = real_open(self, *args, **kwargs)
        if self == outbox:
            real_write = fh.write
            fh.write = lambda text: writes.append(len(text)) or real_write(text)  # type: ignore[method-assign]
        return fh

    monkeypatch.setattr(Path, "open", counting_open)
    for _ in range(3):
        asyncio.run(provider.send(batch))
    assert len(writes) == 3  # one write per batch of 100
    assert len(read_lines(outbox)) == 400


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        pytest.param("+48123456700", "+48*******00", id="pl"),
        pytest.param("+12025550123", "+1********23", id="us"),
        pytest.param("+905321234567", "+90********67", id="tr"),
        pytest.param("+353851234567", "+353*******67", id="ie-3-digit-code"),
        pytest.param("+48 123 456 700", "+48*******00", id="spaces"),
        pytest.param("0123456789", "********89", id="national"),
        pytest.param("+4812", "+48***", id="too-short"),
        pytest.param("", "", id="empty"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        pytest.param("john@example.com", "j***@example.com", id="simple"),
        pytest.param("j@example.com", "j***@example.com", id="one-letter"),
        pytest.param("ayşe.yılmaz@örnek.com.tr", "a***@örnek.com.tr", id="unicode"),
        pytest.param("no-at-sign", "***", id="invalid"),
        pytest.param("@example.com", "***", id="no-local-part"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    ("recipient", "masked"),
    [
        pytest.param("+48123456700", "+48*******00", id="phone"),
        pytest.param("john@example.com", "j***@example.com", id="email"),
    ],
)
def test_mask_recipient(recipient: str, masked: str) -> None:
    assert mask_recipient(recipient) == masked
