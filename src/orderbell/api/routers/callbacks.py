"""Provider callbacks: delivery receipts and inbound messages, at /v1/callbacks/{token}.

No API key: the account's secret token in the URL identifies and authenticates the caller
(the gateway may verify a signature on top). Unknown token -> 404; a callback the gateway
rejects -> its 4xx and nothing changes; otherwise 200 — also for a receipt that matches no
message of the shop, so the provider stops retrying (it is stored, unmatched).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from orderbell.api.errors import error_body
from orderbell.channels import registry
from orderbell.channels.base import Callback, CallbackRejected, Inbound, Receipt
from orderbell.compose import Services
from orderbell.engine import callbacks as callback_engine
from orderbell.store import providers as provider_store
from orderbell.store.providers import Account

router = APIRouter(prefix="/v1", tags=["callbacks"])
log = structlog.get_logger("orderbell.callbacks")
_FORM = "application/x-www-form-urlencoded"


def _gateway(request: Request, svc: Services, account: Account) -> Any:
    """The account's gateway, built once per account version and kept on the app."""
    cache: dict[int, tuple[Any, Any]] = request.app.state.__dict__.setdefault(
        "callback_gateways", {}
    )
    cached = cache.get(account.id)
    if cached is not None and cached[0] == account.updated_at:
        return cached[1]
    gateway = provider_store.build_gateway(account, svc.settings.public_url)
    cache[account.id] = (account.updated_at, gateway)
    return gateway


@router.api_route("/callbacks/{token}", methods=["GET", "POST"], include_in_schema=True)
async def callback(token: str, request: Request) -> Response:
    """A provider's delivery receipt or inbound message for one provider account."""
    svc: Services = request.app.state.services

    def lookup() -> Account | None:
        with svc.engine.connect() as conn:
            return provider_store.by_token(conn, token)

    account = await run_in_threadpool(lookup)
    if account is None:
        return JSONResponse(error_body("not_found", "unknown callback", None), status_code=404)
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form: dict[str, str] = {}
    if content_type == _FORM and body:
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
    received = Callback(
        method=request.method,
        url=str(request.url),
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        form=form,
    )
    try:
        gateway = _gateway(request, svc, account)
    except Exception as exc:
        log.error("callback_gateway_failed", provider_id=account.id, error=type(exc).__name__)
        return JSONResponse(
            error_body("unavailable", "this provider account cannot take callbacks", None),
            status_code=503,
        )
    parse = getattr(gateway, "parse_callback", None)
    if parse is None:
        return JSONResponse(
            error_body("not_found", "this provider takes no callbacks", None), status_code=404
        )
    try:
        items: list[Receipt | Inbound] = parse(received)
    except CallbackRejected as exc:
        log.info("callback_rejected", provider_id=account.id, status=exc.status_code)
        return JSONResponse(
            error_body("callback_rejected", exc.reason, None), status_code=exc.status_code
        )

    def apply() -> callback_engine.Applied:
        with svc.engine.begin() as conn:
            return callback_engine.apply(conn, account, items, svc.clock.now())

    applied = await run_in_threadpool(apply)
    log.info("callback_applied", provider_id=account.id, **applied.as_json())
    if applied.waiting_ids:
        # Our read saw the message still `sending`; if its send was recorded before we
        # committed, the dispatcher's reconcile_sent could not see these receipts yet.
        def settle() -> int:
            with svc.engine.begin() as conn:
                return callback_engine.reconcile_receipts(
                    conn, applied.waiting_ids, svc.clock.now()
                )

        try:
            await run_in_threadpool(settle)
        except Exception as exc:  # stored already: a worker's sweep applies them later
            log.warning("callback_second_look_failed", error=type(exc).__name__)
    kind = registry.load(account.kind)
    if kind.callback_response is not None:  # a provider expecting its own answer ("OK", TwiML)
        return Response(content=kind.callback_response, media_type=kind.callback_media_type)
    return JSONResponse({"ok": True, **applied.as_json()})
