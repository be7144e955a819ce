"""One-click unsubscribe links for marketing e-mail (RFC 8058).

A link is ``{public_url}/u/{token}``; the token names the shop, the customer and the channel
and is signed with HMAC-SHA256 under the server's secret key, so it needs no stored state and
cannot be forged or pointed at another customer. Tokens do not expire: an unsubscribe link
in a months-old e-mail must still work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy import Connection, case, update

from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput, NotFound
from orderbell.store.schema import customers

_CHANNEL_CODE = {Channel.EMAIL: "e"}
_CHANNEL_OF = {v: k for k, v in _CHANNEL_CODE.items()}
_TOKEN = re.compile(r"^([1-9][0-9]{0,17})\.([1-9][0-9]{0,17})\.([a-z])\.([A-Za-z0-9_-]{43})$")
ONE_CLICK = "List-Unsubscribe=One-Click"  #: the POST body RFC 8058 prescribes


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Whom a valid token unsubscribes."""

    shop_id: int
    customer_id: int
    channel: Channel


def secret_key(configured: str | None, path: Path) -> bytes:
    """The configured key, else the one generated into `path` (created 0600 on first use)."""
    if configured:
        return configured.encode()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


class Links:
    """Makes and checks unsubscribe tokens; the key is read on first use."""

    def __init__(self, key: Callable[[], bytes], public_url: str) -> None:
        self._key_source = key
        self.public_url = public_url.rstrip("/")

    @cached_property
    def _key(self) -> bytes:
        key = self._key_source()
        if len(key) < 16:
            raise ValueError("ORDERBELL_SECRET_KEY must be at least 16 characters")
        return key

    def _sign(self, shop_id: int, customer_id: int, code: str) -> str:
        text = f"orderbell-unsubscribe:v1:{shop_id}:{customer_id}:{code}".encode()
        digest = hmac.new(self._key, text, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def token(self, shop_id: int, customer_id: int, channel: Channel = Channel.EMAIL) -> str:
        """The signed token for this customer and channel."""
        code = _CHANNEL_CODE[channel]
        return f"{shop_id}.{customer_id}.{code}.{self._sign(shop_id, customer_id, code)}"

    def url(self, shop_id: int, customer_id: int, channel: Channel = Channel.EMAIL) -> str:
        """The link for the List-Unsubscribe header."""
        return f"{self.public_url}/u/{self.token(shop_id, customer_id, channel)}"

    def headers(self, shop_id: int, customer_id: int) -> dict[str, str]:
        """The RFC 8058 headers of a marketing e-mail."""
        return {
            "List-Unsubscribe": f"<{self.url(shop_id, customer_id)}>",
            "List-Unsubscribe-Post": ONE_CLICK,
        }

    def verify(self, token: str) -> Subscriber:
        """Whom the token names; ``InvalidInput(field="token")`` if it is malformed or forged."""
        match = _TOKEN.match(token)
        if not match or match.group(3) not in _CHANNEL_OF:
            raise InvalidInput("this unsubscribe link is not valid", field="token")
        shop_id, customer_id, code = int(match.group(1)), int(match.group(2)), match.group(3)
        if not hmac.compare_digest(match.group(4), self._sign(shop_id, customer_id, code)):
            raise InvalidInput("this unsubscribe link is not valid", field="token")
        return Subscriber(shop_id, customer_id, _CHANNEL_OF[code])


def opt_out(conn: Connection, who: Subscriber, now: datetime) -> None:
    """Opt the customer out of marketing on the token's channel (idempotent; "all" stays)."""
    changed = conn.execute(
        update(customers)
        .where(customers.c.id == who.customer_id, customers.c.shop_id == who.shop_id)
        .values(
            # "marketing", unless the customer had opted out of all e-mail
            email_opt_out=case((customers.c.email_opt_out == "all", "all"), else_="marketing"),
            email_marketing=False,
            updated_at=now,
        )
    )
    if changed.rowcount == 0:
        raise NotFound("this customer no longer exists", field="token")
