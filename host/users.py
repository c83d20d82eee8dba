"""Named users and their roles: the user store behind ``skid user``, ``--user`` and
``skid sign`` (docs/cli.md, "Users and signatures").

The store is one JSON file, ``users.json`` in the configuration directory:
``$SKID_CONFIG_DIR`` if set, else ``$XDG_CONFIG_HOME/flowskid``, else
``~/.config/flowskid`` (``--users-file`` overrides it per command).  It holds every user
ever added: name, full name, role, an argon2id password hash (argon2-cffi), who added it and
when, and, once disabled, who disabled it, when and why.  A user is never deleted, only
disabled, so every name in an old run record still resolves to one person; a disabled
user cannot authenticate.

Roles: ``operator`` (runs recipes and acts on a running line), ``supervisor`` (as an
operator, and manages users; may sign ``reviewed``) and ``qa`` (signs ``reviewed``,
``approved`` or ``rejected``).  The first user of an empty store must be a supervisor and
is added without authentication; every later add or disable is authenticated as a
supervisor.

Passwords come from ``$SKID_PASSWORD`` when it is set (scripts, CI), else from a prompt
on the terminal (never echoed).  The file is written atomically with mode 0600.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from protocol.wire import ID_PATTERN

ROLES = ("operator", "supervisor", "qa")
USER_ADMIN_ROLES = ("supervisor",)
# Who may act on a running line, and who may sign with which meaning.
ACTING_ROLES = ("operator", "supervisor")
SIGN_ROLES = {
    "reviewed": ("supervisor", "qa"),
    "approved": ("qa",),
    "rejected": ("qa",),
}
MEANINGS = tuple(SIGN_ROLES)
PASSWORD_ENV = "SKID_PASSWORD"
CONFIG_DIR_ENV = "SKID_CONFIG_DIR"
STORE_NAME = "users.json"
STORE_VERSION = 1
MIN_PASSWORD_LEN = 8
_NAME_RE = re.compile(ID_PATTERN)


class UserError(ValueError):
    """A user store that cannot be read or written, or a request it refuses."""


class AuthError(UserError):
    """Authentication failed: unknown user, wrong password, disabled, or the wrong role."""


def config_dir(env=None) -> Path:
    env = os.environ if env is None else env
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV])
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "flowskid"
    return Path.home() / ".config" / "flowskid"


def default_store_path(env=None) -> Path:
    return config_dir(env) / STORE_NAME


def _now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class UserStore:
    """The users of one store file.  ``hasher`` is argon2-cffi's ``PasswordHasher``
    (its defaults, RFC 9106's low-memory profile, unless a test passes a cheaper one)."""

    def __init__(self, path, hasher: PasswordHasher | None = None):
        self.path = Path(path)
        self.hasher = hasher or PasswordHasher()
        self.users: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path}: not a readable user store ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("version") != STORE_VERSION:
            raise UserError(f"{self.path}: not a user store of version {STORE_VERSION}")
        users = doc.get("users")
        if not isinstance(users, dict):
            raise UserError(f"{self.path}: 'users' missing or not a table")
        self.users = users

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": STORE_VERSION, "users": self.users}, indent=2, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> dict | None:
        return self.users.get(name)

    def add(self, name: str, role: str, password: str, full_name: str, by: str | None) -> dict:
        """Add a user (``by``: the authenticated supervisor adding it, None for the first
        user of an empty store).  Saves the store."""
        if not _NAME_RE.match(name):
            raise UserError(
                f"user name {name!r}: lowercase letters, digits, '_' and '-', "
                f"starting with a letter (pattern {ID_PATTERN})"
            )
        if name in self.users:
            raise UserError(f"user {name!r} already exists (names are never reused)")
        if role not in ROLES:
            raise UserError(f"role {role!r} unknown: allowed {', '.join(ROLES)}")
        if not self.users and role not in USER_ADMIN_ROLES:
            raise UserError("the first user of a store must be a supervisor (it adds the others)")
        if len(password) < MIN_PASSWORD_LEN:
            raise UserError(f"a password needs at least {MIN_PASSWORD_LEN} characters")
        user = {
            "name": name,
            "full_name": full_name or name,
            "role": role,
            "active": True,
            "password_hash": self.hasher.hash(password),
            "added_utc": _now_utc(),
            "added_by": by,
        }
        self.users[name] = user
        self.save()
        return user

    def disable(self, name: str, by: str, reason: str) -> dict:
        user = self.users.get(name)
        if user is None:
            raise UserError(f"no user {name!r} in {self.path}")
        if not user.get("active", False):
            raise UserError(f"user {name!r} is already disabled")
        if not reason:
            raise UserError("disabling a user needs a reason")
        active_admins = [
            u for u in self.users.values() if u.get("active") and u["role"] in USER_ADMIN_ROLES
        ]
        if user["role"] in USER_ADMIN_ROLES and len(active_admins) == 1:
            raise UserError(f"{name!r} is the last active supervisor: add another one first")
        user.update(active=False, disabled_utc=_now_utc(), disabled_by=by, disabled_reason=reason)
        self.save()
        return user

    def authenticate(self, name: str, password: str, roles=None) -> dict:
        """The active user ``name`` whose password this is (and, with ``roles``, whose role
        is one of them); AuthError otherwise.  Unknown user and wrong password get the same
        message."""
        user = self.users.get(name)
        if user is None:
            raise AuthError(f"user {name!r}: unknown user or wrong password")
        try:
            self.hasher.verify(user["password_hash"], password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise AuthError(f"user {name!r}: unknown user or wrong password") from None
        if not user.get("active", False):
            raise AuthError(f"user {name!r} is disabled ({user.get('disabled_reason', '')})")
        if roles is not None and user["role"] not in roles:
            raise AuthError(
                f"user {name!r} has role {user['role']}: this needs {' or '.join(roles)}"
            )
        return user

    def listing(self) -> list[dict]:
        """Every user without its password hash, by name."""
        return [
            {k: v for k, v in u.items() if k != "password_hash"}
            for _, u in sorted(self.users.items())
        ]


def read_password(
    prompt: str,
    env=None,
    ask: Callable[[str], str] | None = None,
    confirm: bool = False,
) -> str:
    """``$SKID_PASSWORD`` if set, else asked on the terminal (twice with ``confirm``)."""
    env = os.environ if env is None else env
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    if ask is None:
        if not sys.stdin.isatty():
            raise AuthError(f"no terminal to ask the password on: set ${PASSWORD_ENV}")
        ask = getpass.getpass
    password = ask(prompt)
    if confirm and ask("repeat the password: ") != password:
        raise UserError("the passwords differ")
    return password


def login(store_path, name: str, roles=None, env=None, ask=None, hasher=None) -> dict:
    """Authenticate ``name`` from the store at ``store_path`` (password from
    ``read_password``): the user's entry (without the hash) or AuthError."""
    store = UserStore(store_path, hasher)
    if not store.users:
        raise AuthError(f"no users in {store.path}: add one with `skid user add`")
    user = store.authenticate(name, read_password(f"password for {name}: ", env, ask), roles)
    return {k: v for k, v in user.items() if k != "password_hash"}


def run_operator(user: str | None, legacy: str | None, store_path=None, env=None, ask=None):
    """The run's operator for the record's metadata (``skid run``/``demo``): ``--user``
    logs in (an operator or supervisor); ``--operator`` (deprecated) and the default
    ``operator`` are recorded as not authenticated."""
    if user and legacy:
        raise UserError("--user and --operator together: give --user (--operator is deprecated)")
    if user:
        u = login(store_path or default_store_path(env), user, ACTING_ROLES, env, ask)
        return {"operator": u["name"], "operator_role": u["role"], "operator_authenticated": "yes"}
    return {"operator": legacy or "operator", "operator_authenticated": "no"}


def request_identity(
    user: str | None, who: str | None, store_path=None, env=None, ask=None, prompt=True
) -> dict:
    """Who a control request names (``skid hold``, ``command``, ``stop``, ...): with
    ``user`` logged in, {who, role, auth: "password"}; else the deprecated ``--who`` (or
    $USER), sent without ``auth`` and recorded as not authenticated.  ``prompt`` False
    (``skid stop``: an emergency stop never waits for a password) authenticates only when
    ``$SKID_PASSWORD`` is set and falls back to unauthenticated otherwise."""
    env = os.environ if env is None else env
    if user and who:
        raise UserError("--user and --who together: give --user (--who is deprecated)")
    if user:
        if not prompt and not env.get(PASSWORD_ENV):
            return {"who": user}
        u = login(store_path or default_store_path(env), user, ACTING_ROLES, env, ask)
        return {"who": u["name"], "role": u["role"], "auth": "password"}
    return {"who": who or env.get("USER") or "operator"}
