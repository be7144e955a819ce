"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives and answers
what a test tells it to; shared by the SMTP provider tests and the end-to-end e-mail tests."""

from __future__ import annotations

import asyncio
import email
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from orderbell.channels.smtp import SmtpSettings
from tests.net import free_port


def local_settings(port: int, **overrides: Any) -> SmtpSettings:
    fields: dict[str, Any] = {"from_address": "orders@shop.example", "from_name": "Demo Shop"}
    fields["timeout"] = 5.0
    fields.update(overrides)
    return SmtpSettings(host="127.0.0.1", port=port, **fields)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def parsed(self) -> EmailMessage:
        msg = email.message_from_bytes(self.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    """An aiosmtpd handler that records everything and answers what it is told."""

    received: list[Received] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)  #: every RCPT address, accepted or not
    peers: set[tuple[str, int]] = field(default_factory=set)  #: one per TCP connection
    servers: list[SMTP] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  #: local part → reply
    data_reply: str | None = None
    data_delay: float = 0.0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, host: str, responses: list[str]
    ) -> list[str]:
        session.host_name = host
        assert isinstance(session.peer, tuple)
        self.peers.add(session.peer)
        self.servers.append(server)
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpts.append(address)
        reply = self.rcpt_replies.get(address.split("@")[0])
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return self.data_reply or "250 Message accepted for delivery"


@dataclass
class Server:
    controller: Controller
    handler: Recorder
    port: int

    def settings(self, **overrides: Any) -> SmtpSettings:
        return local_settings(self.port, **overrides)

    def drop_connections(self) -> None:
        """Close every client connection from the server side."""
        for srv in self.handler.servers:
            if srv.transport is not None:
                self.controller.loop.call_soon_threadsafe(srv.transport.close)


def start_server(**smtp_kwargs: Any) -> Server:
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_kwargs)
    controller.start()
    return Server(controller, handler, port)
