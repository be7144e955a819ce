"""One-click unsubscribe (RFC 8058) at the URL of marketing e-mails' List-Unsubscribe header.

``POST /u/{token}`` with the body ``List-Unsubscribe=One-Click`` (form-urlencoded or
multipart/form-data, as mailbox providers send it) opts the customer out of marketing
e-mail and answers 200 — no login, no cookie, no redirect. ``GET /u/{token}`` only shows a
page with a button that makes that POST: link scanners that fetch URLs change nothing.
"""

from __future__ import annotations

import email
import email.policy
from html import escape
from typing import Any
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from orderbell.api.deps import ServicesDep
from orderbell.api.errors import error_body
from orderbell.engine import unsubscribe
from orderbell.errors import OrderbellError
from orderbell.store import shops as shop_store

router = APIRouter(tags=["unsubscribe"])
log = structlog.get_logger("orderbell.unsubscribe")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""
_FORM = (
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit">Unsubscribe</button></form>'
)


def _page(title: str, text: str, *, form: bool = False, status: int = 200) -> HTMLResponse:
    body = _PAGE.format(title=escape(title), text=escape(text), form=_FORM if form else "")
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(body, status_code=status, headers=headers)


def _shop_name(svc: Any, shop_id: int) -> str:
    with svc.engine.connect() as conn:
        return str(shop_store.get_row(conn, shop_id).name)


@router.get("/u/{token}", response_class=HTMLResponse)
def confirm_page(svc: ServicesDep, token: str) -> HTMLResponse:
    """A confirmation page with an Unsubscribe button; changes nothing."""
    try:
        who = svc.unsubscribe.verify(token)
        name = _shop_name(svc, who.shop_id)
    except OrderbellError:
        return _page("Link not valid", "This unsubscribe link is not valid.", status=400)
    return _page(
        "Unsubscribe",
        f"Stop receiving marketing e-mail from {name}? Order updates will still arrive.",
        form=True,
    )


def _one_click(content_type: str, body: bytes) -> bool:
    """Does the body carry List-Unsubscribe=One-Click (urlencoded or multipart)?"""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        parsed = email.message_from_bytes(head + body, policy=email.policy.HTTP)
        for part in parsed.walk():
            if part.get_param("name", header="content-disposition") == "List-Unsubscribe":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes) and payload.strip() == b"One-Click":
                    return True
        return False
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=False)
    except UnicodeDecodeError:
        return False
    return "One-Click" in form.get("List-Unsubscribe", [])


@router.post("/u/{token}")
async def one_click(svc: ServicesDep, token: str, request: Request) -> Any:
    """Opt the customer out of marketing e-mail (idempotent)."""
    body = await request.body()
    if not _one_click(request.headers.get("content-type", ""), body):
        return JSONResponse(
            error_body(
                "invalid_input",
                f"the body must be {unsubscribe.ONE_CLICK} (RFC 8058)",
                "List-Unsubscribe",
            ),
            status_code=400,
        )
    try:
        who = svc.unsubscribe.verify(token)
        with svc.engine.begin() as conn:
            unsubscribe.opt_out(conn, who, svc.clock.now())
    except OrderbellError as exc:
        return JSONResponse(exc.as_dict(), status_code=400 if exc.status_code == 422 else 404)
    log.info("customer_unsubscribed", shop_id=who.shop_id, customer_id=who.customer_id)
    if "text/html" in request.headers.get("accept", ""):  # the button of the GET page
        return _page("Unsubscribed", "You will receive no more marketing e-mail from us.")
    return {"unsubscribed": True, "channel": who.channel.value, "scope": "marketing"}
