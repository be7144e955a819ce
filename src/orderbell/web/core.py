"""What every admin page shares: rendering, the logged-in user, CSRF-checked form bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from orderbell.api.deps import services
from orderbell.compose import Services
from orderbell.domain.calendar import local
from orderbell.web import accounts
from orderbell.web.forms import Errors, Form

HERE = Path(__file__).parent
SESSION_COOKIE = "ob_session"
LOGIN_CSRF_COOKIE = "ob_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
FLASH_COOKIE = "ob_flash"


class LoginRequired(Exception):
    """No live session: the browser goes to the login page."""


class CsrfFailed(Exception):
    """A form came without this session's CSRF token."""


def _local(value: datetime | str | None, tz: str, fmt: str = "%a %Y-%m-%d %H:%M") -> str:
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return local(moment, tz).strftime(fmt)


def credit_text(value: object) -> str:
    """Credits with two to four decimals: "0.11", "0.0525"."""
    if value is None or value == "":
        return ""
    whole, frac = f"{Decimal(str(value)):.4f}".split(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.do"],
)
env.filters["local"] = _local
env.filters["credits"] = credit_text
env.filters["urlquote"] = lambda v: quote(str(v), safe="")


def base(request: Request) -> str:
    """The path the admin is mounted at ("/admin")."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def is_htmx(request: Request) -> bool:
    """Was the request sent by htmx (a fragment is wanted, not a page)?"""
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    name: str,
    *,
    status: int = 200,
    me: accounts.SessionInfo | None = None,
    tz: str = "UTC",
    errors: Errors | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page or fragment with the shared context (and the flash message, once)."""
    flash = request.cookies.get(FLASH_COOKIE)
    if flash and "flash" not in context:
        context["flash"] = unquote(flash)[:300]
    html = env.get_template(name).render(
        request=request,
        base=base(request),
        me=me,
        csrf=me.csrf if me else "",
        tz=tz,
        errors=errors or Errors(),
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=headers)
    if flash and not is_htmx(request):
        response.delete_cookie(FLASH_COOKIE, path=base(request) or "/")
    return response


def redirect(request: Request, path: str, flash: str | None = None) -> RedirectResponse:
    """See-other to an admin path, with a message for the next page."""
    response = RedirectResponse(f"{base(request)}{path}", status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE,
            quote(flash),
            max_age=60,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=base(request) or "/",
        )
    return response


def current_user(
    request: Request, svc: Annotated[Services, Depends(services)]
) -> accounts.SessionInfo:
    """The logged-in user, or LoginRequired."""
    token = request.cookies.get(SESSION_COOKIE)
    with svc.engine.connect() as conn:
        info = accounts.session(conn, token, svc.clock.now())
    if info is None:
        raise LoginRequired()
    return info


Me = Annotated[accounts.SessionInfo, Depends(current_user)]
Svc = Annotated[Services, Depends(services)]


def actor(me: accounts.SessionInfo) -> str:
    """Who made a change in the admin, as ledger entries and logs name them (the logs mask
    the address)."""
    return f"admin:{me.email}"


async def posted_form(request: Request, me: Me) -> Form:
    """The submitted form, after checking the session's CSRF token (field or header)."""
    form = Form.parse(await request.body())
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not accounts.csrf_ok(me.csrf, given):
        raise CsrfFailed()
    return form


Posted = Annotated[Form, Depends(posted_form)]


def shop_tz(svc: Services, shop_id: int) -> str:
    """The shop's timezone name."""
    from orderbell.store import shops as shop_store

    with svc.engine.connect() as conn:
        return str(shop_store.get_row(conn, shop_id).timezone)
