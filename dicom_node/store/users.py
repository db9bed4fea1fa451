"""Users of the web pages and the API, and their logins: the users and web_sessions tables' owner.

Passwords are kept as argon2id hashes (argon2-cffi, the Password Hashing Competition's winner, with
its recommended parameters); a login's token is kept as its SHA-256 only. Roles are ordered: a
reviewer may do what a viewer may, an admin what a reviewer may.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from dicom_node.store.database import Store, StoreError
from dicom_node.store.tables import User, WebSession, utcnow

ROLES = ("viewer", "reviewer", "admin")  # each may do what the ones before it may
MIN_PASSWORD = 8
_hasher = PasswordHasher()
# Verified when the user name is unknown, so a wrong name costs as long as a wrong password.
_NOBODY = _hasher.hash(secrets.token_hex(16))


class UserError(StoreError):
    """A user that cannot be added, changed or found as asked."""


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class Login:
    """Who a page session or API token belongs to, and the CSRF token its forms carry."""

    name: str
    role: str
    csrf: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _check(name: str, role: str | None, password: str | None) -> None:
    if not name.strip() or len(name) > 200 or name != name.strip():
        raise UserError("a user name is 1 to 200 characters, without blanks around it")
    if role is not None and role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")


def add_user(store: Store, name: str, role: str, password: str) -> None:
    _check(name, role, password)
    with store.transaction() as conn:
        if conn.scalar(select(User.id).where(User.name == name)) is not None:
            raise UserError(f"user {name!r} already exists (`slmnode users passwd` changes a password)")
        conn.execute(insert(User).values(name=name, role=role, password_hash=_hasher.hash(password), created_at=utcnow()))


def users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        return [UserRow(*row) for row in conn.execute(select(User.name, User.role, User.created_at).order_by(User.name))]


def remove_user(store: Store, name: str) -> None:
    """Remove a user and end their logins."""
    with store.transaction() as conn:
        user_id = _user_id(conn, name)
        conn.execute(delete(WebSession).where(WebSession.user_id == user_id))
        conn.execute(delete(User).where(User.id == user_id))


def set_password(store: Store, name: str, password: str) -> None:
    """A new password; the user's logins end, so a stolen session dies with the old password."""
    _check(name, None, password)
    with store.transaction() as conn:
        user_id = _user_id(conn, name)
        conn.execute(update(User).where(User.id == user_id).values(password_hash=_hasher.hash(password)))
        conn.execute(delete(WebSession).where(WebSession.user_id == user_id))


def _user_id(conn, name: str) -> int:
    user_id = conn.scalar(select(User.id).where(User.name == name))
    if user_id is None:
        raise UserError(f"no user {name!r}; see `slmnode users list`")
    return user_id


def authenticate(store: Store, name: str, password: str) -> bool:
    """Is `password` the password of user `name`?"""
    with store.engine.connect() as conn:
        stored = conn.scalar(select(User.password_hash).where(User.name == name))
    try:
        return _hasher.verify(stored or _NOBODY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: Store, name: str, kind: str, hours: float) -> tuple[str, datetime]:
    """A new login of user `name` (kind page or api): its token, shown once, and when it expires.
    Expired logins are removed here, so the table stays small."""
    token, now = secrets.token_urlsafe(32), utcnow()
    expires = now + timedelta(hours=hours)
    with store.transaction() as conn:
        conn.execute(delete(WebSession).where(WebSession.expires_at < now))
        conn.execute(
            insert(WebSession).values(
                token_hash=_token_hash(token), user_id=_user_id(conn, name), kind=kind,
                csrf=secrets.token_urlsafe(32), created_at=now, expires_at=expires,
            )
        )
    return token, expires


def login_of(engine: Engine, token: str, kind: str) -> Login | None:
    """The login a token opens, if it is of that kind and has not expired."""
    query = (
        select(User.name, User.role, WebSession.csrf)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _token_hash(token), WebSession.kind == kind, WebSession.expires_at > utcnow())
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return Login(*row) if row else None


def close_session(store: Store, token: str) -> None:
    with store.transaction() as conn:
        conn.execute(delete(WebSession).where(WebSession.token_hash == _token_hash(token)))
