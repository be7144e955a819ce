"""Error mapping: every failure becomes a JSON body {"error": {code, message, field}}."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from orderbell.errors import OrderbellError

log = structlog.get_logger("orderbell.api")


def error_body(code: str, message: str, field: str | None, **extra: Any) -> dict[str, Any]:
    """The one error shape."""
    return {"error": {"code": code, "message": message, "field": field, **extra}}


def _field(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    # Pydantic adds the union member or validator name to the location; keep the data path.
    parts = [p for p in parts if not p.startswith(("function-", "constrained-", "json-or-python"))]
    return ".".join(parts) or None


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""

    @app.exception_handler(OrderbellError)
    async def _orderbell(_: Request, exc: OrderbellError) -> JSONResponse:
        return JSONResponse(exc.as_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("malformed_json", "the request body is not valid JSON", "body"),
                status_code=400,
            )
        details = [{"field": _field(e.get("loc", ())), "message": _message(e)} for e in errors]
        first = details[0] if details else {"field": None, "message": "invalid input"}
        return JSONResponse(
            error_body(
                "invalid_input",
                f"{first['field'] or 'body'}: {first['message']}",
                first["field"],
                details=details[:20],
            ),
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail), None),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected_error", error=type(exc).__name__)
        return JSONResponse(
            error_body("internal", "internal error; nothing was changed", None), status_code=500
        )
