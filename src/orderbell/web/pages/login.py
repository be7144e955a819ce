"""Log in and out. The login form is CSRF-protected by a double-submit cookie."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from orderbell.web import accounts
from orderbell.web.core import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfFailed,
    Me,
    Posted,
    Svc,
    base,
    render,
)
from orderbell.web.forms import Errors, Form

router = APIRouter()


def _next(request: Request, value: str | None) -> str:
    """Only a path inside the admin: never an open redirect."""
    home = f"{base(request)}/"
    if value and value.startswith(f"{base(request)}/") and not value.startswith("//"):
        return value
    return home


def _login_page(
    request: Request, *, email: str = "", next_: str = "", errors: Errors | None = None
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status=400 if errors else 200,
        errors=errors,
        email=email,
        next=next_,
        login_csrf=token,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"{base(request)}/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    """The login form."""
    return _login_page(request, next_=_next(request, next))


@router.post("/login")
async def login(request: Request, svc: Svc) -> Response:
    """Check the e-mail and password; open a session."""
    form = Form.parse(await request.body())
    if not accounts.csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get(CSRF_FIELD)):
        raise CsrfFailed()
    email, password = form.get("email").strip(), form.get("password")
    errors = Errors()
    if not email:
        errors.add("email", "enter the e-mail address you log in with")
    if not password:
        errors.add("password", "enter your password")
    if errors:
        return _login_page(request, email=email, next_=form.get("next"), errors=errors)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        user_id = accounts.authenticate(conn, email, password, now)
        token = accounts.start_session(conn, user_id, now) if user_id is not None else None
    if token is None:
        errors.add("password", "wrong e-mail or password")
        return _login_page(request, email=email, next_=form.get("next"), errors=errors)
    response = RedirectResponse(_next(request, form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=accounts.SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=base(request) or "/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{base(request)}/login")
    return response


@router.post("/logout")
def logout(request: Request, svc: Svc, me: Me, _: Posted) -> Response:
    """End the session."""
    with svc.engine.begin() as conn:
        accounts.end_session(conn, me.session_id)
    response = RedirectResponse(f"{base(request)}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=base(request) or "/")
    return response
