"""Logins and roles: a session cookie for the pages (their forms carry a CSRF token), a bearer token for the
API, HTTP Basic for a Prometheus scraper; failed logins counted per user name and address and made to wait.

Users, password hashes and sessions live in the store (store/users.py). A failed login is logged with
the user name and the address, never the password.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from datetime import datetime

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from dicom_node.store import users
from dicom_node.store.users import Login
from dicom_node.web.context import WebContext, context

log = logging.getLogger(__name__)

SESSION_COOKIE = "slmnode_session"
MAX_TRACKED = 10_000  # (name, address) pairs with failed logins kept before old ones are swept


class LoginLimiter:
    """Failed logins per (user name, address): after max_failures within lockout_seconds, that pair waits
    out the rest of lockout_seconds, right password or not."""

    def __init__(self, max_failures: int, lockout_seconds: float):
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        recent = [t for t in self._failures.get(key, []) if now - t < self.lockout_seconds]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def wait_seconds(self, name: str, address: str) -> float:
        now = time.monotonic()
        with self._lock:
            recent = self._recent((name, address), now)
            if len(recent) < self.max_failures:
                return 0.0
            return self.lockout_seconds - (now - recent[-self.max_failures])

    def failed(self, name: str, address: str) -> int:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > MAX_TRACKED:  # many names tried: forget the pairs whose failures aged out
                for key in list(self._failures):
                    self._recent(key, now)
            recent = self._recent((name, address), now) + [now]
            self._failures[(name, address)] = recent
            return len(recent)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name, address), None)


class LoginRequired(Exception):
    """A page asked for without a session: the app sends the browser to the login page."""


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check_password(request: Request, name: str, password: str) -> None:
    """Raise 429 while this name and address must wait, 401 for a wrong name or password."""
    web: WebContext = context(request)
    limiter: LoginLimiter = request.app.state.limiter
    address = _address(request)
    wait = limiter.wait_seconds(name, address)
    if wait > 0:
        log.warning("login for user %r from %s refused: too many failed logins, %d s to wait", name, address, wait)
        raise HTTPException(
            429, f"too many failed logins; try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if not users.authenticate(web.store, name, password):
        failures = limiter.failed(name, address)
        log.warning("failed login for user %r from %s (%d within %g s)", name, address, failures,
                    limiter.lockout_seconds)
        raise HTTPException(401, "wrong user name or password")
    limiter.succeeded(name, address)


def log_in(request: Request, name: str, password: str, kind: str) -> tuple[str, datetime, Login]:
    """Check the password and open a login of `kind` (page or api): its token, when it expires, the login."""
    check_password(request, name, password)
    web: WebContext = context(request)
    token, expires = users.open_session(web.store, name, kind, web.settings.web.session_hours)
    log.info("user %r logged in from %s (%s)", name, _address(request), kind)
    return token, expires, users.login_of(web.store.engine, token, kind)


def _allowed(login: Login, role: str) -> Login:
    if not login.may(role):
        raise HTTPException(403, f"this needs the {role} role; user {login.name!r} is a {login.role}")
    return login


_bearer = HTTPBearer(auto_error=False, description="a token from POST /api/v1/token")
_basic = HTTPBasic(auto_error=False, description="for a Prometheus scraper")


def api_user(role: str = "viewer"):
    """Dependency: the API caller's login (bearer token), with at least `role`."""

    def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Login:
        login = users.login_of(context(request).store.engine, credentials.credentials, "api") if credentials else None
        if login is None:
            raise HTTPException(
                401, "log in first: POST /api/v1/token, then send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return _allowed(login, role)

    return dependency


def scraper(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    basic: HTTPBasicCredentials | None = Depends(_basic),
) -> None:
    """Dependency of /metrics: any user, by API token or by name and password (Prometheus' basic_auth)."""
    if basic is not None:
        check_password(request, basic.username, basic.password)
        return
    if bearer is None or users.login_of(context(request).store.engine, bearer.credentials, "api") is None:
        raise HTTPException(401, "log in first: HTTP Basic or a bearer token", headers={"WWW-Authenticate": "Basic"})


def page_user(request: Request) -> Login:
    """Dependency: the page visitor's login (session cookie); none sends the browser to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    login = users.login_of(context(request).store.engine, token, "page") if token else None
    if login is None:
        raise LoginRequired()
    return login


def page_action(role: str):
    """Dependency of a page form's POST: the login, with at least `role`, and the form's CSRF token checked."""

    async def dependency(request: Request, login: Login = Depends(page_user)) -> Login:
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf", "")), login.csrf):
            raise HTTPException(403, "the form is stale or was not sent by this site: reload the page and try again")
        return _allowed(login, role)

    return dependency
