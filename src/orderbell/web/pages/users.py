"""Settings → Users: the shop's admin logins (list, add, remove) and your own password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from orderbell.api.ids import RowId
from orderbell.errors import OrderbellError
from orderbell.web import accounts
from orderbell.web.core import Me, Posted, Svc, redirect, render, shop_tz
from orderbell.web.forms import Errors

router = APIRouter(prefix="/settings/users")
#: the add form's field names: an error's field ("email") → the input it belongs next to
ADD_FIELDS = {"email": "user_email", "password": "user_password", "name": "user_name"}


def _page(
    request: Request,
    svc: Svc,
    me: Me,
    *,
    errors: Errors | None = None,
    state: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    with svc.engine.connect() as conn:
        users = accounts.list_users(conn, me.shop_id)
    return render(
        request,
        "users.html",
        status=status,
        me=me,
        tz=shop_tz(svc, me.shop_id),
        errors=errors,
        users=users,
        state=state or {},
        min_password=accounts.MIN_PASSWORD,
    )


@router.get("/")
def users_page(request: Request, svc: Svc, me: Me) -> Response:
    """The shop's users and the password form."""
    return _page(request, svc, me)


@router.post("/")
def add_user(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Add a login to this shop with an initial password (argon2-hashed)."""
    state = {"user_email": form.get("user_email").strip(), "user_name": form.get("user_name")}
    errors = Errors()
    if not state["user_email"]:
        errors.add("user_email", "enter the e-mail address the new user logs in with")
    if not form.get("user_password"):
        errors.add("user_password", "enter an initial password")
    if not errors:
        try:
            with svc.engine.begin() as conn:
                accounts.create_user(
                    conn,
                    me.shop_id,
                    state["user_email"],
                    form.get("user_password"),
                    svc.clock.now(),
                    name=form.opt("user_name"),
                )
        except OrderbellError as exc:
            errors.add(ADD_FIELDS.get(exc.field or "", "user_email"), exc.message)
    if errors:
        return _page(request, svc, me, errors=errors, state=state, status=422)
    login = accounts.login_name(state["user_email"])
    return redirect(request, "/settings/users/", f"User {login} added.")


@router.post("/{user_id}/remove")
def remove_user(request: Request, svc: Svc, me: Me, form: Posted, user_id: RowId) -> Response:
    """Remove another user of this shop (their sessions end at once)."""
    errors = Errors()
    try:
        with svc.engine.begin() as conn:
            email = accounts.remove_user(conn, me.shop_id, user_id, me.user_id)
    except OrderbellError as exc:
        if exc.field != "user":
            raise  # not found (or another shop's user): the 404 page
        errors.add(f"remove-{user_id}", exc.message)
        return _page(request, svc, me, errors=errors, status=422)
    return redirect(request, "/settings/users/", f"User {email} removed.")


@router.post("/password")
def change_password(request: Request, svc: Svc, me: Me, form: Posted) -> Response:
    """Change the logged-in user's password (the current one is asked first)."""
    errors = Errors()
    new = form.get("new_password")
    with svc.engine.begin() as conn:
        current = form.get("current_password")
        if accounts.authenticate(conn, me.email, current, svc.clock.now()) is None:
            errors.add("current_password", "this is not your current password")
        elif new != form.get("repeat_password"):
            errors.add("repeat_password", "the two new passwords differ")
        else:
            try:
                accounts.set_password(conn, me.user_id, new, keep_session=me.session_id)
            except OrderbellError as exc:
                errors.add("new_password", exc.message)
    if errors:
        return _page(request, svc, me, errors=errors, status=422)
    return redirect(request, "/settings/users/", "Password changed.")
