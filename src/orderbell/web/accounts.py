"""Admin users of a shop: argon2 password hashes, server-side sessions and their CSRF tokens.

The session cookie holds a random token; the database keeps only its SHA-256, so a leaked
database does not hand out live sessions. Each session has its own CSRF token that every
form and htmx request must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, select, update

from orderbell.errors import Conflict, InvalidInput, NotFound
from orderbell.store.db import new_id
from orderbell.store.schema import admin_sessions, admin_users, shops

SESSION_HOURS = 12
MIN_PASSWORD = 10
DEMO_EMAIL = "demo@orderbell.local"
_hasher = PasswordHasher()
# Verifying against this when the e-mail is unknown keeps the timing the same as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """The logged-in user, their shop and the session's CSRF token."""

    session_id: int
    user_id: int
    email: str
    name: str | None
    shop_id: int
    shop_name: str
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login_name(email: str) -> str:
    """A login e-mail, trimmed and lower-cased (it is a login, not a mail destination)."""
    text = email.strip().lower()
    local, _, domain = text.partition("@")
    if not local or not domain or len(text) > 320 or any(c.isspace() for c in text):
        raise InvalidInput("must be an e-mail address such as owner@example.com", field="email")
    return text


def hash_password(password: str) -> str:
    """An argon2id hash of a password (at least MIN_PASSWORD characters)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"must be at least {MIN_PASSWORD} characters", field="password")
    return _hasher.hash(password)


def create_user(
    conn: Connection,
    shop_id: int,
    email: str,
    password: str,
    now: datetime,
    name: str | None = None,
) -> int:
    """Create an admin user of a shop; the e-mail is the login and must be new."""
    address = login_name(email)
    if conn.execute(select(admin_users.c.id).where(admin_users.c.email == address)).first():
        raise Conflict(f"a user {address} exists", field="email")
    return new_id(
        conn.execute(
            admin_users.insert().values(
                shop_id=shop_id,
                email=address,
                name=name,
                password_hash=hash_password(password),
                created_at=now,
            )
        )
    )


def list_users(conn: Connection, shop_id: int) -> list[dict[str, object]]:
    """The shop's admin users, oldest first (never another shop's)."""
    rows = conn.execute(
        select(
            admin_users.c.id,
            admin_users.c.email,
            admin_users.c.name,
            admin_users.c.created_at,
            admin_users.c.last_login_at,
        )
        .where(admin_users.c.shop_id == shop_id)
        .order_by(admin_users.c.id)
    )
    return [dict(r._mapping) for r in rows]


def remove_user(conn: Connection, shop_id: int, user_id: int, acting_user_id: int) -> str:
    """Remove a user of the shop (not oneself, never the last one); returns their e-mail."""
    if user_id == acting_user_id:
        raise InvalidInput("you cannot remove yourself; ask another user of the shop", field="user")
    # one removal per shop at a time, so two users removing each other cannot leave none
    conn.execute(select(shops.c.id).where(shops.c.id == shop_id).with_for_update())
    row = conn.execute(
        select(admin_users.c.email).where(
            admin_users.c.id == user_id, admin_users.c.shop_id == shop_id
        )
    ).first()
    if row is None:
        raise NotFound("no such user in this shop")
    count = conn.execute(
        select(func.count()).select_from(admin_users).where(admin_users.c.shop_id == shop_id)
    ).scalar_one()
    if count <= 1:
        raise InvalidInput("the last user of a shop cannot be removed", field="user")
    conn.execute(delete(admin_sessions).where(admin_sessions.c.user_id == user_id))
    conn.execute(delete(admin_users).where(admin_users.c.id == user_id))
    return str(row.email)


def set_password(
    conn: Connection, user_id: int, password: str, keep_session: int | None = None
) -> None:
    """Replace a user's password and end their sessions (except the one that changed it)."""
    conn.execute(
        update(admin_users)
        .where(admin_users.c.id == user_id)
        .values(password_hash=hash_password(password))
    )
    conn.execute(
        delete(admin_sessions).where(
            admin_sessions.c.user_id == user_id, admin_sessions.c.id != (keep_session or 0)
        )
    )


def authenticate(conn: Connection, email: str, password: str, now: datetime) -> int | None:
    """The user id for a correct e-mail and password, else None (same timing either way)."""
    row = conn.execute(
        select(admin_users.c.id, admin_users.c.password_hash).where(
            admin_users.c.email == email.strip().lower()
        )
    ).first()
    stored = row.password_hash if row else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    values: dict[str, object] = {"last_login_at": now}
    if _hasher.check_needs_rehash(stored):
        values["password_hash"] = _hasher.hash(password)
    conn.execute(update(admin_users).where(admin_users.c.id == row.id).values(**values))
    return int(row.id)


def start_session(conn: Connection, user_id: int, now: datetime) -> str:
    """Open a session; returns the cookie token (shown to the browser only)."""
    token = secrets.token_urlsafe(32)
    conn.execute(delete(admin_sessions).where(admin_sessions.c.expires_at < now))
    conn.execute(
        admin_sessions.insert().values(
            user_id=user_id,
            token_hash=_digest(token),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    return token


def session(conn: Connection, token: str | None, now: datetime) -> SessionInfo | None:
    """The live session a cookie token belongs to, or None."""
    if not token or len(token) > 200:
        return None
    row = conn.execute(
        select(
            admin_sessions.c.id,
            admin_sessions.c.csrf_token,
            admin_sessions.c.expires_at,
            admin_users.c.id.label("user_id"),
            admin_users.c.email,
            admin_users.c.name,
            admin_users.c.shop_id,
            shops.c.name.label("shop_name"),
        )
        .join(admin_users, admin_users.c.id == admin_sessions.c.user_id)
        .join(shops, shops.c.id == admin_users.c.shop_id)
        .where(admin_sessions.c.token_hash == _digest(token))
    ).first()
    if row is None or row.expires_at <= now:
        return None
    return SessionInfo(
        session_id=row.id,
        user_id=row.user_id,
        email=row.email,
        name=row.name,
        shop_id=row.shop_id,
        shop_name=row.shop_name,
        csrf=row.csrf_token,
    )


def end_session(conn: Connection, session_id: int) -> None:
    """Log out: the session is gone."""
    conn.execute(delete(admin_sessions).where(admin_sessions.c.id == session_id))


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def ensure_demo_login(conn: Connection, shop_id: int, now: datetime) -> tuple[str, str]:
    """The demo shop's login with a fresh password (printed by `serve --demo`)."""
    password = secrets.token_urlsafe(12)
    row = conn.execute(select(admin_users.c.id).where(admin_users.c.email == DEMO_EMAIL)).first()
    if row is None:
        create_user(conn, shop_id, DEMO_EMAIL, password, now, name="Demo owner")
    else:
        set_password(conn, int(row.id), password)
    return DEMO_EMAIL, password
