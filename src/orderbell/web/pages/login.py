"""Log in and out. The login form is CSRF-protected by a double-submit cookie, and failed
logins are throttled per e-mail and per client address (see `orderbell.web.throttle`)."""

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
from orderbell.web.forms import FORM_ERROR, Errors, Form
from orderbell.web.throttle import LoginThrottle

router = APIRouter()


def _next(request: Request, value: str | None) -> str:
    """Only a path inside the admin: never an open redirect."""
    home = f"{base(request)}/"
    if value and value.startswith(f"{base(request)}/") and not value.startswith("//"):
        return value
    return home


def _login_page(
    request: Request,
    *,
    email: str = "",
    next_: str = "",
    errors: Errors | None = None,
    status: int | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status=status or (400 if errors else 200),
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
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else None
    locked = throttle.locked_until(email, address, now)
    if locked is not None:
        # the same answer whether the account exists or not, and the password is not checked
        minutes = max(1, -(-int((locked - now).total_seconds()) // 60))
        errors.add(
            FORM_ERROR,
            "Too many failed logins. For your safety, logging in is paused for "
            f"{minutes} minute{'s' if minutes != 1 else ''}; try again after that.",
        )
        return _login_page(request, email=email, next_=form.get("next"), errors=errors, status=429)
    with svc.engine.begin() as conn:
        user_id = accounts.authenticate(conn, email, password, now)
        token = accounts.start_session(conn, user_id, now) if user_id is not None else None
    if token is None:
        await throttle.sleep(throttle.failed(email, address, now))
        errors.add("password", "wrong e-mail or password")
        return _login_page(request, email=email, next_=form.get("next"), errors=errors)
    throttle.succeeded(email)
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
