"""The admin sub-application, mounted by the API app at /admin.

It has its own error handlers, so a failure becomes a readable page (or an inline message
for htmx) instead of the API's JSON, and its own security headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from orderbell.compose import Services
from orderbell.errors import Forbidden, NotFound, OrderbellError
from orderbell.web.core import HERE, CsrfFailed, LoginRequired, base, is_htmx, render
from orderbell.web.pages import (
    credits,
    customers,
    dashboard,
    login,
    messages,
    providers,
    rules,
    settings,
    simulator,
    templates,
    users,
)
from orderbell.web.throttle import LoginThrottle

log = structlog.get_logger("orderbell.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; frame-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)


def _error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    if is_htmx(request):
        # htmx swaps only 2xx answers by default; the message is shown in the page's alert area
        return render(
            request,
            "_alert.html",
            status=200,
            message=f"{title}: {message}",
            headers={"HX-Retarget": "#alerts", "HX-Reswap": "innerHTML"},
        )
    return render(request, "error.html", status=status, title=title, message=message)


def _install_errors(admin: FastAPI) -> None:
    @admin.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        target = f"{base(request)}/login?next={quote(request.url.path, safe='/')}"
        if is_htmx(request):
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @admin.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _: CsrfFailed) -> Response:
        return _error(
            request,
            403,
            "Form refused",
            "its security token is missing or out of date (CSRF protection). "
            "Reload the page and submit it again.",
        )

    @admin.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, "Not found", exc.message)

    @admin.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return _error(request, 403, "Not allowed", exc.message)

    @admin.exception_handler(OrderbellError)
    async def _orderbell(request: Request, exc: OrderbellError) -> Response:
        where = f" ({exc.field})" if exc.field else ""
        return _error(request, 400, "Could not do that", exc.message + where)

    @admin.exception_handler(RequestValidationError)
    async def _validation(request: Request, _: RequestValidationError) -> Response:
        return _error(request, 404, "Not found", "there is no such page or item")

    @admin.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        titles = {404: "Not found", 405: "Not allowed"}
        message = "there is no such page" if exc.status_code == 404 else str(exc.detail)
        return _error(request, exc.status_code, titles.get(exc.status_code, "Error"), message)

    @admin.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("admin_error", error=type(exc).__name__, path=request.url.path)
        return _error(
            request,
            500,
            "Something went wrong",
            "orderbell could not finish this; nothing was changed. Try again in a moment.",
        )


def create_admin(services: Services, throttle: LoginThrottle | None = None) -> FastAPI:
    """The admin UI as an ASGI app to mount under /admin."""
    admin = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    admin.state.services = services
    admin.state.login_throttle = throttle or LoginThrottle()
    _install_errors(admin)

    @admin.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(f"{base(request)}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    admin.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (
        login,
        dashboard,
        rules,
        simulator,
        templates,
        customers,
        messages,
        credits,
        settings,
        providers,
        users,
    ):
        admin.include_router(module.router)
    return admin
