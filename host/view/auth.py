"""Who may do what in the web view: log-in against the named users of ``host/users.py``,
sessions, CSRF tokens, the Origin check and the role rules.

* Not logged in: read-only (the page shows the line; every action is refused, 401).
* Any logged-in user may use the line stop.
* hold, abort, resume and acknowledge need an acting role (``host.users.ACTING_ROLES``:
  operator, and supervisor, which includes it); otherwise 403.
* resume is a signed action (``host.control.SIGNED_ACTIONS``): it also needs the operator
  key the view was started with, as the CLI does; without one the page says why.

A session is a random token in a cookie (HttpOnly, SameSite=Strict, Secure under TLS),
kept in memory (a restarted view logs everyone out) and expiring after ``SESSION_S`` of
inactivity.  Every state-changing request must carry the session's CSRF token (a second
random value, given to the page by ``/api/me``, sent back in the ``X-CSRF-Token`` header:
a synchronizer token) and an ``Origin`` header naming this server.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time

from host.control import SIGNED_ACTIONS
from host.users import ACTING_ROLES, AuthError, UserError, UserStore

SESSION_COOKIE = "skid_view_session"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 8 * 3600
# What the page can ask for, and who may: "any" is any logged-in user.
ACTION_ROLES = {
    "stop": "any",
    "hold": ACTING_ROLES,
    "resume": ACTING_ROLES,
    "abort": ACTING_ROLES,
    "ack": ACTING_ROLES,
}
MAX_REASON = 500


class Refused(Exception):
    """An action or log-in refused: ``status`` the HTTP status, ``str()`` the reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Sessions:
    """Logged-in users of one view, by session token (thread-safe)."""

    def __init__(self, users_path, hasher=None, clock=time.monotonic):
        self.users_path = users_path
        self.hasher = hasher
        self.clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, dict] = {}

    def login(self, name: str, password: str) -> tuple[str, dict]:
        """(token, session) for a good name and password; Refused(401) otherwise."""
        if not name or not password:
            raise Refused(401, "give a user name and a password")
        try:
            store = UserStore(self.users_path, self.hasher)
            user = store.authenticate(name, password)
        except AuthError as exc:
            raise Refused(401, str(exc)) from None
        except UserError as exc:
            raise Refused(500, f"user store: {exc}") from None
        token = secrets.token_urlsafe(32)
        session = {
            "user": user["name"],
            "full_name": user.get("full_name", user["name"]),
            "role": user["role"],
            "csrf": secrets.token_urlsafe(32),
            "seen": self.clock(),
        }
        with self._lock:
            self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> dict | None:
        """The live session of ``token`` (its inactivity timer restarted), or None."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_token.get(token)
            if session is None:
                return None
            if now - session["seen"] > SESSION_S:
                del self._by_token[token]
                return None
            session["seen"] = now
            return session

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)


def check_origin(origin: str | None, host: str | None, scheme: str) -> None:
    """Refused(403) unless the request's ``Origin`` is this server (``scheme://host``)."""
    if not origin or not host:
        raise Refused(403, "cross-site request refused: no Origin header")
    if origin != f"{scheme}://{host}":
        raise Refused(403, f"cross-site request refused: Origin {origin} is not this view")


def check_csrf(session: dict, token: str | None) -> None:
    if not token or not hmac.compare_digest(str(token), session["csrf"]):
        raise Refused(403, "missing or wrong CSRF token: reload the page")


def check_action(session: dict | None, action: str, reason: str, has_key: bool) -> None:
    """Refused unless ``session``'s user may ask for ``action`` with ``reason`` now."""
    if action not in ACTION_ROLES:
        raise Refused(400, f"action {action!r} unknown: allowed {', '.join(ACTION_ROLES)}")
    if session is None:
        raise Refused(401, "log in to act on the line (the view is read-only without it)")
    roles = ACTION_ROLES[action]
    if roles != "any" and session["role"] not in roles:
        raise Refused(
            403,
            f"{action} needs the role {' or '.join(roles)}; {session['user']} is {session['role']}",
        )
    if not reason or not reason.strip():
        raise Refused(400, "every action needs a reason (it goes into the run record)")
    if len(reason) > MAX_REASON:
        raise Refused(400, f"reason longer than {MAX_REASON} characters")
    if action in SIGNED_ACTIONS and not has_key:
        raise Refused(403, unsigned_reason(action))


def unsigned_reason(action: str) -> str:
    return (
        f"{action} can move actuators and needs the operator key, as the CLI does: "
        "start the view with --operator-key-file FILE"
    )


def permissions(session: dict | None, has_key: bool) -> dict[str, str | None]:
    """For the page: each action mapped to None (allowed) or why it is not."""
    out: dict[str, str | None] = {}
    for action, roles in ACTION_ROLES.items():
        if session is None:
            out[action] = "log in to act on the line"
        elif roles != "any" and session["role"] not in roles:
            out[action] = f"needs the role {' or '.join(roles)}"
        elif action in SIGNED_ACTIONS and not has_key:
            out[action] = unsigned_reason(action)
        else:
            out[action] = None
    return out
